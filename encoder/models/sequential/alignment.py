"""What a sequential model gives RLMRec's alignment (``<name>_plus``, ``<name>_gene``).

The alignment modules (:mod:`semrec.encoder.align`) work with any backbone that says what its
rows are and what to align; for a sequence model the rows are its items, a user is the state at
the newest position of their sequence, and an item's output is the mean state of the positions
that read it in the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from semrec.encoder.batches import SeqBatch
from semrec.encoder.models.base import AlignTarget


@dataclass
class SeqOutput:
    """What one training pass computed (:meth:`SequentialRecommender.forward_train`).

    Attributes:
        inputs: ``(B, L)`` the batch's input ids; ``states``: ``(B, L, d)`` their states.
        outputs: ``(num_items, dim)`` the item rows that score the states, where they were
            computed this step (``None``: read from the ID rows).
        table: ``(num_items, dim)`` the item rows the inputs were read from, where the
            alignment gave them (it may have masked some).
    """

    inputs: torch.Tensor
    states: torch.Tensor
    outputs: torch.Tensor | None = None
    table: torch.Tensor | None = None


class SequenceAlignment:
    """The alignment hooks of :class:`~semrec.encoder.models.sequential.base.SequentialRecommender`."""

    #: the rows of :meth:`input_embeddings`: items
    node_kinds: tuple[str, ...] = ("item",)

    @property
    def out_dim(self) -> int:
        return self.dim

    def input_embeddings(self) -> torch.Tensor:
        """The item rows, ``(num_items, dim)``."""
        return self.item_table()

    def forward_train(self, x0: torch.Tensor | None = None, batch: SeqBatch | None = None) -> SeqOutput:
        """The batch's states, its inputs read from the item rows ``x0`` where given (an alignment's,
        some masked), the outputs from the item table either way."""
        vectors = self.item_vectors() if self.items.computed or x0 is not None else None
        rows = vectors if x0 is None else torch.cat([x0, vectors[self.num_items:]])
        states = self.encode(batch.inputs, rows)
        return SeqOutput(batch.inputs, states, None if vectors is None else vectors[: self.num_items], x0)

    def mask_candidates(self, batch: SeqBatch) -> torch.Tensor:
        """The items a generative alignment may mask this step: those the batch reads (an item
        absent from every sequence of the batch has no state to reconstruct from)."""
        seen = batch.inputs[batch.inputs < self.num_items]
        return torch.unique(seen)

    def node_outputs(self, out: SeqOutput, ids: torch.Tensor) -> torch.Tensor:
        """An item's output: the mean state of the positions that read it in this batch."""
        flat_items, flat = out.inputs.reshape(-1), out.states.reshape(-1, out.states.shape[-1])
        rows = self.items.num_rows
        sums = torch.zeros(rows, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(0, flat_items, flat)
        counts = torch.bincount(flat_items, minlength=rows).clamp(min=1).to(flat.dtype)
        return sums[ids] / counts[ids, None]

    def align_targets(self, out: SeqOutput, batch: SeqBatch) -> list[AlignTarget]:
        """The batch's users (the state at each sequence's newest position), the items it
        predicts and its sampled negatives (RLMRec aligns users, positives and negatives)."""
        scored = batch.targets != self.pad
        targets = [AlignTarget("user", out.states[:, -1], batch.users, per_row=True),
                   AlignTarget("item", out.table, batch.targets[scored])]
        if batch.negatives.shape[-1]:
            targets.append(AlignTarget("item", out.table, batch.negatives_at(scored).reshape(-1)))
        return targets
