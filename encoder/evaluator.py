"""Full-ranking evaluation: score every item for every held-out user, mask seen items, top-K.

Follows RLMRec's protocol: all items are candidates, the user's training items are masked
out (``mask_valid_at_test`` also masks validation items when testing), users without
held-out items are skipped, and each metric is averaged over the evaluated users.
The per-user metric definitions live in :mod:`semrec.encoder.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from semrec.encoder.dataset import InteractionData
from semrec.encoder.metrics import get_metric

Scorer = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _SplitIndex:
    users: torch.Tensor  # (n,) evaluated users
    relevant_ptr: np.ndarray  # CSR row pointers of held-out items, rows = evaluated users
    relevant_col: torch.Tensor
    exclude_ptr: np.ndarray  # CSR row pointers of masked (already seen) items
    exclude_col: torch.Tensor


def _rows(m: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
    sub = m[users]
    sub.sort_indices()
    return sub


class Evaluator:
    """Batched full-ranking evaluator.

    Args:
        data: the dataset (train items are always masked).
        ks: cut-offs, e.g. ``(5, 10, 20)``.
        metrics: names from :data:`semrec.encoder.metrics.METRICS`.
        batch_size: users scored at once.
        mask_valid_at_test: also mask validation items when ranking for the test split.
        device: where scores are computed (the model's device).
    """

    def __init__(self, data: InteractionData, ks: Sequence[int] = (5, 10, 20),
                 metrics: Sequence[str] = ("recall", "ndcg", "precision", "mrr", "hit"),
                 batch_size: int = 1024, mask_valid_at_test: bool = False,
                 device: str | torch.device = "cpu"):
        self.data = data
        self.ks = sorted(set(int(k) for k in ks))
        if not self.ks or self.ks[0] < 1 or self.ks[-1] > data.num_items:
            raise ValueError(f"eval.ks {list(ks)}: every cut-off must lie in [1, {data.num_items}] (the number "
                             "of items)")
        self.metrics = {name: get_metric(name) for name in metrics}
        self.batch_size = int(batch_size)
        self.mask_valid_at_test = mask_valid_at_test
        self.device = torch.device(device)
        self._index: dict[str, _SplitIndex] = {}

    def _split_index(self, split: str) -> _SplitIndex:
        if split not in self._index:
            held = self.data.split(split)
            users = np.flatnonzero(np.diff(held.indptr) > 0)
            exclude = self.data.train
            if split == "test" and self.mask_valid_at_test:
                exclude = ((exclude + self.data.valid) > 0).astype(np.float32).tocsr()
            rel, exc = _rows(held, users), _rows(exclude, users)
            dev = self.device
            self._index[split] = _SplitIndex(
                torch.from_numpy(users.astype(np.int64)).to(dev),
                rel.indptr.astype(np.int64), torch.from_numpy(rel.indices.astype(np.int64)).to(dev),
                exc.indptr.astype(np.int64), torch.from_numpy(exc.indices.astype(np.int64)).to(dev))
        return self._index[split]

    @staticmethod
    def _batch_rows(ptr: np.ndarray, col: torch.Tensor, lo: int, hi: int):
        counts = torch.from_numpy(np.diff(ptr[lo:hi + 1])).to(col.device)
        rows = torch.repeat_interleave(torch.arange(hi - lo, device=col.device), counts)
        return rows, col[ptr[lo]:ptr[hi]], counts

    @torch.no_grad()
    def evaluate(self, scorer: Scorer, split: str = "valid") -> dict[str, float]:
        """Mean of every ``metric@k`` over the users with held-out items in ``split``.

        Args:
            scorer: maps a 1-D tensor of user ids to a ``(len(users), num_items)`` score matrix.
            split: ``"valid"`` or ``"test"``.
        """
        idx = self._split_index(split)
        kmax = min(max(self.ks), self.data.num_items)
        totals = {f"{m}@{k}": 0.0 for m in self.metrics for k in self.ks}
        n = idx.users.numel()
        for lo in range(0, n, self.batch_size):
            hi = min(lo + self.batch_size, n)
            scores = scorer(idx.users[lo:hi]).float()
            rows, cols, _ = self._batch_rows(idx.exclude_ptr, idx.exclude_col, lo, hi)
            scores[rows, cols] = -torch.inf
            top = torch.topk(scores, kmax, dim=1).indices
            rows, cols, num_rel = self._batch_rows(idx.relevant_ptr, idx.relevant_col, lo, hi)
            relevant = torch.zeros_like(scores, dtype=torch.bool)
            relevant[rows, cols] = True
            hits = relevant.gather(1, top)
            for name, fn in self.metrics.items():
                for k in self.ks:
                    totals[f"{name}@{k}"] += float(fn(hits, num_rel, k).sum())
        return {key: value / max(n, 1) for key, value in totals.items()}
