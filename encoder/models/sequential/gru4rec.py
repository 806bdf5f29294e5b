"""GRU4Rec: session-based recommendation with recurrent neural networks.

Hidasi, Karatzoglou, Baltrunas & Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016. https://arxiv.org/abs/1511.06939
(reference code: https://github.com/hidasi/GRU4Rec)

Item embeddings go through a multi-layer GRU (``nn.GRU``); the hidden state after each item
scores the next one against the item embeddings. Padding is skipped, not fed: each history is
packed (``pack_padded_sequence``), so a state depends on the user's items alone. The paper's
session-parallel mini-batches and BPR-max loss are replaced by whole sequences and this
toolkit's next-item losses (``ce`` by default), as later re-implementations do.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from semrec.common.hparams import DropoutRate, NonNegativeInt, PositiveFloat, PositiveInt, choice
from semrec.encoder.models.sequential.base import INITS, LOSSES, SequentialRecommender
from semrec.encoder.models.sequential.encoders import SequenceEncoder, register_encoder
from semrec.encoder.registry import register


def _roll_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Row ``b`` of ``x`` (``(B, L, ...)``) rotated left by ``shift[b]`` positions."""
    length = x.shape[1]
    idx = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length
    if x.dim() == 3:
        idx = idx[..., None].expand(-1, -1, x.shape[2])
    return x.gather(1, idx)


@register_encoder("gru4rec")
class GRU4RecEncoder(SequenceEncoder):
    """A multi-layer GRU over the real items only (packed). Shapes: ``(B, L, dim)`` ->
    ``(B, L, dim)`` (zeros at padding)."""

    def __init__(self, dim: int, max_len: int, layers: int = 1, dropout: float = 0.2):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        n = valid.sum(1).clamp(min=1)
        x = self.dropout(x)
        # left-padded -> right-padded, so that packing drops the padding
        right = _roll_rows(x, length - n)
        packed = pack_padded_sequence(right, n.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        return _roll_rows(out, (n - length) % length)


@register("gru4rec")
class GRU4Rec(SequentialRecommender):
    """GRU4Rec.

    Args:
        num_items: item vocabulary (from the data).
        dim: embedding and hidden width.
        max_len: history length.
        layers: stacked GRU layers.
        dropout: dropout on the embeddings and between GRU layers.
        loss, negatives, init, init_std: see :class:`SequentialRecommender`.
        **table: the item table's settings (:class:`~.item_table.ItemTable`).

    Shapes: ``encode``: ``(B, L)`` -> ``(B, L, dim)`` (zeros at padding).
    """

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50, layers: PositiveInt = 1,
                 dropout: DropoutRate = 0.3, loss: choice(*LOSSES) = "ce", negatives: NonNegativeInt = 0,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02, **table: Any):
        super().__init__(num_items, dim=dim, max_len=max_len, dropout=dropout, loss=loss, negatives=negatives,
                         init=init, init_std=init_std, **table)
        self.encoder = GRU4RecEncoder(dim, max_len, layers=layers, dropout=dropout)
        self.init_weights()  # the GRU keeps its own initialisation either way
