"""Ranking evaluation: the evaluator hands the model what it needs, ranks, and scores.

For the split being ranked, the model's scorer gets an :class:`EvalBatch`: the users and,
for a model with ``history_len > 0``, each user's history before the split (validation: the
training part; test: training plus the validation item), newest last, left-padded. It
returns scores over all items. Graph models ignore the history. What is excluded from the
ranking, and how the held-out items are ranked, is decided here, not by the model:

* ``protocol="full"``: every item is a candidate. ``exclude`` removes the user's ``train``
  items (RLMRec's protocol for graph models), their whole ``history`` before the split
  (train, plus validation at test: the S3-Rec protocol for sequences) or ``none``. A held-out
  item that is also in the excluded set cannot be ranked and counts as a miss (in S3-Rec's Yelp
  file 6.7% of test items repeat an item of the history); :meth:`Evaluator.info` counts them.
* ``protocol="sampled"``: the target is ranked against ``sampled_negatives`` (100) items drawn
  uniformly among those the user never interacted with in any split, drawn once per split from
  ``seed`` and reused at every evaluation (the protocol of LLM-ESR, RERec and text4rec).

Metrics (:mod:`semrec.encoder.metrics`) are averaged over users with held-out items. With
``groups``, each is also reported for head and tail users (``head_users/ndcg@10``: the
``head_user_share`` of users with the longest histories) and, when every user has one
held-out item, for head and tail items (the target among the ``head_item_share`` most
popular items in training; LLM-ESR splits at 20%). ``evaluate(..., items=mask)`` scores any
subset of items as if it were the whole held-out set (e.g. items by attribute coverage): each
user's relevant items are their held-out items in the subset, the ranking is unchanged, and
users without such items are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from semrec.encoder import distributed
from semrec.encoder.batches import EvalBatch, Scorer
from semrec.encoder.dataset import InteractionData
from semrec.encoder.metrics import get_metric

EXCLUDE = ("train", "history", "none")
PROTOCOLS = ("full", "sampled")


@dataclass
class _SplitIndex:
    users: np.ndarray  # (n,) evaluated users
    relevant_ptr: np.ndarray  # CSR rows of held-out items, one row per evaluated user
    relevant_col: torch.Tensor
    exclude_ptr: np.ndarray  # CSR rows of excluded items
    exclude_col: torch.Tensor
    candidates: torch.Tensor | None  # (n, 1 + negatives) for the sampled protocol: target first
    groups: dict[str, torch.Tensor]  # group name -> (n,) bool
    info: dict[str, int]


def _rows(m: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
    sub = m[users]
    sub.sort_indices()
    return sub


def _top_share(values: np.ndarray, share: float) -> np.ndarray:
    """Mask of the entries at or above the value of the ``ceil(share·n)``-th largest (ties stay together)."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    k = max(1, math.ceil(share * len(values)))
    return values >= np.sort(values)[::-1][k - 1]


