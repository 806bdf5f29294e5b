"""AutoCF: Xia et al., "Automated Self-Supervised Learning for Recommendation", WWW 2023.
https://arxiv.org/abs/2303.07797

Learned graph masking: seed nodes are drawn (Gumbel top-k) by how well each node agrees
with its two-hop subgraph ("infomax" scores, trained to be high); the edges within
``mask_depth`` hops of the seeds are removed. A LightGCN-style encoder propagates over the
masked graph, and a graph-transformer decoder over the kept edges plus random edges among
the masked nodes (and self-loops) reconstructs them. As in RLMRec, the training loss is the
dot-product reconstruction of the batch's interactions, uniformity terms over the batch's
users and items, L2, and the infomax loss each time the mask is redrawn. The mask is
redrawn every ``fix_steps`` training steps, counted from the start of each epoch.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from semrec.encoder.graph import SparseGraph, gather_rows, normalized_adjacency
from semrec.common.hparams import KeepRate, NonNegativeFloat, NonNegativeInt, PositiveInt
from semrec.encoder.losses import l2_of_parameters, weighted_logsumexp_similarity
from semrec.encoder.models.graph.base import GraphOutput, GraphRecommender
from semrec.encoder.batches import PairBatch
from semrec.encoder.registry import register


def gumbel_noise(uniform: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel samples ``-log(-log(u))`` from uniform draws in [0, 1), always finite."""
    tiny = torch.finfo(uniform.dtype).tiny
    return -torch.log((-torch.log(uniform.clamp(min=tiny))).clamp(min=tiny))


