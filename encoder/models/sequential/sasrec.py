"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
https://arxiv.org/abs/1808.09781 (reference code: https://github.com/kang205/SASRec)

Item vectors (scaled by sqrt(d)) plus learned positions go through ``layers`` blocks of causal
multi-head self-attention and a feed-forward network, each with a residual connection and layer
normalisation before it (the reference code normalises only the queries: ``layout="kang"``), then
a final layer normalisation. PyTorch's ``nn.TransformerEncoderLayer`` is the block. A position attends to
itself and to earlier non-padding positions only.

``layout="s3rec"`` builds the blocks as the S3-Rec and RecBole code does (the code behind the
published tables on the S3-Rec files): item vectors unscaled, a layer normalisation on the input,
post-norm blocks with GELU, no final normalisation.

``layout="kang"`` is the reference code's block (also RecTools', whose SASRec is eSASRec's
baseline): the queries are normalised and the keys and values are not, and each residual adds the
*normalised* input (``q + attention(q, x, x)``, then ``f + ffn(f)`` with ``f`` normalised), with
padding zeroed before every block.

``attend_padding=True`` leaves padding positions unmasked as keys, as RecTools' SASRec (its
default ``use_key_padding_mask=False``) and the common PyTorch port do: a zeroed padding position is
a fixed key and value (the projections' biases), which every position can attend to instead of
its history. The reference code masks them (the default here). ``scale_items=False`` leaves the
item vectors unscaled in the ``sasrec`` and ``kang`` layouts, as RecTools' SASRec does (the
reference code multiplies them by sqrt(d); the ``s3rec`` layout never scales).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from semrec.common.hparams import DropoutRate, NonNegativeInt, PositiveFloat, PositiveInt, choice
from semrec.encoder.models.sequential.base import INITS, LOSSES, SequentialRecommender
from semrec.encoder.models.sequential.encoders import LENGTH_GROUPS, SequenceEncoder, attention_mask, encode_by_length, \
    register_encoder
from semrec.encoder.registry import register


LAYOUTS = ("sasrec", "s3rec", "kang")


class KangBlock(nn.Module):
    """The reference code's block (``layout="kang"``). Written out because
    ``nn.TransformerEncoderLayer`` normalises keys and values together with the queries and adds
    its residuals before normalisation; the attention itself is ``nn.MultiheadAttention``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(x)
        x = q + self.attn(q, x, x, attn_mask=mask, need_weights=False)[0]
        f = self.ffn_norm(x)
        return f + self.ffn(f)


@register_encoder("sasrec")
class SASRecEncoder(SequenceEncoder):
    """SASRec's causal Transformer. Shapes: ``(B, L, dim)`` -> ``(B, L, dim)`` (zeros at padding)."""

    def __init__(self, dim: int, max_len: int, layers: int = 2, heads: int = 2, ffn_dim: int = 256,
                 dropout: float = 0.2, layout: str = "sasrec", attend_padding: bool = False,
                 scale_items: bool = True, length_groups: int = LENGTH_GROUPS):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.dim, self.max_len, self.heads, self.layout = dim, max_len, heads, layout
        self.attend_padding, self.length_groups = attend_padding, length_groups
        self.item_scale = dim ** 0.5 if scale_items else 1.0
        self.pos_emb = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        if layout == "kang":
            self.blocks = nn.ModuleList(KangBlock(dim, heads, ffn_dim, dropout) for _ in range(layers))
        else:
            pre = layout == "sasrec"
            block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ffn_dim, dropout=dropout,
                                               activation="relu" if pre else "gelu", batch_first=True, norm_first=pre)
            self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)  # after the blocks (sasrec, kang) or on the input (s3rec)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.attend_padding:  # then the amount of padding is part of the input: one call
            return self._encode(x, valid)
        return encode_by_length(self._encode, x, valid, self.length_groups)

    def _encode(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        pos = self.pos_emb.weight[self.max_len - length:]  # the newest item: the last position
        keys = torch.ones_like(valid) if self.attend_padding else valid
        mask = attention_mask(keys, self.heads)
        zero = valid[..., None]
        if self.layout == "s3rec":
            x = self.dropout(self.norm(x + pos)) * zero
            return self.blocks(x, mask=mask) * zero
        x = self.dropout(x * self.item_scale + pos) * zero
        if self.layout == "sasrec":
            return self.norm(self.blocks(x, mask=mask)) * zero
        for block in self.blocks:
            x = block(x * zero, mask)
        return self.norm(x) * zero  # the norm is per position: padding rows are zeroed after it


@register("sasrec")
class SASRec(SequentialRecommender):
    """SASRec.

    Args:
        num_items: item vocabulary (from the data).
        dim: embedding width ``d``.
        max_len: history length ``L``.
        layers: self-attention blocks.
        heads: attention heads (``dim`` must be divisible by it).
        ffn_dim: hidden width of the feed-forward network (the paper: ``d``).
        dropout: dropout rate of embeddings, attention and feed-forward outputs.
        layout: ``sasrec`` (pre-norm), ``kang`` (the reference code's and RecTools' block) or
            ``s3rec`` (post-norm, S3-Rec's and RecBole's; module docstring).
        attend_padding: let positions attend to padding (RecTools' SASRec; module docstring).
        scale_items: multiply item vectors by sqrt(dim) before adding positions (the reference code;
            RecTools does not).
        length_groups: a batch is encoded in up to this many groups of rows of similar length, each
            cut to its own longest history (:func:`~semrec.encoder.models.sequential.base.encode_by_length`):
            the same states with less padding to compute; per-sequence negatives are scored in the
            same groups; ``1``: one call over the whole batch.
        loss: ``ce`` (full softmax), ``sampled_softmax`` or ``bce`` (the paper, 1 negative).
        negatives: sampled negatives per position for the sampled losses.
        init, init_std: see :class:`SequentialRecommender`.
        **table: the item table's settings (:class:`~.item_table.ItemTable`: ``item_text``, ``item_graph``, ...).

    Shapes: ``encode``: ``(B, L)`` -> ``(B, L, d)``.
    """

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50, layers: PositiveInt = 2,
                 heads: PositiveInt = 2, ffn_dim: PositiveInt = 256, dropout: DropoutRate = 0.5,
                 layout: choice(*LAYOUTS) = "sasrec", attend_padding: bool = False, scale_items: bool = True,
                 length_groups: PositiveInt = LENGTH_GROUPS, loss: choice(*LOSSES) = "ce",
                 negatives: NonNegativeInt = 0, init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02,
                 **table: Any):
        super().__init__(num_items, dim=dim, max_len=max_len, dropout=dropout, loss=loss, negatives=negatives,
                         init=init, init_std=init_std, **table)
        self.encoder = SASRecEncoder(dim, max_len, layers=layers, heads=heads, ffn_dim=ffn_dim, dropout=dropout,
                                     layout=layout, attend_padding=attend_padding, scale_items=scale_items,
                                     length_groups=length_groups)
        self.init_weights()
