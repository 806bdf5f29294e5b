"""Simple baselines every result is compared with: popularity, ItemKNN, EASE, a Markov chain, BPR-MF.

* ``pop``: items by their number of training interactions (the same list for everyone, minus what
  each user has).
* ``itemknn``: Sarwar et al., "Item-Based Collaborative Filtering Recommendation Algorithms", WWW
  2001, as RecBole's ItemKNN: cosine between the items' training columns with a shrinkage term,
  ``sim(i, j) = x_i·x_j / (‖x_i‖‖x_j‖ + shrink)``, each item keeping its ``k`` most similar items;
  a user's score for ``j`` is the sum of ``sim(i, j)`` over the user's training items ``i`` among
  ``j``'s ``k`` neighbours.
* ``ease``: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019: ``B = I − P ·
  diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹`` (zero diagonal, closed form); scores ``X_u B``.
  ``reg`` 0 picks λ from ``reg_grid`` by validation ``stop_metric``.
* ``markov``: a first-order Markov chain over training sequences (the "last item" baseline of
  sequential recommendation): ``P(next = j | last = i)`` from transition counts, popularity for ties.
* ``bpr``: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009:
  matrix factorisation trained with the BPR loss, i.e. LightGCN with no propagation layer.

The first four are solved from the training data, not trained for epochs (``closed_form``: the
trainer calls :meth:`ClosedForm.fit` once, validates, tests). Their "vectors" are ``I``-wide: a
user is their training row (or last item), an item its column of the solution.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from semrec.common.hparams import KeepRate, NonNegativeFloat, NonNegativeInt, PositiveInt
from semrec.encoder.batches import EvalBatch
from semrec.encoder.models.base import Recommender
from semrec.encoder.models.graph.lightgcn import LightGCN
from semrec.encoder.registry import register

log = logging.getLogger(__name__)


class ClosedForm(Recommender):
    """A model solved from the training data once (:meth:`fit`); ``loss`` is never called."""

    closed_form = True
    alignable = False
    data_args = ("interactions",)

    def __init__(self, interactions: sp.spmatrix):
        super().__init__()
        x = sp.csr_matrix(interactions, dtype=np.float32)
        x.data[:] = 1.0
        self.x = x
        self.num_users, self.num_items = x.shape

    @classmethod
    def from_data(cls, data, **hparams) -> "ClosedForm":
        return cls(data.train, **hparams)

    def fit(self, validate: Callable[[], dict[str, float]], metric: str) -> dict[str, Any]:
        """Solve from ``self.x``; ``validate()`` scores the current solution on validation (by
        ``metric``) where a setting is chosen. Returns what was chosen, for the run's history."""
        raise NotImplementedError

    def loss(self, batch):
        raise RuntimeError(f"{type(self).__name__} is solved in closed form (fit), not trained by a loss")

    def user_rows(self, batch: EvalBatch) -> sp.csr_matrix:
        """``(B, I)`` sparse: the batch's users' training rows (what the solution multiplies)."""
        return self.x[batch.users.cpu().numpy()]

    def item_matrix(self) -> torch.Tensor:
        """``(I, I)``: item ``j``'s row is the column of the solution that scores ``j``."""
        raise NotImplementedError

    def factors(self):
        def users(batch):
            return torch.from_numpy(self.user_rows(batch).toarray()).to(batch.users.device)

        return users, self.item_matrix()

    @torch.no_grad()
    def scorer(self):
        """Sparse user rows times the solution: ``nnz · I`` work a batch, not ``B · I · I``."""
        solution = self.item_matrix().t().contiguous()

        def score(batch):
            rows = self.user_rows(batch).tocoo()
            idx = torch.from_numpy(np.vstack([rows.row, rows.col]).astype(np.int64))
            sparse = torch.sparse_coo_tensor(idx, torch.from_numpy(rows.data.astype(np.float32)), rows.shape,
                                             check_invariants=False)  # scipy's indices are valid
            return torch.sparse.mm(sparse.to(solution.device), solution)

        return score