class GraphTransformerLayer(nn.Module):
    """Multi-head attention along the entries of a sparse graph (row ``r`` attends to col ``c``).

    Per head: scores ``<q_r, k_c>`` clamped to [-10, 10], exponentiated and normalised per row;
    the output of ``r`` is the score-weighted sum of ``v_c``. Runs on the graph's CSR kernels.

    Shapes: ``x``: ``(N, d)``; output ``(N, d)``.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q, self.k, self.v = (nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, dim))) for _ in range(3))

    def forward(self, x: torch.Tensor, graph: SparseGraph) -> torch.Tensor:
        q, k, v = x @ self.q, x @ self.k, x @ self.v
        outs = []
        for part in torch.arange(x.shape[1], device=x.device).chunk(self.heads):
            sl = slice(int(part[0]), int(part[-1]) + 1)
            att = torch.exp(graph.edge_dot(q[:, sl], k[:, sl]).clamp(-10.0, 10.0))
            norm = graph.row_sum(att)
            outs.append(graph.weighted_propagate(att / (norm.index_select(0, graph.row) + 1e-8), v[:, sl]))
        return torch.cat(outs, dim=1)


@register("autocf")
class AutoCF(GraphRecommender):
    """AutoCF.

    Args:
        interactions: binary ``users × items`` training matrix.
        dim: embedding size.
        gcn_layers: encoder (propagation) layers.
        gt_layers: graph-transformer decoder layers.
        heads: attention heads in the decoder.
        seed_num: seed nodes drawn per mask.
        mask_depth: hops around the seeds whose edges are masked.
        keep_rate: fraction of all nodes added at random to the decoder's node pool.
        fix_steps: training steps between two masks.
        reg_weight: L2 weight on all parameters.
        ssl_reg: weight of the user-user and item-item uniformity terms.
    """

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, gcn_layers: NonNegativeInt = 2, gt_layers: NonNegativeInt = 1,
                 heads: PositiveInt = 4, seed_num: PositiveInt = 100, mask_depth: NonNegativeInt = 2, keep_rate: KeepRate = 0.2,
                 fix_steps: PositiveInt = 10, reg_weight: NonNegativeFloat = 1e-6, ssl_reg: NonNegativeFloat = 1.0):
        super().__init__(interactions, dim=dim, reg_weight=reg_weight)
        self.gcn_layers, self.seed_num, self.mask_depth = gcn_layers, seed_num, mask_depth
        self.keep_rate, self.fix_steps, self.ssl_reg = keep_rate, fix_steps, ssl_reg
        self.graph = SparseGraph(normalized_adjacency(interactions))
        binary = normalized_adjacency(interactions)
        binary.data[:] = 1.0  # the same edges, unweighted
        self.ones = SparseGraph(binary)
        self.decoder = nn.ModuleList(GraphTransformerLayer(dim, heads) for _ in range(gt_layers))
        self._step = 0
        self._masked: tuple[SparseGraph, SparseGraph] | None = None

    def start_epoch(self, epoch: int) -> None:
        self._step = 0

    # ----- learned masking -----------------------------------------------------------------
    def seed_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Log infomax score of every node, and the ``seed_num`` nodes drawn by Gumbel top-k.

        The infomax loss is ``-mean(log score)``. AutoCF's code adds the Gumbel noise to the
        scores before taking that mean; the noise has no gradient, so leaving it out changes
        the logged value (by about 0.58 on average), not the training, and keeps the value
        finite where a uniform draw of exactly 0 would make the noise infinite.
        """
        e = self.input_embeddings()
        a = self.ones
        deg = a.row_sum(a.val).unsqueeze(1)
        first = a.propagate(e) - e
        second = (a.propagate(first) - first) - deg * e
        n_second = (a.propagate(deg) - deg) - deg
        sub = F.normalize((first + second) / (deg + n_second + 1e-8), dim=-1)
        log_scores = F.logsigmoid((sub * F.normalize(e, dim=-1)).sum(-1))
        noisy = log_scores.detach() + gumbel_noise(torch.rand_like(log_scores))
        return log_scores, torch.topk(noisy, min(self.seed_num, noisy.numel())).indices

    def mask(self, seeds: torch.Tensor) -> tuple[SparseGraph, SparseGraph]:
        """Encoder graph without the edges near ``seeds``, and the decoder's graph."""
        rows, cols = self.graph.row, self.graph.col
        n = self.graph.num_nodes
        kept = torch.ones_like(rows, dtype=torch.bool)
        pool, frontier = [seeds], seeds
        for depth in range(self.mask_depth):
            hit = kept & (torch.isin(rows, frontier) | torch.isin(cols, frontier))
            if depth != self.mask_depth - 1:
                frontier = torch.unique(torch.cat([rows[hit], cols[hit]]))
                pool.append(frontier)
            kept &= ~hit
        r, c = rows[kept], cols[kept]
        deg = torch.bincount(r, minlength=n).to(self.graph.val.dtype)
        inv = (deg + 1e-12).pow(-0.5)
        enc = sp.csr_matrix(((inv[r] * inv[c]).cpu().numpy(), (r.cpu().numpy(), c.cpu().numpy())), shape=(n, n))
        encoder = SparseGraph(enc).to(self.graph.val.device)
        pool.append(torch.randint(n, (int(n * self.keep_rate),), device=rows.device))
        pool = torch.unique(torch.cat(pool))
        e = rows.numel()
        a = pool[torch.randint(pool.numel(), (e,), device=rows.device)]
        b = pool[torch.randint(pool.numel(), (e,), device=rows.device)]
        loops = torch.arange(n, device=rows.device)
        key = torch.unique(torch.cat([a, b, loops, r]) * n + torch.cat([b, a, loops, c])).cpu().numpy()
        decoder = sp.csr_matrix((np.ones(len(key), dtype=np.float32), (key // n, key % n)), shape=(n, n))
        return encoder, SparseGraph(decoder).to(self.graph.val.device)

    # ----- forward ---------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, encoder: SparseGraph, decoder: SparseGraph) -> torch.Tensor:
        out = x
        mats = encoder.matrices()
        for _ in range(self.gcn_layers):
            x = encoder.propagate(x, mats)
            out = out + x
        for layer in self.decoder:
            x = layer(x, decoder)
            out = out + x
        return out

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Full graph for both encoder and decoder (ranking)."""
        x = self.input_embeddings() if x0 is None else x0
        return self.split(self._forward(x, self.graph, self.ones))

    @staticmethod
    def _uniformity(anchor: torch.Tensor, candidates: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        weights = torch.ones(anchor.shape[0], device=anchor.device, dtype=anchor.dtype) if counts is None else counts
        return weighted_logsumexp_similarity(anchor, candidates, weights) / weights.sum()

    def forward_train(self, x0: torch.Tensor | None = None, batch: PairBatch | None = None) -> GraphOutput:
        """Masked encoder + decoder pass; redraws the mask every ``fix_steps`` steps."""
        x0 = self.input_embeddings() if x0 is None else x0
        extras = {}
        if self._step % self.fix_steps == 0 or self._masked is None:
            log_scores, seeds = self.seed_scores()
            self._masked = self.mask(seeds)
            extras["infomax"] = -log_scores.mean()
        self._step += 1
        return GraphOutput(*self.split(self._forward(x0, *self._masked)), x0=x0, extras=extras)

    def loss(self, batch: PairBatch, out: GraphOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = out if out is not None else self.forward_train(None, batch)
        users, items = out.users, out.items
        rec = -(gather_rows(users, batch.users) * gather_rows(items, batch.pos)).sum(-1).mean()
        u_uniq, u_count = torch.unique(batch.users, return_counts=True)
        i_uniq = torch.unique(batch.pos)
        u_rows = gather_rows(users, u_uniq)
        cl = (self.ssl_reg * (self._uniformity(u_rows, users) + self._uniformity(gather_rows(items, i_uniq), items))
              + self._uniformity(u_rows, items, u_count.to(users.dtype)))
        reg = self.reg_weight * l2_of_parameters(self)
        parts = {"rec": rec, "cl": cl, "reg": reg, **out.extras}
        return sum(parts.values()), parts
