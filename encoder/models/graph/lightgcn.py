"""LightGCN: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020. https://arxiv.org/abs/2002.02126

Propagation without feature transforms or non-linearities over the normalised bipartite
graph, ``E^{(l+1)} = Â E^{(l)}``, and a combination of all layers. Settings follow RLMRec's
reference code: layers are summed (the paper averages; ``layer_agg="mean"``), edges are
dropped with ``keep_rate`` during training, and L2 regularises all parameters.
"""
from __future__ import annotations

from typing import Callable

import scipy.sparse as sp
import torch

from semrec.encoder.graph import SparseGraph, normalized_adjacency
from semrec.common.hparams import KeepRate, NonNegativeFloat, NonNegativeInt, PositiveInt
from semrec.encoder.models.graph.base import GraphRecommender
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

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, layers: NonNegativeInt = 3,
                 keep_rate: KeepRate = 0.8, reg_weight: NonNegativeFloat = 1e-6, layer_agg: str = "sum"):
        super().__init__(interactions, dim=dim, reg_weight=reg_weight)
        if layer_agg not in ("sum", "mean"):
            raise ValueError(f"layer_agg must be 'sum' or 'mean', got {layer_agg!r}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        self.layers, self.keep_rate, self.layer_agg = layers, keep_rate, layer_agg
        self.graph = SparseGraph(normalized_adjacency(interactions))

    def propagate(self, x: torch.Tensor, keep_rate: float = 1.0, per_layer_dropout: bool = False,
                  perturb: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Propagate all node embeddings and combine the layers. Shape ``(U+I, dim)``.

        Args:
            x: layer-0 embeddings of all nodes.
            keep_rate: edge keep-rate of this pass (1.0 = the full graph).
            per_layer_dropout: draw a new edge dropout for every layer (SGL's random walk).
            perturb: applied to every layer's output (SimGCL's noise).
        """
        mats = self.graph.matrices(keep_rate)
        out = x
        for layer in range(self.layers):
            if per_layer_dropout and layer:
                mats = self.graph.matrices(keep_rate)
            x = self.graph.propagate(x, mats)
            if perturb is not None:
                x = perturb(x)
            out = out + x
        if self.layer_agg == "mean":
            out = out / (self.layers + 1)
        return out

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_embeddings() if x0 is None else x0
        return self.split(self.propagate(x, self.keep_rate if self.training else 1.0))
