"""The interface every recommender implements, graph or sequential.

The trainer and the evaluator only use these, so any model that has them fits:

* ``batch_kind``: the training batches it consumes (``pairwise``, ``next_item`` or ``cloze``;
  :mod:`semrec.encoder.sampling` builds them) and ``sampler_options()``, the sampler's settings
  it decides (e.g. ``max_len``);
* ``loss(batch) -> (loss, parts)``: the scalar to minimise and a dict of its named terms;
* ``history_len``: how many history items the evaluator hands it when ranking (0: none);
* ``factors() -> (user_vectors, item_vectors)``: a function mapping an
  :class:`~semrec.encoder.batches.EvalBatch` (users, and their histories) to ``(B, d)`` user
  vectors, and the ``(I, d)`` item vectors; a score is their inner product. ``scorer()`` (defined
  here, once) builds the ranking function from them, once per evaluation; the exported vectors
  (``semrec-export``) are the same. Which items are excluded is the evaluator's business;
* ``start_epoch(epoch)``: called before each training epoch (a model's own schedule lives here);
* ``from_data(data, **hparams)``: builds it for a dataset; the constructor arguments named in
  ``data_args`` come from the data, the others are hyperparameters (``model.<name>``).

For the alignment modules (:mod:`semrec.encoder.align`), a backbone also provides
:class:`AlignableBackbone`: its training step split in two (``forward_train(x0, batch)`` returns
everything the step computed, ``loss(batch, out)`` reads it; nothing is kept on the side) and
what to align (``node_kinds``, ``node_outputs(out, ids)``, ``align_targets(out, batch)``
returning :class:`AlignTarget` s). This interface is defined here, once; the alignment modules
import it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

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


@runtime_checkable
class AlignableBackbone(Protocol):
    """What a backbone gives RLMRec's alignment (``<name>_plus``, ``<name>_gene``).

    Attributes:
        dim, out_dim: widths of the layer-0 rows and of the output representations.
        node_kinds: what the rows of :meth:`input_embeddings` are, in order (``("user", "item")``
            for a graph, ``("item",)`` for a sequence model).
        fresh_inputs: whether :meth:`input_embeddings` returns a new tensor at every call (a
            generative alignment then masks it in place; a parameter or a view of one is
            masked out of place).
    """

    dim: int
    out_dim: int
    node_kinds: tuple[str, ...]
    fresh_inputs: bool

    def input_embeddings(self) -> torch.Tensor:
        """The layer-0 rows, ``(N, dim)``."""

    def forward_train(self, x0: torch.Tensor | None, batch: Any) -> Any:
        """The training pass from the layer-0 rows ``x0`` (default: :meth:`input_embeddings`)
        for ``batch``: every tensor the step needs, returned, not stored."""

    def loss(self, batch: Any, out: Any = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The backbone's own loss of ``batch`` from ``out`` (default: a fresh :meth:`forward_train`)."""

    def mask_candidates(self, batch: Any) -> torch.Tensor | None:
        """The rows a generative alignment may mask this step (``None``: any)."""

    def node_outputs(self, out: Any, ids: torch.Tensor) -> torch.Tensor:
        """The output representations of rows ``ids`` of :meth:`input_embeddings`."""

    def align_targets(self, out: Any, batch: Any) -> list[AlignTarget]:
        """The step's representations to align, by kind."""


#: the members of :class:`AlignableBackbone` (the registry composes ``_plus`` / ``_gene`` for a
#: model class that has them all)
ALIGNABLE_MEMBERS = ("dim", "out_dim", "node_kinds", "fresh_inputs", "input_embeddings", "forward_train", "loss",
                     "mask_candidates", "node_outputs", "align_targets")


class Recommender(nn.Module):
    """Base of every built-in model: the defaults of the interface above."""

    batch_kind: str = "pairwise"
    history_len: int = 0
    #: whether the scorer reads the history's ratings (``EvalBatch.ratings``)
    history_ratings: bool = False
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

    #: see :class:`AlignableBackbone`
    fresh_inputs: bool = False

    def mask_candidates(self, batch) -> torch.Tensor | None:
        """See :class:`AlignableBackbone`: any row by default."""
        return None

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def factors(self) -> tuple[Callable[[Any], torch.Tensor], torch.Tensor]:
        """``(user_vectors, item_vectors)``: batch -> ``(B, d)``, and ``(I, d)`` (module docstring)."""
        raise NotImplementedError

    @torch.no_grad()
    def scorer(self) -> Callable[[Any], torch.Tensor]:
        """Every item's score for each user of a batch: the inner products of :meth:`factors`."""
        user_vectors, items = self.factors()
        table = items.t().contiguous()
        return lambda batch: user_vectors(batch) @ table
