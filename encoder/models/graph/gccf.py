"""GCCF (LR-GCCF): Chen et al., "Revisiting Graph based Collaborative Filtering: A Linear
Residual Graph Convolutional Network Approach", AAAI 2020. https://arxiv.org/abs/2001.10167

Linear graph convolution over the normalised adjacency *with self-loops*; the final
representation concatenates the outputs of all layers (the residual part). RLMRec's setting
drops the per-layer weight matrix ("performs better without W"); ``transform=True`` puts it
back as in the paper.
"""
from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import nn

from semrec.encoder.graph import SparseGraph, normalized_adjacency
from semrec.common.hparams import KeepRate, NonNegativeFloat, NonNegativeInt, PositiveInt
from semrec.encoder.models.graph.base import GraphRecommender
from semrec.encoder.registry import register


@register("gccf")
class GCCF(GraphRecommender):
    """GCCF.

    Args:
        interactions: binary ``users × items`` training matrix.
        dim: embedding size.
        layers: number of graph-convolution layers.
        keep_rate: fraction of adjacency entries kept per training step (RLMRec: 1.0).
        reg_weight: L2 weight on all parameters.
        transform: apply a learnt ``dim × dim`` linear map in every layer (the paper).

    Shapes:
        ``encode()`` returns ``(U, dim·(layers+1))`` users and ``(I, dim·(layers+1))`` items.
    """

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, layers: NonNegativeInt = 2,
                 keep_rate: KeepRate = 1.0, reg_weight: NonNegativeFloat = 1e-6, transform: bool = False):
        super().__init__(interactions, dim=dim, reg_weight=reg_weight)
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        self.layers, self.keep_rate = layers, keep_rate
        self.graph = SparseGraph(normalized_adjacency(interactions, self_loops=True))
        self.weights = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, dim))) for _ in range(layers)]
            if transform else [])

    @property
    def out_dim(self) -> int:
        return self.dim * (self.layers + 1)

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_embeddings() if x0 is None else x0
        mats = self.graph.matrices(self.keep_rate if self.training else 1.0)
        outs = [x]
        for layer in range(self.layers):
            x = self.graph.propagate(x, mats)
            if self.weights:
                x = x @ self.weights[layer]
            outs.append(x)
        return self.split(torch.cat(outs, dim=1))
