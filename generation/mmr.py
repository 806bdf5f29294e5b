"""Representative, diverse review sentences by Maximal Marginal Relevance (as in RERec).

Carbonell & Goldstein, "The Use of MMR, Diversity-Based Reranking for Reordering Documents
and Producing Summaries", SIGIR 1998.

An item's reviews are split into sentences and embedded; a sentence is *relevant* when it is
close to the (optionally recency-weighted) centroid of all the item's sentences, i.e. says
what many reviews say. MMR then picks, one at a time, the sentence maximising
``λ · relevance − (1 − λ) · max similarity to the sentences already picked``, skipping
near-duplicates of a picked sentence.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str, min_chars: int = 12) -> list[str]:
    """Split review text into sentences; drop fragments shorter than ``min_chars``."""
    parts = _SENTENCE_END.split(" ".join(text.split()))
    return [p.strip() for p in parts if len(p.strip()) >= min_chars]


def mmr_select(embeddings: np.ndarray, k: int, lam: float = 0.7, dup_threshold: float = 0.95,
               weights: np.ndarray | None = None) -> list[int]:
    """Indices of up to ``k`` rows chosen by MMR, in the order chosen.

    Args:
        embeddings: ``(n, d)`` sentence embeddings (normalised here).
        k: how many to pick.
        lam: weight of relevance against redundancy, in ``[0, 1]``.
        dup_threshold: a candidate whose cosine similarity to a picked row reaches this is never picked.
        weights: ``(n,)`` non-negative weights of each row in the centroid (e.g. recency).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    n = len(embeddings)
    if n == 0 or k <= 0:
        return []
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be n non-negative numbers with a positive sum")
    centroid = (w[:, None] * x).sum(0)
    centroid /= max(np.linalg.norm(centroid), 1e-12)
    relevance = x @ centroid
    # one row of similarities a pick (k·n·d work and n memory), never the n × n matrix: an item
    # with tens of thousands of sentences stays cheap
    chosen: list[int] = []
    redundancy = np.zeros(n)  # max similarity to the picked rows (0 before the first pick)
    available = np.ones(n, dtype=bool)
    while len(chosen) < k and available.any():
        score = np.where(available, lam * relevance - (1 - lam) * redundancy, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        sims = x @ x[best]
        redundancy = sims if len(chosen) == 1 else np.maximum(redundancy, sims)
        available &= redundancy < dup_threshold
        available[best] = False
    return chosen


def recency_weights(timestamps: Sequence[float], half_life: float) -> np.ndarray:
    """``0.5 ** (age / half_life)``, age measured from the newest timestamp."""
    t = np.asarray(timestamps, dtype=np.float64)
    return 0.5 ** ((t.max() - t) / half_life)


def select_sentences(reviews: Sequence[str], encode: Callable[[list[str]], np.ndarray], k: int = 5,
                     lam: float = 0.7, dup_threshold: float = 0.95, timestamps: Sequence[float] | None = None,
                     half_life: float | None = None) -> list[str]:
    """The ``k`` most representative and diverse sentences of an item's reviews.

    Args:
        reviews: review texts.
        encode: texts -> ``(n, d)`` embeddings (e.g. ``LocalEncoder(...).encode``).
        timestamps, half_life: with both, newer reviews weigh more in the centroid.
    """
    sentences, owner = [], []
    for r, text in enumerate(reviews):
        for sentence in split_sentences(text):
            sentences.append(sentence)
            owner.append(r)
    if not sentences:
        return []
    weights = None
    if timestamps is not None and half_life:
        weights = recency_weights(timestamps, half_life)[owner]
    picked = mmr_select(encode(sentences), k, lam, dup_threshold, weights)
    return [sentences[i] for i in picked]
