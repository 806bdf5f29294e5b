"""Training batches, one sampler per batch kind; the trainer only iterates them.

A model says what it trains on with ``batch_kind`` and, where the sampler has options,
``sampler_options()`` (e.g. ``{"max_len": 50, "negatives": 1}``):

* ``pairwise`` -> :class:`PairSampler`: BPR triples (user, training item, unseen item) over every
  training interaction (graph models).
* ``next_item`` -> :class:`NextItemSampler`: each user's training sequence, predicting every next
  item at once (SASRec, gSASRec, GRU4Rec), with ``k`` sampled negatives per position or none
  (full softmax).
* ``cloze`` -> :class:`ClozeSampler`: training sequences with random items replaced by a mask
  token, to be recovered (BERT4Rec).

Every sampler draws from one ``torch.Generator`` (saved in checkpoints, so a resumed run sees
the same batches).

Sequence batches are ``(B, L)`` item-id tensors, left-padded: the last column holds each
sequence's newest item. The padding id is ``num_items`` (one past the last item); the cloze
mask id is ``num_items + 1``. Sampled negatives are drawn in one of two ways (``negatives_per``):

* ``position`` (the papers' way): ``k`` items for every predicting position, none of them the
  user's training items: ``(B, L, k)``. The loss gathers ``B·L·k`` item vectors, which on a CPU
  is most of a gSASRec step (256 negatives).
* ``sequence``: ``k`` items per sequence, none of them the user's training items, shared by its
  positions: ``(B, 1, k)``; the loss is one matrix product per sequence.

One set of negatives for a whole batch is not offered: every position then pushes down the same
items, and validation fell as the loss fell (docs/notes/2026-11-benchmark-log.md, "Negatives per position or per
sequence").
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch

from semrec.encoder.batches import NEGATIVES_PER, PairBatch, SeqBatch
from semrec.encoder.dataset import InteractionData


class PairSampler:
    """Every training interaction once per epoch, as (user, item, unseen item), shuffled.

    Args:
        data: the dataset.
        batch_size: triples per batch.
        generator: drives the negatives and the order (negatives first, then the order).
    """

    def __init__(self, data: InteractionData, batch_size: int, generator: torch.Generator):
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self.users, self.items = data.train_pairs()

    def __len__(self) -> int:
        return -(-self.users.numel() // self.batch_size)

    def __iter__(self) -> Iterator[PairBatch]:
        negs = self.data.sample_negatives(self.users, generator=self.generator)
        order = torch.randperm(self.users.numel(), generator=self.generator)
        for lo in range(0, order.numel(), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            yield PairBatch(self.users[idx], self.items[idx], negs[idx])


#: the default ``train.length_buckets``: plain random batches, as RecBole and RecTools draw them.
#: Batches sorted by length pad less but cost accuracy (docs/notes/2026-11-benchmark-log.md, "Batches sorted by
#: length"); the Transformer encoders group a plain batch's rows by length instead (``model.length_groups``).
LENGTH_BUCKETS = 1


def _sample_negatives(data: InteractionData, users: torch.Tensor, mask: torch.Tensor, k: int,
                      generator: torch.Generator, negatives_per: str = "position") -> torch.Tensor:
    """``(B, L, k)``: ``k`` items per position where ``mask`` holds, drawn uniformly among the
    items user ``users[b]`` has no training interaction with; padding id elsewhere.
    ``negatives_per="sequence"``: ``(B, 1, k)`` such items per sequence."""
    if negatives_per == "sequence" and k:
        return data.sample_negatives(users.repeat_interleave(k), generator).view(-1, 1, k)
    b, length = mask.shape
    out = torch.full((b, length, k), data.num_items, dtype=torch.long)
    if k and mask.any():
        owners = users[:, None].expand(b, length)[mask]
        out[mask] = data.sample_negatives(owners.repeat_interleave(k), generator).view(-1, k)
    return out


def _check_negatives_per(negatives_per: str) -> str:
    if negatives_per not in NEGATIVES_PER:
        raise ValueError(f"negatives are drawn per {' or '.join(NEGATIVES_PER)}, got {negatives_per!r}")
    return negatives_per


class _SequenceSampler:
    """Users with at least two training items, their last ``max_len + span`` training items.

    Batches are cut to their longest sequence: with items aligned to the right, dropping
    all-padding columns on the left changes no model output (unless it attends to padding:
    ``model.attend_padding``), and most histories are far shorter than ``max_len``. With
    ``buckets > 1`` each epoch's shuffled users are taken ``buckets`` batches at a time, sorted by
    length within that chunk, cut into batches, and the batches are shuffled: less padding, but a
    batch then holds users of one length, its loss (a mean over positions) weighs users differently
    from a random batch's, and on Beauty that cost accuracy (:data:`LENGTH_BUCKETS`).
    ``buckets=1``: plain random batches."""

    def __init__(self, data: InteractionData, batch_size: int, generator: torch.Generator, max_len: int,
                 span: int, buckets: int, ratings: bool = False):
        seq = data.require_sequences()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self.max_len, self.buckets = max_len, max(1, buckets)
        ends = seq.history_end("train")
        users = np.flatnonzero(ends - seq.ptr[:-1] >= 2)
        window = seq.histories(users, "train", max_len + span, pad=data.num_items)
        self.users = torch.from_numpy(users)
        self.window = torch.from_numpy(window)  # (U', max_len + span)
        self.lengths = (self.window != data.num_items).sum(1)
        self.rating_window = None  # the same places' ratings, for a model that reads them
        if ratings:
            if seq.ratings is None:
                raise ValueError("this model reads ratings, and the dataset's sequences carry none")
            self.rating_window = torch.from_numpy(seq.rating_histories(users, "train", max_len + span))

    def __len__(self) -> int:
        return -(-self.users.numel() // self.batch_size)

    def _batches(self) -> list[torch.Tensor]:
        order = torch.randperm(self.users.numel(), generator=self.generator)
        chunk = self.batch_size * self.buckets
        batches = []
        for lo in range(0, order.numel(), chunk):
            part = order[lo:lo + chunk]
            if self.buckets > 1:
                part = part[torch.argsort(self.lengths[part], stable=True)]
            batches += list(part.split(self.batch_size))
        if self.buckets > 1:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        return batches

    def _rows(self, idx: torch.Tensor, keep: int) -> torch.Tensor:
        """The windows of users ``idx``, cut to the newest ``keep`` columns (at least)."""
        width = max(int(self.lengths[idx].max()), keep)
        return self.window[idx, -width:]


class NextItemSampler(_SequenceSampler):
    """One example per user: inputs ``s[:-1]``, targets ``s[1:]`` of the training sequence ``s``
    (its last ``max_len + 1`` items), so every position predicts its next item (SASRec).

    Args:
        max_len: sequence length ``L``.
        negatives: sampled negatives per position (``1`` for SASRec's BCE, ``k`` for gBCE or a
            sampled softmax, ``0`` for a full softmax).
        negatives_per: ``position`` or ``sequence`` (module docstring).
        ratings: also hand the inputs' ratings (the sequences must carry them).
    """

    def __init__(self, data: InteractionData, batch_size: int, generator: torch.Generator, max_len: int = 50,
                 negatives: int = 0, buckets: int = LENGTH_BUCKETS,
                 negatives_per: str = "position", ratings: bool = False):
        super().__init__(data, batch_size, generator, max_len, span=1, buckets=buckets, ratings=ratings)
        self.negatives, self.negatives_per = negatives, _check_negatives_per(negatives_per)

    def __iter__(self) -> Iterator[SeqBatch]:
        pad = self.data.num_items
        for idx in self._batches():
            w = self._rows(idx, 2)
            inputs, targets = w[:, :-1], w[:, 1:].clone()
            targets[inputs == pad] = pad  # a padded position predicts nothing (not even the oldest item)
            users = self.users[idx]
            ratings = None if self.rating_window is None else self.rating_window[idx, -w.shape[1]:-1]
            yield SeqBatch(users, inputs, targets,
                           _sample_negatives(self.data, users, targets != pad, self.negatives, self.generator,
                                             self.negatives_per), self.negatives_per, ratings)


class ClozeSampler(_SequenceSampler):
    """One example per user: the last ``max_len`` training items, each replaced by the mask id
    with probability ``mask_prob`` (at least one per sequence), to be recovered (BERT4Rec).

    Args:
        max_len: sequence length ``L``.
        mask_prob: probability that an item is masked.
        negatives: sampled negatives per masked position (0: full softmax over all items).
        negatives_per: ``position`` or ``sequence`` (module docstring).
    """

    def __init__(self, data: InteractionData, batch_size: int, generator: torch.Generator, max_len: int = 50,
                 mask_prob: float = 0.2, negatives: int = 0,
                 buckets: int = LENGTH_BUCKETS, negatives_per: str = "position"):
        super().__init__(data, batch_size, generator, max_len, span=0, buckets=buckets)
        if not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"mask_prob must lie in (0, 1], got {mask_prob}")
        self.mask_prob, self.negatives = mask_prob, negatives
        self.negatives_per = _check_negatives_per(negatives_per)

    def __iter__(self) -> Iterator[SeqBatch]:
        pad, mask_id = self.data.num_items, self.data.num_items + 1
        for idx in self._batches():
            items = self._rows(idx, 1)
            real = items != pad
            masked = (torch.rand(items.shape, generator=self.generator) < self.mask_prob) & real
            none = ~masked.any(1)
            masked[none, -1] = True  # every sequence recovers at least its newest item
            inputs = torch.where(masked, torch.full_like(items, mask_id), items)
            labels = torch.where(masked, items, torch.full_like(items, pad))
            users = self.users[idx]
            yield SeqBatch(users, inputs, labels,
                           _sample_negatives(self.data, users, masked, self.negatives, self.generator,
                                             self.negatives_per), self.negatives_per)


SAMPLERS: dict[str, Callable[..., Any]] = {"pairwise": PairSampler, "next_item": NextItemSampler,
                                           "cloze": ClozeSampler}


def make_sampler(model: Any, data: InteractionData, batch_size: int, generator: torch.Generator,
                 negatives_per: str = "position",
                 length_buckets: int = LENGTH_BUCKETS):
    """The sampler for ``model.batch_kind`` with ``model.sampler_options()``;
    ``negatives_per``: ``position`` or ``sequence``; ``length_buckets``: batches sorted by
    length together (1: plain random batches). Both for sequence samplers only (module docstring)."""
    kind = model.batch_kind
    if kind not in SAMPLERS:
        raise ValueError(f"no sampler for batch kind {kind!r}; valid kinds: {', '.join(SAMPLERS)}")
    options = model.sampler_options()
    if negatives_per != "position":
        if kind == "pairwise":
            raise ValueError(f"train.negatives_per={negatives_per} applies to sequence models; "
                             f"{type(model).__name__} trains on BPR triples")
        options["negatives_per"] = negatives_per
    if length_buckets != LENGTH_BUCKETS:
        if kind == "pairwise":
            raise ValueError(f"train.length_buckets={length_buckets} applies to sequence models; "
                             f"{type(model).__name__} trains on BPR triples")
        options["buckets"] = length_buckets
    return SAMPLERS[kind](data, batch_size, generator, **options)
