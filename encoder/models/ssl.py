"""Pieces shared by the contrastive graph backbones (SGL, SimGCL)."""
from __future__ import annotations

import torch

from semrec.encoder.losses import info_nce


def view_contrast(view1: torch.Tensor, view2: torch.Tensor, nodes: torch.Tensor, temperature: float,
                  negatives: str = "all") -> torch.Tensor:
    """Sum over ``nodes`` (duplicates count) of InfoNCE between two views of each node.

    Args:
        view1, view2: ``(N, d)`` representations of the same N nodes under two augmentations.
        nodes: ``(B,)`` node ids of the batch, possibly repeated.
        negatives: ``"all"`` contrasts against every node of ``view2`` (RLMRec, SGL);
            ``"batch"`` only against the batch's distinct nodes (SimGCL's reference code).

    Each distinct node is computed once and weighted by its count, which gives exactly the
    per-occurrence sum at a fraction of the cost.
    """
    uniq, counts = torch.unique(nodes, return_counts=True)
    a, p = view1[uniq], view2[uniq]
    candidates = view2 if negatives == "all" else p
    return (info_nce(a, p, candidates, temperature) * counts).sum()


NEGATIVES = ("all", "batch")
