"""DCCF: Ren et al., "Disentangled Contrastive Collaborative Filtering", SIGIR 2023.
https://arxiv.org/abs/2305.02759

Every layer combines four messages: graph propagation ``G E``; intent-aware embeddings
``softmax(E W) Wᵀ`` over learnt intent prototypes ``W`` (users and items have their own);
and two *adaptive* graphs whose edge weights are the (shifted) cosine similarity of the
edge's endpoints under the graph and the intent embeddings, row-normalised. InfoNCE between
the graph view and each of the other three views, per layer, over the batch's distinct
users and positive items. Everything runs on torch's CSR kernels (no torch-sparse).
"""
from __future__ import annotations

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from semrec.encoder.graph import SparseGraph, normalized_adjacency
from semrec.common.hparams import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from semrec.encoder.losses import info_nce, l2_of_parameters
from semrec.encoder.models.graph.base import GraphOutput, GraphRecommender
from semrec.encoder.batches import PairBatch
from semrec.encoder.registry import register


@register("dccf")
class DCCF(GraphRecommender):
    """DCCF.

    Args:
        interactions: binary ``users × items`` training matrix.
        dim: embedding size.
        layers: number of layers.
        intents: number of intent prototypes (per side).
        reg_weight: L2 weight on all parameters.
        cl_weight: weight of the contrastive loss.
        temperature: InfoNCE temperature.

    Shapes:
        ``encode()`` returns ``(U, dim)`` users and ``(I, dim)`` items.
    """

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, layers: NonNegativeInt = 2, intents: PositiveInt = 128,
                 reg_weight: NonNegativeFloat = 1e-4, cl_weight: NonNegativeFloat = 1e-3, temperature: PositiveFloat = 0.1):
        super().__init__(interactions, dim=dim, reg_weight=reg_weight)
        self.layers, self.cl_weight, self.temperature = layers, cl_weight, temperature
        self.graph = SparseGraph(normalized_adjacency(interactions))
        self.user_intent = nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, intents)))
        self.item_intent = nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, intents)))

    def _adaptive(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Propagate ``x`` over the graph re-weighted by endpoint similarity under ``h``."""
        g = self.graph
        hn = F.normalize(h, dim=-1)
        alpha = (g.edge_dot(hn, hn) + 1) / 2
        deg = g.row_sum(alpha)
        inv = torch.where(deg > 0, 1.0 / deg, torch.zeros_like(deg))
        return g.weighted_propagate(alpha * inv[g.row], x)

    def _layers(self, x0: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]]:
        x, out, views = x0, x0, []
        mats = self.graph.matrices()
        for _ in range(self.layers):
            gnn = self.graph.propagate(x, mats)
            u, i = self.split(x)
            intent = torch.cat([torch.softmax(u @ self.user_intent, 1) @ self.user_intent.t(),
                                torch.softmax(i @ self.item_intent, 1) @ self.item_intent.t()])
            gaa, iaa = self._adaptive(gnn, x), self._adaptive(intent, x)
            views.append((gnn, intent, gaa, iaa))
            x = gnn + intent + gaa + iaa + x
            out = out + x
        return out, views

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self._layers(self.input_embeddings() if x0 is None else x0)[0])

    def forward_train(self, x0: torch.Tensor | None = None, batch: PairBatch | None = None) -> GraphOutput:
        x0 = self.input_embeddings() if x0 is None else x0
        out, views = self._layers(x0)
        return GraphOutput(*self.split(out), x0=x0, extras={"views": views})

    def loss(self, batch: PairBatch, out: GraphOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = out if out is not None else self.forward_train(None, batch)
        views = out.extras["views"]
        rec = self.bpr(out, batch)
        u_nodes = torch.unique(batch.users)
        i_nodes = torch.unique(batch.pos) + self.num_users
        cl = out.users.new_zeros(())
        for gnn, *others in views:
            for nodes in (u_nodes, i_nodes):
                anchor, ones = gnn[nodes], torch.ones(nodes.numel(), device=nodes.device)
                for other in others:
                    o = other[nodes]
                    cl = cl + info_nce(anchor, o, o, self.temperature, weights=ones)
        # RLMRec divides every term by the number of distinct batch users
        cl = self.cl_weight * cl / u_nodes.numel()
        reg = self.reg_weight * l2_of_parameters(self)
        return rec + cl + reg, {"bpr": rec, "cl": cl, "reg": reg}
