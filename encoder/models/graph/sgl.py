"""SGL: Wu et al., "Self-supervised Graph Learning for Recommendation", SIGIR 2021.
https://arxiv.org/abs/2010.10783

LightGCN trained with an extra InfoNCE loss that pulls together the representations of the
same node under two stochastic augmentations of the graph (edge dropout by default; node
dropout or a per-layer edge dropout, "random walk", as options). As in RLMRec, the BPR loss
uses the clean graph and the contrast covers the batch's users, positive and negative items.
"""
from __future__ import annotations

import scipy.sparse as sp
import torch

from semrec.common.hparams import KeepRate, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from semrec.encoder.losses import l2_of_parameters
from semrec.encoder.models.graph.base import GraphOutput
from semrec.encoder.batches import PairBatch
from semrec.encoder.models.graph.lightgcn import LightGCN
from semrec.encoder.models.graph.ssl import NEGATIVES, view_contrast
from semrec.encoder.registry import register

AUGMENTATIONS = ("edge_drop", "node_drop", "random_walk")


@register("sgl")
class SGL(LightGCN):
    """SGL.

    Args:
        interactions: binary ``users × items`` training matrix.
        dim, layers, reg_weight, layer_agg: as in :class:`LightGCN`.
        keep_rate: fraction of edges (or nodes) each augmented view keeps.
        augmentation: ``edge_drop`` | ``node_drop`` | ``random_walk``.
        cl_weight: weight of the contrastive loss.
        temperature: InfoNCE temperature.
        cl_negatives: ``all`` (every node, RLMRec) or ``batch`` (the batch's distinct nodes).
    """

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, layers: NonNegativeInt = 3, keep_rate: KeepRate = 0.8,
                 reg_weight: NonNegativeFloat = 1e-5, augmentation: str = "edge_drop", cl_weight: NonNegativeFloat = 0.1,
                 temperature: PositiveFloat = 0.2, cl_negatives: str = "all", layer_agg: str = "sum"):
        super().__init__(interactions, dim=dim, layers=layers, keep_rate=keep_rate, reg_weight=reg_weight,
                         layer_agg=layer_agg)
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {augmentation!r}")
        if cl_negatives not in NEGATIVES:
            raise ValueError(f"cl_negatives must be one of {', '.join(NEGATIVES)}, got {cl_negatives!r}")
        self.augmentation, self.cl_weight, self.temperature = augmentation, cl_weight, temperature
        self.cl_negatives = cl_negatives

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean view (no augmentation), used for BPR and for ranking."""
        x = self.input_embeddings() if x0 is None else x0
        return self.split(self.propagate(x, 1.0))

    def augmented_view(self, x0: torch.Tensor | None = None) -> torch.Tensor:
        """All node representations under one random augmentation. Shape ``(U+I, d)``."""
        x = self.input_embeddings() if x0 is None else x0
        if self.augmentation == "node_drop":
            keep = (torch.rand(x.shape[0], 1, device=x.device) < self.keep_rate).to(x.dtype)
            return self.propagate(x * keep, 1.0)
        return self.propagate(x, self.keep_rate, per_layer_dropout=self.augmentation == "random_walk")

    def loss(self, batch: PairBatch, out: GraphOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = out if out is not None else self.forward_train(None, batch)
        rec = self.bpr(out, batch)
        v1, v2 = self.augmented_view(out.x0), self.augmented_view(out.x0)
        u1, i1 = self.split(v1)
        u2, i2 = self.split(v2)
        cl = (view_contrast(u1, u2, batch.users, temperature=self.temperature, negatives=self.cl_negatives)
              + view_contrast(i1, i2, batch.pos, batch.neg, temperature=self.temperature,
                              negatives=self.cl_negatives))
        cl = self.cl_weight * cl / batch.users.numel()
        reg = self.reg_weight * l2_of_parameters(self)
        return rec + cl + reg, {"bpr": rec, "cl": cl, "reg": reg}