@register("pop")
class Popularity(ClosedForm):
    """Popularity: items by their number of training interactions.

    Args:
        interactions: binary ``users × items`` training matrix.
    """

    def __init__(self, interactions: sp.spmatrix):
        super().__init__(interactions)
        self.register_buffer("counts", torch.zeros(self.num_items))

    def fit(self, validate, metric):
        self.counts.copy_(torch.from_numpy(np.asarray(self.x.sum(0), dtype=np.float32).ravel()))
        return {}

    def factors(self):
        return (lambda batch: torch.ones(len(batch.users), 1, device=self.counts.device)), self.counts[:, None]

    scorer = Recommender.scorer


@register("itemknn")
class ItemKNN(ClosedForm):
    """ItemKNN: Sarwar et al., WWW 2001 (cosine with shrinkage, ``k`` neighbours per item).

    Args:
        interactions: binary ``users × items`` training matrix.
        k: neighbours kept per item.
        shrink: added to the cosine's denominator (damps similarities of rarely seen items).
    """

    def __init__(self, interactions: sp.spmatrix, k: PositiveInt = 100, shrink: NonNegativeFloat = 0.0):
        super().__init__(interactions)
        self.k, self.shrink = k, shrink
        self.register_buffer("neighbours", torch.zeros(self.num_items, min(k, self.num_items), dtype=torch.long))
        self.register_buffer("weights", torch.zeros(self.num_items, min(k, self.num_items)))

    @staticmethod
    def similarity(x: sp.csr_matrix, shrink: float) -> sp.csr_matrix:
        """Item-item cosine with shrinkage, diagonal zero (sparse: only co-occurring pairs)."""
        xc = x.tocsc()
        co = (xc.T @ xc).tocoo()
        norms = np.sqrt(np.asarray(xc.multiply(xc).sum(0)).ravel())
        keep = co.row != co.col
        r, c, v = co.row[keep], co.col[keep], co.data[keep]
        v = v / (norms[r] * norms[c] + shrink)
        return sp.csr_matrix((v.astype(np.float32), (r, c)), shape=co.shape)

    def fit(self, validate, metric):
        sim = self.similarity(self.x, self.shrink)
        kk = self.neighbours.shape[1]
        nb = np.zeros((self.num_items, kk), dtype=np.int64)
        wt = np.zeros((self.num_items, kk), dtype=np.float32)
        for i in range(self.num_items):  # each item's k most similar items (its row of the symmetric matrix)
            cols, vals = sim.indices[sim.indptr[i]:sim.indptr[i + 1]], sim.data[sim.indptr[i]:sim.indptr[i + 1]]
            if len(vals) > kk:
                top = np.argpartition(-vals, kk - 1)[:kk]
                cols, vals = cols[top], vals[top]
            nb[i, :len(cols)], wt[i, :len(cols)] = cols, vals
        self.neighbours.copy_(torch.from_numpy(nb))
        self.weights.copy_(torch.from_numpy(wt))
        return {}

    def item_matrix(self) -> torch.Tensor:
        """Row ``j``: how much each item, held, adds to ``j`` (``j``'s neighbours' similarities)."""
        w = torch.zeros(self.num_items, self.num_items, device=self.weights.device)
        w.scatter_(1, self.neighbours, self.weights)
        return w


@register("ease")
class EASE(ClosedForm):
    """EASE: Steck, WWW 2019 (a closed-form linear item-item model with zero diagonal).

    Args:
        interactions: binary ``users × items`` training matrix.
        reg: the L2 weight λ; 0 chooses it from ``reg_grid`` by validation.
        reg_grid: the values of λ tried when ``reg`` is 0.
    """

    def __init__(self, interactions: sp.spmatrix, reg: NonNegativeFloat = 0.0,
                 reg_grid: list[float] = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)):
        super().__init__(interactions)
        if not reg and not reg_grid:
            raise ValueError("ease: give reg > 0 or a non-empty reg_grid")
        if any(not (v > 0) for v in reg_grid):
            raise ValueError(f"ease: every reg_grid value must be > 0, got {list(reg_grid)}")
        self.reg, self.reg_grid = reg, [float(v) for v in reg_grid]
        self.register_buffer("B", torch.zeros(self.num_items, self.num_items))
        self.chosen_reg = reg

    @staticmethod
    def solve(gram: np.ndarray, reg: float) -> np.ndarray:
        """``B`` for the Gram matrix ``XᵀX`` (float64) and λ."""
        g = gram.copy()
        g[np.diag_indices_from(g)] += reg
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        return b

    def fit(self, validate, metric):
        gram = (self.x.T @ self.x).toarray().astype(np.float64)
        if self.reg:
            self.B.copy_(torch.from_numpy(self.solve(gram, self.reg)).float())
            return {"reg": self.reg}
        scores = {}
        for reg in self.reg_grid:
            self.B.copy_(torch.from_numpy(self.solve(gram, reg)).float())
            scores[reg] = validate()[metric]
            log.info("ease: reg %g, validation %s %.4f", reg, metric, scores[reg])
        self.chosen_reg = max(scores, key=lambda r: (scores[r], -r))
        self.B.copy_(torch.from_numpy(self.solve(gram, self.chosen_reg)).float())
        return {"reg": self.chosen_reg, "validation_by_reg": {str(k): v for k, v in scores.items()}}

    def item_matrix(self) -> torch.Tensor:
        return self.B.t()


