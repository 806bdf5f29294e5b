"""Sequence encoders: a batch of item vectors in, one state per position out.

A :class:`SequenceEncoder` maps the ``(B, L, d)`` item vectors of a left-padded batch (the newest
item last) to ``(B, L, d)`` states; padding never influences a real position. One encoder per
paper registers here by name (:func:`register_encoder`: ``sasrec``, ``bert4rec``, ``gru4rec``), so
that models compose them (LLM-ESR runs any of them on each of its views).

Also here, what the Transformer encoders share: attention masks and the encoding of a batch's
rows in groups of similar length (:func:`encode_by_length`).
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn


class SequenceEncoder(nn.Module):
    """Contextualises a batch of item vectors: ``forward(x, valid)`` maps ``(B, L, d)`` vectors
    and the ``(B, L)`` mask of real (non-padding) positions to ``(B, L, d)`` states; padding
    never influences a real position.

    ``bidirectional``: whether a position sees later ones (then it trains on cloze batches and
    ranks from a mask slot appended to the history, as BERT4Rec); otherwise position ``i`` sees
    positions ``<= i`` only and predicts the next item.
    """

    bidirectional = False


#: a batch's rows are encoded in at most this many groups of similar history length
LENGTH_GROUPS = 8
#: ... of at least this many rows each
GROUP_ROWS = 32


def length_plan(valid: torch.Tensor, groups: int = LENGTH_GROUPS,
                min_rows: int = GROUP_ROWS) -> list[tuple[torch.Tensor, int]] | None:
    """How to cut a left-padded batch into groups of rows of similar length: ``(rows, width)``
    pairs, each group's rows and the number of last columns that hold all their ``valid``
    positions; ``None`` where one pass over the whole batch is as good (fewer than two groups of
    ``min_rows``, or groups that would still cover over 80% of the batch's area).

    A row's length is its span from the first ``valid`` position to the end (for a left-padded
    history, its number of items; for a cloze batch's masked positions, from the first mask on).
    Shared by :func:`encode_by_length` and the per-sequence negatives' scores
    (:meth:`SequentialRecommender.next_item_loss`)."""
    rows, width = valid.shape
    parts = min(groups, rows // min_rows)
    if parts < 2:
        return None
    lengths = torch.where(valid.any(1), width - valid.int().argmax(1), 0)
    order = torch.argsort(lengths, stable=True)
    chunks = order.tensor_split(parts)
    last = torch.tensor([c.numel() for c in chunks]).cumsum(0) - 1  # each group's longest row (sorted)
    widths = lengths[order][last.to(order.device)].clamp(min=1).tolist()  # one device sync, not one a group
    if sum(c.numel() * w for c, w in zip(chunks, widths)) > 0.8 * rows * width:
        return None
    return list(zip(chunks, widths))


def encode_by_length(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                     valid: torch.Tensor, groups: int = LENGTH_GROUPS, min_rows: int = GROUP_ROWS) -> torch.Tensor:
    """``forward(x, valid)`` of a left-padded batch, run on groups of rows of similar length
    (:func:`length_plan`), each cut to its own longest history; the states go back in the batch's
    order, zeros at the cut padding.

    For an encoder whose real positions do not depend on how much padding precedes them (right-
    anchored positions, padding masked as keys), the states of real positions are those of one
    call on the whole batch: the batch's composition, and so its loss, stay those of a random
    batch, while the encoder works on far fewer padded positions (a random batch of short
    histories is mostly padding; sorting batches by length instead changes the loss).
    Written by hand: PyTorch's nested tensors, which drop padding, do not train through
    ``nn.TransformerEncoder`` with an attention mask, and FlexAttention's document masks need
    ``torch.compile``. Rows of near-equal length (the evaluator's, sorted) take one call.
    """
    plan = length_plan(valid, groups, min_rows)
    if plan is None:
        return forward(x, valid)
    rows, width = valid.shape
    out = None
    for rows_g, w in plan:
        states = forward(x[rows_g, width - w:], valid[rows_g, width - w:])
        if out is None:
            out = states.new_zeros(rows, width, states.shape[-1])
        out[rows_g, width - w:] = states
    return out


def attention_mask(valid: torch.Tensor, heads: int, causal: bool = True) -> torch.Tensor:
    """``(B·heads, L, L)`` boolean attention mask, True where attention is *not* allowed.

    Position ``i`` may attend to real items (``valid``), only to ``j <= i`` when ``causal``, and
    always to itself (so a padding row never has every key masked, which would give NaN)."""
    length = valid.shape[1]
    ar = torch.arange(length, device=valid.device)
    allowed = valid[:, None, :] | (ar[None, :] == ar[:, None])[None]
    if causal:
        allowed = allowed & (ar[None, :] <= ar[:, None])[None]
    return (~allowed).repeat_interleave(heads, dim=0)


#: sequence encoders by name (filled by the paper modules with :func:`register_encoder`)
ENCODERS: dict[str, type] = {}


def register_encoder(name: str):
    def wrap(cls: type) -> type:
        ENCODERS[name] = cls
        return cls

    return wrap


def encoder_options(name: str) -> dict[str, inspect.Parameter]:
    """The options encoder ``name`` takes (its constructor's arguments beside ``dim`` and ``max_len``)."""
    cls = encoder_class(name)
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in ("self", "dim", "max_len") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def encoder_class(name: str) -> type:
    """The encoder registered as ``name``; ValueError listing the valid names otherwise."""
    from semrec.encoder.models.sequential import bert4rec, gru4rec, sasrec  # noqa: F401  (they register)

    if name not in ENCODERS:
        raise ValueError(f"unknown sequence encoder {name!r}; valid: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


def build_encoder(name: str, dim: int, max_len: int, **options) -> SequenceEncoder:
    """The encoder ``name`` with ``options``; an option it does not take is a ValueError naming
    the ones it does (a GRU has no ``heads``)."""
    valid = encoder_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"sequence encoder {name!r} takes no option {', '.join(map(repr, unknown))}; its options: "
                         f"{', '.join(valid)}")
    return encoder_class(name)(dim=dim, max_len=max_len, **options)
