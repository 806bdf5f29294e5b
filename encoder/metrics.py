"""Top-K ranking metrics as pure functions of a hit matrix.

Every function takes ``hits``, a ``(users, K_max)`` boolean/0-1 tensor whose column ``r``
says whether the item ranked ``r+1`` is in the user's held-out set, and ``num_relevant``,
the size of each user's held-out set (``> 0``). Each returns one value per user; average
them over users. Definitions follow RLMRec / LightGCN's evaluation code:

* ``recall@k    = hits in top-k / |held-out|``
* ``precision@k = hits in top-k / k``
* ``ndcg@k      = DCG@k / IDCG@k`` with ``DCG = Σ hit_r / log2(r+1)`` and the ideal DCG over
  ``min(k, |held-out|)`` relevant items
* ``hit@k       = 1 if any hit in top-k``
* ``mrr@k       = 1 / rank of the first hit in top-k`` (0 if none). RLMRec's ``mrr`` instead
  sums ``1/rank`` over *all* hits; we use the standard definition (as RecBole does).
"""
from __future__ import annotations

from typing import Callable

import torch


def _discounts(k: int, device=None) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=device))


def recall(hits: torch.Tensor, num_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].double().sum(1) / num_relevant.double()


def precision(hits: torch.Tensor, num_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].double().sum(1) / k


def ndcg(hits: torch.Tensor, num_relevant: torch.Tensor, k: int) -> torch.Tensor:
    disc = _discounts(k, hits.device)
    dcg = (hits[:, :k].double() * disc[: hits[:, :k].shape[1]]).sum(1)
    ideal = torch.cumsum(disc, 0)[num_relevant.clamp(max=k).long() - 1]
    return dcg / ideal


def hit(hits: torch.Tensor, num_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].any(1).double()


def mrr(hits: torch.Tensor, num_relevant: torch.Tensor, k: int) -> torch.Tensor:
    h = hits[:, :k].bool()
    first = h.double().argmax(1)  # index of the first hit (0 when there is none)
    return torch.where(h.any(1), 1.0 / (first + 1).double(), torch.zeros((), dtype=torch.float64))


METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "recall": recall, "ndcg": ndcg, "precision": precision, "mrr": mrr, "hit": hit,
}


def get_metric(name: str) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(METRICS)}") from None


def parse_metric_key(key: str) -> tuple[str, int]:
    """``"recall@20"`` -> ``("recall", 20)``; raises with the valid names on a typo."""
    name, sep, k = key.partition("@")
    if not sep or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric {key!r} must look like NAME@K, e.g. recall@20")
    get_metric(name)
    return name, int(k)
