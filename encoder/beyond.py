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
    """Accumulates the top-k lists of one evaluation, batch by batch.

    Args:
        popularity: ``(I,)`` training interactions per item.
        users_per_item: ``(I,)`` training users per item; ``num_users`` all users.
        head_items: ``(I,)`` bool, the head items.
        ks: the cut-offs.
        item_vectors: ``(I, d)`` for ``ild``, or None.
    """

    def __init__(self, popularity: np.ndarray, users_per_item: np.ndarray, num_users: int, head_items: np.ndarray,
                 ks: list[int], item_vectors: torch.Tensor | None = None):
        self.ks = ks
        self.num_items = len(popularity)
        self.pop = torch.as_tensor(popularity, dtype=torch.float64)
        self.info = torch.as_tensor(-np.log2(np.maximum(users_per_item, 1) / max(num_users, 1)), dtype=torch.float64)
        self.tail = torch.as_tensor(~head_items)
        self.vectors = None
        if item_vectors is not None:
            v = item_vectors.detach().float().cpu()
            self.vectors = v / v.norm(dim=1, keepdim=True).clamp(min=1e-12)
        self.exposure = {k: torch.zeros(self.num_items, dtype=torch.float64) for k in ks}
        self.sums = {f"{name}@{k}": 0.0 for name in NAMES for k in ks}
        self.users = 0
        self.ild_users = {k: 0 for k in ks}  # lists with two items or more

    def add(self, top: torch.Tensor, valid: torch.Tensor) -> None:
        """``top``: ``(B, max k)`` item ids, best first; ``valid``: which of them are real (finite score)."""
        top, valid = top.cpu(), valid.cpu()
        self.users += len(top)
        for k in self.ks:
            t, m = top[:, :k], valid[:, :k].double()
            n = m.sum(1).clamp(min=1)
            self.exposure[k].index_add_(0, t[m.bool()], torch.ones(int(m.sum()), dtype=torch.float64))
            self.sums[f"avg_pop@{k}"] += float(((self.pop[t] * m).sum(1) / n).sum())
            self.sums[f"novelty@{k}"] += float(((self.info[t] * m).sum(1) / n).sum())
            self.sums[f"tail_share@{k}"] += float(((self.tail[t].double() * m).sum(1) / n).sum())
            if self.vectors is not None and k > 1:
                v = self.vectors[t] * m[..., None].float()
                sim = v @ v.transpose(1, 2)  # (B, k, k)
                off = (sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(1)).double()
                real = m.sum(1)
                ok = real >= 2
                self.sums[f"ild@{k}"] += float((1 - off[ok] / (real[ok] * (real[ok] - 1))).sum())
                self.ild_users[k] += int(ok.sum())

    def result(self) -> dict[str, float]:
        out = {}
        for k in self.ks:
            e = self.exposure[k].numpy()
            out[f"coverage@{k}"] = float((e > 0).sum() / self.num_items)
            out[f"gini@{k}"] = gini(e)
            for name in ("avg_pop", "novelty", "tail_share"):
                out[f"{name}@{k}"] = self.sums[f"{name}@{k}"] / max(self.users, 1)
            if self.vectors is not None and k > 1:
                out[f"ild@{k}"] = self.sums[f"ild@{k}"] / max(self.ild_users[k], 1)
        return out
