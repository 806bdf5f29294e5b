"""Losses shared by the recommenders (one place for each)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bpr_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking, ``mean(softplus(s_neg - s_pos))`` over the batch.

    Shapes: ``user``, ``pos``, ``neg``: ``(B, d)``.
    """
    return F.softplus((user * neg).sum(-1) - (user * pos).sum(-1)).mean()


def l2_of_parameters(module: nn.Module) -> torch.Tensor:
    """Sum of squared L2 norms of all trainable parameters (RLMRec's ``reg_params``)."""
    return sum(p.square().sum() for p in module.parameters() if p.requires_grad)
