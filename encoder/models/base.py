"""The interface every recommender implements, graph or sequential.

The trainer and the evaluator only use these, so any model that has them fits:

* ``batch_kind``: the training batches it consumes (``pairwise``, ``next_item`` or ``cloze``;
  :mod:`semrec.encoder.sampling` builds them) and ``sampler_options()``, the sampler's settings
  it decides (e.g. ``max_len``);
* ``loss(batch) -> (loss, parts)``: the scalar to minimise and a dict of its named terms;
* ``history_len``: how many history items the evaluator hands it when ranking (0: none);
* ``scorer() -> Callable[[EvalBatch], scores]``: a ranking function built once per evaluation,
  mapping an :class:`~semrec.encoder.evaluator.EvalBatch` (users, and their histories) to
  ``(B, num_items)`` scores. Which items are excluded is the evaluator's business;
* ``start_epoch(epoch)``: called before each training epoch (a model's own schedule lives here);
* ``from_data(data, **hparams)``: builds it for a dataset; the constructor arguments named in
  ``data_args`` come from the data, the others are hyperparameters (``model.<name>``).

For the alignment modules (:mod:`semrec.encoder.align`), a backbone also splits its training
step (``input_embeddings() / forward_train(x0) / loss(batch, out)``) and says what to align
(``node_kinds``, ``node_outputs(out, ids)`` and ``align_targets(out, batch)`` returning
:class:`AlignTarget` s). This interface is defined here, once; the alignment modules import it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import nn


class AlignTarget(NamedTuple):
    """Collaborative representations of one step to align with one semantic table.

    Attributes:
        kind: ``"user"`` or ``"item"``: the semantic table ``ids`` index.
        reps: the kind's whole representation table (``(N, d)``; occurrence ``i`` is
            ``reps[ids[i]]``: graph backbones), or with ``per_row`` one row per occurrence
            (``(n, d)``: e.g. a sequence encoder's state of each sequence).
        ids: ``(n,)`` node ids, one per occurrence in the batch (repeats allowed).
        per_row: how to read ``reps`` (above).
    """

    kind: str
    reps: torch.Tensor
    ids: torch.Tensor
    per_row: bool = False


class Recommender(nn.Module):
    """Base of every built-in model: the defaults of the interface above."""

    batch_kind: str = "pairwise"
    history_len: int = 0
    #: constructor arguments that come from the dataset, not from the config
    data_args: tuple[str, ...] = ()

    @classmethod
    def from_data(cls, data, **hparams) -> "Recommender":
        raise NotImplementedError

    def sampler_options(self) -> dict[str, Any]:
        """Settings of this model's sampler (see :mod:`semrec.encoder.sampling`)."""
        return {}

    def start_epoch(self, epoch: int) -> None:
        """Hook called by the trainer before every training epoch; nothing by default."""

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def scorer(self) -> Callable[[Any], torch.Tensor]:
        raise NotImplementedError
