"""Pieces shared by the contrastive graph backbones (SGL, SimGCL)."""
from __future__ import annotations

import torch

from semrec.encoder.graph import gather_rows
from semrec.encoder.losses import info_nce


def view_contrast(view1: torch.Tensor, view2: torch.Tensor, *node_groups: torch.Tensor, temperature: float,
                  negatives: str = "all") -> torch.Tensor:
    """Sum over the nodes of every group (duplicates count) of InfoNCE between two views of each node.

    Args:
        view1, view2: ``(N, d)`` representations of the same N nodes under two augmentations.
        node_groups: ``(B,)`` node ids, possibly repeated, e.g. a batch's positive and its
            negative items: the result is the sum of the groups' losses.
        negatives: ``"all"`` contrasts against every node of ``view2`` (RLMRec, SGL);
            ``"batch"`` only against the distinct nodes of the same group (SimGCL's reference code).

    Each distinct node is computed once and weighted by its count, which gives exactly the
    per-occurrence sum at a fraction of the cost. With ``"all"`` every group has the same
    candidates, so the groups are merged first and a node in two groups is computed once.
    """
    if negatives == "all":
        node_groups = (torch.cat(node_groups),)
    total = view1.new_zeros(())
    for nodes in node_groups:
        uniq, counts = torch.unique(nodes, return_counts=True)
        a, p = gather_rows(view1, uniq), gather_rows(view2, uniq)
        candidates = view2 if negatives == "all" else p
        total = total + info_nce(a, p, candidates, temperature, weights=counts)
    return total


NEGATIVES = ("all", "batch")
