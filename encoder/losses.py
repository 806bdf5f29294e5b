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


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, candidates: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE of each anchor against its positive, over a set of candidates (cosine similarity).

    ``loss_b = -cos(a_b, p_b)/τ + log Σ_c exp(cos(a_b, c)/τ)``; the candidates usually include
    the positives (RLMRec's ``cal_infonce_loss``, computed with a stable log-sum-exp).

    Shapes: ``anchor``, ``positive``: ``(B, d)``; ``candidates``: ``(C, d)``. Returns ``(B,)``.
    """
    a = F.normalize(anchor, dim=-1, eps=1e-8)
    p = F.normalize(positive, dim=-1, eps=1e-8)
    c = F.normalize(candidates, dim=-1, eps=1e-8)
    return torch.logsumexp(a @ c.t() / temperature, dim=-1) - (a * p).sum(-1) / temperature
