"""gSASRec: SASRec trained with many negatives and generalised binary cross-entropy (gBCE).

Petrov & Macdonald, "gSASRec: Reducing Overconfidence in Sequential Recommendation Trained
with Negative Sampling", RecSys 2023. https://arxiv.org/abs/2308.07192
(reference code: https://github.com/asash/gsasrec)

The SASRec encoder, ``k`` uniformly sampled negatives per position, and gBCE: the positive
term is BCE of ``σ(s)^β`` instead of ``σ(s)``, with ``β = α(t(1 - 1/α) + 1/α)`` and
``α = k / (I - 1)``; the calibration ``t`` (0.75 in the paper) undoes the overconfidence that
negative sampling causes. See :func:`semrec.encoder.losses.gbce`. As every sampled loss here,
the scores enter it shifted by ``-ln k`` (:mod:`semrec.encoder.models.sequential.base`: without
the shift, gSASRec on Beauty stayed at popularity's level).
"""
from __future__ import annotations

from typing import Any

import torch

from semrec.common.hparams import DropoutRate, PositiveFloat, PositiveInt, Probability, choice
from semrec.encoder.losses import gbce
from semrec.encoder.models.sequential.base import INITS
from semrec.encoder.models.sequential.encoders import LENGTH_GROUPS
from semrec.encoder.models.sequential.sasrec import LAYOUTS, SASRec
from semrec.encoder.registry import register


@register("gsasrec")
class GSASRec(SASRec):
    """gSASRec.

    Args:
        num_items, dim, max_len, layers, heads, ffn_dim, dropout, layout, attend_padding, scale_items,
            length_groups: as :class:`SASRec`.
        negatives: sampled negatives per position ``k`` (the paper: 256).
        t: gBCE calibration in [0, 1] (0: plain BCE; 1: fully calibrated).
        init, init_std, **table: see :class:`SASRec`.
    """

    losses = ("gbce",)

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50, layers: PositiveInt = 2,
                 heads: PositiveInt = 2, ffn_dim: PositiveInt = 256, dropout: DropoutRate = 0.5,
                 layout: choice(*LAYOUTS) = "sasrec", attend_padding: bool = False, scale_items: bool = True,
                 length_groups: PositiveInt = LENGTH_GROUPS, negatives: PositiveInt = 256, t: Probability = 0.75,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02, **table: Any):
        super().__init__(num_items, dim=dim, max_len=max_len, layers=layers, heads=heads, ffn_dim=ffn_dim,
                         dropout=dropout, layout=layout, attend_padding=attend_padding, scale_items=scale_items,
                         length_groups=length_groups, loss="gbce", negatives=negatives, init=init,
                         init_std=init_std, **table)
        self.t = t

    def sampled_loss(self, s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
        return gbce(s_pos, s_neg, self.num_items, self.t)
