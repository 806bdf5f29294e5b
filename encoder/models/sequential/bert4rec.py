"""BERT4Rec: sequential recommendation with a bidirectional Transformer, trained as a cloze task.

Sun, Liu, Wu, Pei, Lin, Ou & Jiang, "BERT4Rec: Sequential Recommendation with Bidirectional
Encoder Representations from Transformer", CIKM 2019. https://arxiv.org/abs/1904.06690
(reference code: https://github.com/FeiSun/BERT4Rec)

Training masks random items of each sequence (``mask_prob``) and recovers them from both
sides; ranking appends the mask token after the history and reads its state. The encoder is
``nn.TransformerEncoderLayer`` (post-norm, GELU, as BERT), every position sees every
non-padding position; an output layer (dense, GELU, layer norm) maps a state into the item
embedding space. The loss over the masked positions is the toolkit's next-item loss
(``ce``: softmax over all items, as the paper).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from semrec.common.hparams import DropoutRate, NonNegativeInt, PositiveFloat, PositiveInt, Probability, choice
from semrec.encoder.models.sequential.base import INITS, LOSSES, SequentialRecommender
from semrec.encoder.models.sequential.encoders import LENGTH_GROUPS, SequenceEncoder, encode_by_length, register_encoder
from semrec.encoder.registry import register


@register_encoder("bert4rec")
class BERT4RecEncoder(SequenceEncoder):
    """BERT4Rec's bidirectional Transformer (post-norm, GELU) and output layer (dense, GELU,
    layer norm). Shapes: ``(B, L, dim)`` -> ``(B, L, dim)`` (zeros at padding)."""

    bidirectional = True

    def __init__(self, dim: int, max_len: int, layers: int = 2, heads: int = 2, ffn_dim: int = 256,
                 dropout: float = 0.2, length_groups: int = LENGTH_GROUPS):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        if max_len < 2:
            raise ValueError("max_len must be >= 2 (one history item and the mask slot)")
        self.max_len, self.length_groups = max_len, length_groups
        self.pos_emb = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ffn_dim, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=False)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return encode_by_length(self._encode, x, valid, self.length_groups)

    def _encode(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        x = self.dropout(self.input_norm(x + self.pos_emb.weight[self.max_len - length:]))
        x = self.blocks(x, src_key_padding_mask=~valid)
        return self.head(x) * valid[..., None]  # zeros at padding, as the other encoders


@register("bert4rec")
class BERT4Rec(SequentialRecommender):
    """BERT4Rec.

    Args:
        num_items: item vocabulary (from the data); id ``num_items + 1`` is the mask token.
        dim: embedding width.
        max_len: sequence length, the mask slot included when ranking.
        layers, heads, ffn_dim: Transformer size (``dim`` divisible by ``heads``).
        dropout: dropout rate.
        mask_prob: share of training items masked (the paper: 0.2 on Beauty).
        length_groups: see :class:`~semrec.encoder.models.sequential.sasrec.SASRec`.
        loss, negatives, init, init_std: see :class:`SequentialRecommender`.
        **table: the item table's settings (:class:`~.item_table.ItemTable`).

    Shapes: ``encode``: ``(B, L)`` -> ``(B, L, d)``.
    """

    extra_tokens = 1

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50, layers: PositiveInt = 2,
                 heads: PositiveInt = 2, ffn_dim: PositiveInt = 256, dropout: DropoutRate = 0.2,
                 mask_prob: Probability = 0.2, length_groups: PositiveInt = LENGTH_GROUPS,
                 loss: choice(*LOSSES) = "ce", negatives: NonNegativeInt = 0,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02, **table: Any):
        super().__init__(num_items, dim=dim, max_len=max_len, dropout=dropout, loss=loss, negatives=negatives,
                         init=init, init_std=init_std, **table)
        self.mask_prob = mask_prob
        self.encoder = BERT4RecEncoder(dim, max_len, layers=layers, heads=heads, ffn_dim=ffn_dim, dropout=dropout,
                                       length_groups=length_groups)
        self.init_weights()
        if init == "torch":  # positions as the items: neither drowns the other
            nn.init.normal_(self.encoder.pos_emb.weight, std=dim ** -0.5)

    def sampler_options(self) -> dict:
        return {**super().sampler_options(), "mask_prob": self.mask_prob}