@register("markov")
class Markov(ClosedForm):
    """Markov chain: the next item given the last, from the training sequences' transitions.

    Args:
        interactions: binary ``users × items`` training matrix (for the popularity tie-break).
        sequences: the dataset's time-ordered sequences (from the data).
        pop_weight: how much popularity (scaled to [0, 1]) adds to each transition probability.
    """

    data_args = ("interactions", "sequences")
    history_len = 1

    def __init__(self, interactions: sp.spmatrix, sequences=None, pop_weight: NonNegativeFloat = 1e-3):
        super().__init__(interactions)
        if sequences is None:
            raise ValueError("markov needs time-ordered sequences")
        self.sequences, self.pop_weight = sequences, pop_weight
        self.register_buffer("T", torch.zeros(self.num_items, self.num_items))

    @classmethod
    def from_data(cls, data, **hparams) -> "Markov":
        return cls(data.train, data.require_sequences("markov"), **hparams)

    def fit(self, validate, metric):
        seq, n = self.sequences, self.num_items
        ends = seq.history_end("train")
        src, dst = [], []
        for u in range(len(ends)):
            items = seq.items[seq.ptr[u]:ends[u]]
            src.append(items[:-1])
            dst.append(items[1:])
        src, dst = np.concatenate(src), np.concatenate(dst)
        counts = sp.csr_matrix((np.ones(len(src), dtype=np.float32), (src, dst)), shape=(n, n))
        out = np.asarray(counts.sum(1), dtype=np.float32).ravel()
        probs = sp.diags(np.divide(1.0, out, out=np.zeros_like(out), where=out > 0)) @ counts
        pop = np.asarray(self.x.sum(0), dtype=np.float32).ravel()
        self.T.copy_(torch.from_numpy(probs.toarray() + self.pop_weight * pop[None, :] / max(pop.max(), 1.0)))
        return {"transitions": int(len(src))}

    def user_rows(self, batch: EvalBatch) -> sp.csr_matrix:
        """One-hot of each history's last item (an empty row for an empty history)."""
        last = batch.history[:, -1].cpu().numpy()
        real = last < self.num_items  # the padding id is num_items
        return sp.csr_matrix((np.ones(int(real.sum()), dtype=np.float32), (np.flatnonzero(real), last[real])),
                             shape=(len(last), self.num_items))

    def item_matrix(self) -> torch.Tensor:
        return self.T.t()


@register("bpr")
class BPRMF(LightGCN):
    """BPR-MF: Rendle et al., UAI 2009 (matrix factorisation with the BPR loss; LightGCN with no layer).

    Args:
        interactions: binary ``users × items`` training matrix.
        dim: embedding size.
        layers: propagation layers (0: plain matrix factorisation).
        keep_rate: fraction of adjacency entries kept per step (no effect without layers).
        reg_weight: L2 weight on all parameters.
        layer_agg: how layers combine (no effect without layers).
    """

    alignable = False  #: a baseline: no _plus / _gene (without layers, _gene has nothing to reconstruct from)

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, layers: NonNegativeInt = 0,
                 keep_rate: KeepRate = 1.0, reg_weight: NonNegativeFloat = 1e-6, layer_agg: str = "sum"):
        super().__init__(interactions, dim=dim, layers=layers, keep_rate=keep_rate, reg_weight=reg_weight,
                         layer_agg=layer_agg)
