"""The batch types every part agrees on: what samplers make, models train on and scorers read.

Models, samplers and the evaluator all import these from here, so no model imports a sampler or
the evaluator. Sequence batches are ``(B, L)`` item-id tensors, left-padded: the last column holds
each sequence's newest item; the padding id is ``num_items``, the cloze mask id ``num_items + 1``.

Sampled negatives come in one of two layouts (:data:`NEGATIVES_PER`), which the batch names
(``SeqBatch.negatives_per``), so a model reads the layout instead of guessing it from a shape:

* ``position``: ``k`` items for every predicting position, ``(B, L, k)`` (the papers' way);
* ``sequence``: ``k`` items per sequence shared by its positions, ``(B, 1, k)`` (one matrix
  product per sequence in the loss; :mod:`semrec.encoder.sampling` says when it pays).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

#: how sampled negatives are laid out in a :class:`SeqBatch`
NEGATIVES_PER = ("position", "sequence")


def _to(batch, device: torch.device):
    """The batch with every tensor moved to ``device`` (the ``to`` of every batch type)."""
    return type(batch)(*(t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch))


def shard(batch, rank: int, world: int):
    """Process ``rank``'s contiguous share of a batch's rows (``torch.tensor_split`` of every tensor
    field along its first dimension, the batch dimension of every batch type)."""
    return type(batch)(*(t.tensor_split(world)[rank] if isinstance(t, torch.Tensor) else t for t in batch))


class PairBatch(NamedTuple):
    """A batch of BPR triples. Shapes: each ``(B,)`` int64."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor

    to = _to


class SeqBatch(NamedTuple):
    """Training sequences and the item each position must predict.

    Attributes:
        users: ``(B,)``.
        inputs: ``(B, L)`` items, left-padded with ``num_items`` (cloze: some replaced by the
            mask id ``num_items + 1``).
        targets: ``(B, L)`` the item each position predicts: the next item (next-item batches)
            or the masked item (cloze batches); ``num_items`` where there is nothing to predict.
        negatives: ``(B, L, k)`` sampled items per predicting position (``num_items`` elsewhere),
            or ``(B, 1, k)`` per sequence; ``k = 0`` for a full softmax.
        negatives_per: which of the two layouts ``negatives`` has (:data:`NEGATIVES_PER`).
        ratings: ``(B, L)`` the rating of each input (0 at padding), for a model that reads them.
    """

    users: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor
    negatives: torch.Tensor
    negatives_per: str = "position"
    ratings: torch.Tensor | None = None

    to = _to

    @property
    def per_sequence(self) -> bool:
        """Whether each sequence's negatives serve all its positions (over more than one position:
        with one, the two layouts are the same)."""
        return self.negatives_per == "sequence" and self.targets.shape[1] > 1

    def negatives_at(self, scored: torch.Tensor) -> torch.Tensor:
        """``(P, k)``: the negatives of the positions where ``scored`` ``(B, L)`` holds."""
        return self.negatives.expand(*scored.shape, -1)[scored]


class EvalBatch(NamedTuple):
    """What a scorer gets: ``users`` ``(B,)`` and, for sequence models, ``history`` ``(B, L)``
    (items before the split, newest last, left-padded with ``num_items``; else ``None``) and, for a
    model that reads them, the history's ``ratings`` ``(B, L)`` (0 at padding)."""

    users: torch.Tensor
    history: torch.Tensor | None = None
    ratings: torch.Tensor | None = None


#: a ranking function: a batch of users (and histories) -> ``(B, num_items)`` scores
Scorer = Callable[[EvalBatch], torch.Tensor]