class Evaluator:
    """Batched ranking evaluator.

    Args:
        data: the dataset.
        ks: cut-offs, e.g. ``(5, 10, 20)``; each at most the number of items.
        metrics: names from :data:`semrec.encoder.metrics.METRICS`.
        batch_size: users scored at once.
        exclude: ``train``, ``history`` or ``none`` (full protocol; see the module docstring).
        protocol: ``full`` or ``sampled``.
        sampled_negatives: items ranked against the target in the sampled protocol.
        groups: also report head/tail user and item groups.
        head_user_share, head_item_share: the shares that make the head groups.
        seed: draws the sampled protocol's negatives.
        device: where scores are computed (the model's device).
    """

    def __init__(self, data: InteractionData, ks: Sequence[int] = (5, 10, 20),
                 metrics: Sequence[str] = ("recall", "ndcg", "precision", "mrr", "hit"),
                 batch_size: int = 1024, exclude: str = "train", protocol: str = "full",
                 sampled_negatives: int = 100, groups: bool = False, head_user_share: float = 0.2,
                 head_item_share: float = 0.2, seed: int = 2023, device: str | torch.device = "cpu"):
        self.data = data
        self.ks = sorted(set(int(k) for k in ks))
        if exclude not in EXCLUDE:
            raise ValueError(f"eval.exclude {exclude!r}: valid values: {', '.join(EXCLUDE)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"eval.protocol {protocol!r}: valid values: {', '.join(PROTOCOLS)}")
        n_cand = data.num_items if protocol == "full" else sampled_negatives + 1
        if not self.ks or self.ks[0] < 1 or self.ks[-1] > n_cand:
            raise ValueError(f"eval.ks {list(ks)}: every cut-off must lie in [1, {n_cand}] (the number "
                             f"of {'items' if protocol == 'full' else 'candidates: eval.sampled_negatives + 1'})")
        if protocol == "sampled" and sampled_negatives >= data.num_items:
            raise ValueError(f"eval.sampled_negatives {sampled_negatives} must be below the number of items "
                             f"({data.num_items})")
        self.metrics = {name: get_metric(name) for name in metrics}
        self.batch_size = int(batch_size)
        self.exclude, self.protocol, self.sampled_negatives = exclude, protocol, sampled_negatives
        self.groups, self.head_user_share, self.head_item_share = groups, head_user_share, head_item_share
        self.seed = seed
        self.device = torch.device(device)
        self._index: dict[str, _SplitIndex] = {}
        #: each user's metrics at the last evaluation of a split (see :meth:`evaluate`)
        self.per_user: dict[str, dict[str, np.ndarray]] = {}

    # ----- what is ranked --------------------------------------------------------------------
    def _split_index(self, split: str, items: np.ndarray | None = None) -> _SplitIndex:
        key = split if items is None else (split, items.tobytes())
        if key in self._index:
            return self._index[key]
        d, dev = self.data, self.device
        held = d.split(split)
        if items is not None:
            if items.dtype != bool or items.shape != (d.num_items,):
                raise ValueError(f"items must be a boolean mask over the {d.num_items} items, got "
                                 f"{items.dtype} {items.shape}")
            held = held.multiply(items[None, :].astype(np.float32)).tocsr()
            held.eliminate_zeros()
        users = np.flatnonzero(np.diff(held.indptr) > 0)
        if d.sequences is not None:  # similar history lengths in one batch: histories are cut to the longest
            hist = d.sequences.history_end(split)[users] - d.sequences.ptr[users]
            users = users[np.argsort(hist, kind="stable")]
        seen = d.train if split == "valid" else ((d.train + d.valid) > 0).astype(np.float32).tocsr()
        exclude = {"train": d.train, "history": seen,
                   "none": sp.csr_matrix(d.train.shape, dtype=np.float32)}[self.exclude]
        rel, exc = _rows(held, users), _rows(exclude, users)
        lost = int(rel.multiply(exc).sum()) if self.protocol == "full" else 0
        info = {"users": len(users), "held_out": int(rel.nnz), "held_out_in_excluded": lost}
        candidates = None
        if self.protocol == "sampled":
            if not np.all(np.diff(rel.indptr) == 1):
                raise ValueError("eval.protocol=sampled ranks one held-out item per user (a leave-one-out split); "
                                 f"in {split} some users have several")
            candidates = torch.from_numpy(self._sampled_candidates(split, users, rel.indices))
        groups = {}
        if self.groups:
            history_len = np.asarray(_rows(seen, users).sum(1)).ravel()
            head = _top_share(history_len, self.head_user_share)
            groups.update(head_users=torch.from_numpy(head), tail_users=torch.from_numpy(~head))
            if np.all(np.diff(rel.indptr) == 1):
                head = self._head_items(np.asarray(d.train.sum(0)).ravel())[rel.indices]
                groups.update(head_items=torch.from_numpy(head), tail_items=torch.from_numpy(~head))
        self._index[key] = _SplitIndex(
            users, rel.indptr.astype(np.int64), torch.from_numpy(rel.indices.astype(np.int64)).to(dev),
            exc.indptr.astype(np.int64), torch.from_numpy(exc.indices.astype(np.int64)).to(dev),
            None if candidates is None else candidates.to(dev), {k: v.to(dev) for k, v in groups.items()}, info)
        return self._index[key]

    def _head_items(self, popularity: np.ndarray) -> np.ndarray:
        """``(I,)`` bool: the ``head_item_share`` most popular items in training (ties by id)."""
        head = np.zeros(self.data.num_items, dtype=bool)
        head[np.argsort(-popularity, kind="stable")[:max(1, math.ceil(self.head_item_share * self.data.num_items))]] = True
        return head

    def _sampled_candidates(self, split: str, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``(n, 1 + negatives)``: each user's target, then negatives never interacted with (any split)."""
        d = self.data
        rng = np.random.default_rng([self.seed, ("valid", "test").index(split)])
        touched = ((d.train + d.valid + d.test) > 0).tocsr()
        keys = np.sort((np.repeat(np.arange(d.num_users), np.diff(touched.indptr)).astype(np.int64) * d.num_items
                        + touched.indices))
        k = self.sampled_negatives
        owners = np.repeat(users.astype(np.int64), k)
        neg = rng.integers(0, d.num_items, owners.size)
        # each row's negatives are distinct: draw, then redraw collisions with the user's items or the row
        for _ in range(1000):
            key = owners * d.num_items + neg
            pos = np.clip(np.searchsorted(keys, key), 0, len(keys) - 1)
            bad = keys[pos] == key
            rows = neg.reshape(-1, k)
            order = np.argsort(rows, axis=1, kind="stable")
            srt = np.take_along_axis(rows, order, axis=1)
            dup = np.zeros_like(rows, dtype=bool)  # a repeat of an earlier draw in the same row
            np.put_along_axis(dup, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)
            bad |= dup.ravel()
            if not bad.any():
                break
            neg[bad] = rng.integers(0, d.num_items, int(bad.sum()))
        else:  # pragma: no cover - only when users have almost every item
            raise ValueError(f"cannot draw {k} distinct unseen items for every user in {split}; lower "
                             "eval.sampled_negatives")
        return np.concatenate([targets[:, None].astype(np.int64), neg.reshape(-1, k)], axis=1)

    def info(self, split: str) -> dict[str, int]:
        """Counts for ``split``: users ranked, held-out items, held-out items that were excluded."""
        return dict(self._split_index(split).info)

    @staticmethod
    def _batch_rows(ptr: np.ndarray, col: torch.Tensor, lo: int, hi: int):
        counts = torch.from_numpy(np.diff(ptr[lo:hi + 1])).to(col.device)
        rows = torch.repeat_interleave(torch.arange(hi - lo, device=col.device), counts)
        return rows, col[ptr[lo]:ptr[hi]], counts

    # ----- ranking ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, scorer: Scorer, split: str = "valid", history_len: int = 0,
                 items: np.ndarray | None = None, ratings: bool = False, beyond: bool = False,
                 item_vectors: torch.Tensor | None = None) -> dict[str, float]:
        """Mean of every ``metric@k`` (and of its groups) over the users with held-out items.

        Args:
            scorer: maps an :class:`EvalBatch` to a ``(B, num_items)`` score matrix.
            split: ``"valid"`` or ``"test"``.
            history_len: the history width the scorer wants (0: no history).
            items: a boolean mask over items: only held-out items in it count (module docstring).
            ratings: also hand the scorer the history's ratings.
            beyond: also the beyond-accuracy measures of the lists (:mod:`semrec.encoder.beyond`;
                full protocol, all items), with ``ild@k`` from ``item_vectors`` where given.

        Each user's metrics are kept in ``per_user[split]`` (user ids and one array per metric).
        """
        idx = self._split_index(split, items)
        stats = None
        if beyond and self.protocol == "full" and items is None:
            from semrec.encoder.beyond import ListStats

            pop = np.asarray(self.data.train.sum(0)).ravel()
            stats = ListStats(pop, np.asarray((self.data.train > 0).sum(0)).ravel(), self.data.num_users,
                              self._head_items(pop), self.ks, len(idx.users), item_vectors)
        n = len(idx.users)
        per_user = {f"{m}@{k}": torch.zeros(n, dtype=torch.float64, device=self.device)
                    for m in self.metrics for k in self.ks}
        if history_len:
            seq = self.data.require_sequences()
        starts = range(0, n, self.batch_size)
        for lo in (starts[b] for b in distributed.mine(len(starts))):  # one process: every batch
            hi = min(lo + self.batch_size, n)
            users = idx.users[lo:hi]
            history = rated = None
            if history_len:
                h = seq.histories(users, split, history_len, self.data.num_items)
                width = max(1, int((h != self.data.num_items).sum(1).max()))  # all-padding columns change nothing
                history = torch.from_numpy(h[:, -width:]).to(self.device)
                if ratings:
                    rated = torch.from_numpy(seq.rating_histories(users, split, history_len)[:, -width:]).to(self.device)
            scores = scorer(EvalBatch(torch.from_numpy(users.astype(np.int64)).to(self.device), history,
                                      rated)).float()
            if idx.candidates is not None:
                hits, num_rel = self._sampled_hits(scores, idx.candidates[lo:hi])
            else:
                hits, num_rel, top, real = self._full_hits(scores, idx, lo, hi)
                if stats is not None:
                    stats.add(lo, top, real)
            for name, fn in self.metrics.items():
                for k in self.ks:
                    per_user[f"{name}@{k}"][lo:hi] = fn(hits, num_rel, k)
        for v in per_user.values():  # several ranks: each filled its own users' slots (exact sums)
            distributed.sum_(v)
        if stats is not None:
            for t in stats.tensors():
                distributed.sum_(t)
        out = {key: float(v.mean()) if n else 0.0 for key, v in per_user.items()}
        for group, mask in idx.groups.items():
            for key, v in per_user.items():
                out[f"{group}/{key}"] = float(v[mask].mean()) if mask.any() else 0.0
        if items is None:
            self.per_user[split] = {"users": idx.users.copy(), **{k: v.cpu().numpy() for k, v in per_user.items()}}
        if stats is not None:
            out.update(stats.result())
        return out

    def _full_hits(self, scores: torch.Tensor, idx: _SplitIndex, lo: int, hi: int):
        rows, cols, _ = self._batch_rows(idx.exclude_ptr, idx.exclude_col, lo, hi)
        scores[rows, cols] = -torch.inf
        top = torch.topk(scores, max(self.ks), dim=1).indices
        rows, cols, num_rel = self._batch_rows(idx.relevant_ptr, idx.relevant_col, lo, hi)
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        relevant[rows, cols] = True
        hits = relevant.gather(1, top)
        # an excluded held-out item can never be a hit (its score is -inf, but top-k may reach it)
        real = torch.isfinite(scores.gather(1, top))
        hits &= real
        return hits, num_rel, top, real

    def _sampled_hits(self, scores: torch.Tensor, candidates: torch.Tensor):
        s = scores.gather(1, candidates)
        rank = (s[:, 1:] > s[:, :1]).sum(1)  # 0-based rank of the target among the candidates
        hits = rank[:, None] == torch.arange(max(self.ks), device=s.device)[None, :]
        return hits, torch.ones(len(s), dtype=torch.long, device=s.device)
