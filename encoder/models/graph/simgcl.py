"""SimGCL: Yu et al., "Are Graph Augmentations Necessary? Simple Graph Contrastive Learning
for Recommendation", SIGIR 2022. https://arxiv.org/abs/2112.08679

No graph augmentation: each contrastive view adds a random direction of norm ``eps`` (in
the sign-orthant of the embedding) to every layer's output of LightGCN. InfoNCE between
two such views of the batch's users and positive items; BPR on the clean representation.
"""
from __future__ import annotations

import scipy.sparse as sp
import torch
import torch.nn.functional as F

from semrec.common.hparams import KeepRate, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from semrec.encoder.losses import l2_of_parameters
from semrec.encoder.models.graph.base import GraphOutput
from semrec.encoder.batches import PairBatch
from semrec.encoder.models.graph.lightgcn import LightGCN
from semrec.encoder.models.graph.ssl import NEGATIVES, view_contrast
from semrec.encoder.registry import register


def uniform_noise(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``eps``-norm noise per row, uniform direction within the sign-orthant of ``x``."""
    return F.normalize(torch.rand_like(x), dim=-1) * torch.sign(x) * eps


@register("simgcl")
class SimGCL(LightGCN):
    """SimGCL.

    Args:
        interactions: binary ``users × items`` training matrix.
        dim, layers, reg_weight, layer_agg: as in :class:`LightGCN`.
        keep_rate: edge keep-rate of the main (BPR) pass; RLMRec uses 1.0.
        eps: norm of the noise added to every layer in the contrastive views.
        cl_weight: weight of the contrastive loss.
        temperature: InfoNCE temperature.
        cl_negatives: ``all`` (every node, RLMRec) or ``batch`` (the batch's distinct nodes, as the paper's code).
    """

    def __init__(self, interactions: sp.spmatrix, dim: PositiveInt = 32, layers: NonNegativeInt = 3, keep_rate: KeepRate = 1.0,
                 reg_weight: NonNegativeFloat = 1e-5, eps: NonNegativeFloat = 0.9, cl_weight: NonNegativeFloat = 0.1, temperature: PositiveFloat = 0.2,
                 cl_negatives: str = "all", layer_agg: str = "sum"):
        super().__init__(interactions, dim=dim, layers=layers, keep_rate=keep_rate, reg_weight=reg_weight,
                         layer_agg=layer_agg)
        if cl_negatives not in NEGATIVES:
            raise ValueError(f"cl_negatives must be one of {', '.join(NEGATIVES)}, got {cl_negatives!r}")
        self.eps, self.cl_weight, self.temperature, self.cl_negatives = eps, cl_weight, temperature, cl_negatives

    def perturbed_view(self, x0: torch.Tensor | None = None) -> torch.Tensor:
        """All node representations with noise added after every layer. Shape ``(U+I, d)``."""
        x = self.input_embeddings() if x0 is None else x0
        return self.propagate(x, 1.0, perturb=lambda h: h + uniform_noise(h, self.eps))

    def loss(self, batch: PairBatch, out: GraphOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = out if out is not None else self.forward_train(None, batch)
        rec = self.bpr(out, batch)
        u1, i1 = self.split(self.perturbed_view(out.x0))
        u2, i2 = self.split(self.perturbed_view(out.x0))
        cl = (view_contrast(u1, u2, batch.users, temperature=self.temperature, negatives=self.cl_negatives)
              + view_contrast(i1, i2, batch.pos, temperature=self.temperature, negatives=self.cl_negatives))
        cl = self.cl_weight * cl / batch.users.numel()
        reg = self.reg_weight * l2_of_parameters(self)
        return rec + cl + reg, {"bpr": rec, "cl": cl, "reg": reg}
