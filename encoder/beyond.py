"""Beyond accuracy: what the top-k lists recommend, not only whether they hit.

Computed by the evaluator from the same top-k lists as the accuracy metrics (full protocol), for
every cut-off ``k``, over the users ranked:

* ``coverage@k``: distinct items recommended / all items (RecBole's ItemCoverage);
* ``avg_pop@k``: mean training interactions of the recommended items, per user, averaged
  (RecBole's AveragePopularity);
* ``gini@k``: Gini index of how often each item is recommended, every item counted, 0 when all
  are recommended equally, 1 when one item takes every slot (RecBole's GiniIndex);
* ``novelty@k``: mean self-information of the recommended items, ``-log2(users who have the item /
  users)`` in training (RecTools' MeanInvUserFreq; an item no training user has counts as one);
* ``tail_share@k``: share of recommended items outside the ``head_item_share`` most popular in
  training (RecBole's TailPercentage, with the evaluator's head/tail split);
* ``ild@k``: intra-list diversity, the mean cosine distance ``1 - cos`` over the pairs of a list's
  items, from the model's item vectors where it has them (RecTools' IntraListDiversity).
"""
from __future__ import annotations

import numpy as np
import torch

NAMES = ("coverage", "avg_pop", "gini", "novelty", "tail_share", "ild")


def gini(counts: np.ndarray) -> float:
    """Gini index of non-negative counts (RecBole's formula over the sorted counts)."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(c), c.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * c).sum() / (n * total))


class ListStats:
    """The top-k lists of one evaluation, kept per user (slot by slot, so that ranks filling
    different users can be summed into the same arrays exactly), and the measures from them.

    Args:
        popularity: ``(I,)`` training interactions per item.
        users_per_item: ``(I,)`` training users per item; ``num_users`` all users.
        head_items: ``(I,)`` bool, the head items.
        ks: the cut-offs.
        n: the users ranked (the slots).
        item_vectors: ``(I, d)`` for ``ild``, or None.
    """

    def __init__(self, popularity: np.ndarray, users_per_item: np.ndarray, num_users: int, head_items: np.ndarray,
                 ks: list[int], n: int, item_vectors: torch.Tensor | None = None):
        self.ks = ks
        self.num_items = len(popularity)
        self.pop = np.asarray(popularity, dtype=np.float64)
        self.info = -np.log2(np.maximum(users_per_item, 1) / max(num_users, 1))
        self.tail = ~np.asarray(head_items, dtype=bool)
        self.vectors = None
        if item_vectors is not None:
            v = item_vectors.detach().float().cpu()
            self.vectors = v / v.norm(dim=1, keepdim=True).clamp(min=1e-12)
        #: each user's list, item id + 1 (0: no item in that slot)
        self.tops = torch.zeros(n, max(ks), dtype=torch.int64)
        #: each user's intra-list diversity at each k (NaN: fewer than two items)
        self.ild = torch.zeros(len(ks), n, dtype=torch.float64)

    def add(self, lo: int, top: torch.Tensor, valid: torch.Tensor) -> None:
        """Users ``lo .. lo + len(top)``: ``top`` ``(B, max k)`` item ids, best first; ``valid``:
        which of them are real items (a finite score)."""
        top, valid = top.cpu(), valid.cpu()
        self.tops[lo:lo + len(top)] = torch.where(valid, top + 1, torch.zeros_like(top))
        if self.vectors is None:
            return
        for j, k in enumerate(self.ks):
            if k < 2:
                continue
            m = valid[:, :k].float()
            v = self.vectors[top[:, :k]] * m[..., None]
            sim = v @ v.transpose(1, 2)  # (B, k, k)
            off = (sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(1)).double()
            real = m.sum(1).double()
            self.ild[j, lo:lo + len(top)] = torch.where(real >= 2, 1 - off / (real * (real - 1)).clamp(min=1),
                                                        torch.full_like(real, float("nan")))

    def tensors(self) -> list[torch.Tensor]:
        """What several ranks sum into one (each slot filled by one rank)."""
        return [self.tops, self.ild]

    def result(self) -> dict[str, float]:
        out = {}
        tops = self.tops.numpy()
        for j, k in enumerate(self.ks):
            t = tops[:, :k]
            real = t > 0
            items = t[real] - 1
            n = np.maximum(real.sum(1), 1)
            exposure = np.bincount(items, minlength=self.num_items)
            out[f"coverage@{k}"] = float((exposure > 0).sum() / self.num_items)
            out[f"gini@{k}"] = gini(exposure)
            idx = np.where(real, t - 1, 0)
            for name, per_item in (("avg_pop", self.pop), ("novelty", self.info), ("tail_share", self.tail)):
                out[f"{name}@{k}"] = float(((per_item[idx] * real).sum(1) / n).mean()) if len(t) else 0.0
            if self.vectors is not None and k > 1:
                ild = self.ild[j].numpy()
                ok = ~np.isnan(ild)
                out[f"ild@{k}"] = float(ild[ok].mean()) if ok.any() else 0.0
        return out
