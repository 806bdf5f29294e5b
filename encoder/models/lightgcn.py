"""LightGCN: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020. https://arxiv.org/abs/2002.02126

Propagation without feature transforms or non-linearities over the normalised bipartite
graph, ``E^{(l+1)} = Â E^{(l)}``, and a combination of all layers. Settings follow RLMRec's
reference code: layers are summed (the paper averages; ``layer_agg="mean"``), edges are
dropped with ``keep_rate`` during training, and L2 regularises all parameters.
"""
from __future__ import annotations

import scipy.sparse as sp
import torch

from semrec.encoder.graph import SparseGraph, normalized_adjacency
from semrec.encoder.models.base import GraphRecommender
from semrec.encoder.registry import register


@register("lightgcn")
class LightGCN(GraphRecommender):
    """LightGCN.

    Args:
        interactions: binary ``users × items`` training matrix.
        dim: embedding size.
        layers: number of propagation layers.
        keep_rate: fraction of adjacency entries kept per training step (1.0 = no dropout).
        reg_weight: L2 weight on all parameters.
        layer_agg: ``"sum"`` (RLMRec) or ``"mean"`` (the paper) over layers ``0..L``.

    Shapes:
        ``encode()`` returns ``(U, dim)`` users and ``(I, dim)`` items.
    """

    def __init__(self, interactions: sp.spmatrix, dim: int = 32, layers: int = 3,
                 keep_rate: float = 0.8, reg_weight: float = 1e-6, layer_agg: str = "sum"):
        super().__init__(interactions, dim=dim, reg_weight=reg_weight)
        if layer_agg not in ("sum", "mean"):
            raise ValueError(f"layer_agg must be 'sum' or 'mean', got {layer_agg!r}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        self.layers, self.keep_rate, self.layer_agg = layers, keep_rate, layer_agg
        self.graph = SparseGraph(normalized_adjacency(interactions))

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_embeddings() if x0 is None else x0
        mats = self.graph.matrices(self.keep_rate if self.training else 1.0)
        out = x
        for _ in range(self.layers):
            x = self.graph.propagate(x, mats)
            out = out + x
        if self.layer_agg == "mean":
            out = out / (self.layers + 1)
        return self.split(out)
