"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
https://arxiv.org/abs/1808.09781 (reference code: https://github.com/kang205/SASRec)

Item embeddings (scaled by sqrt(d)) plus learned positions go through ``layers`` blocks of
causal multi-head self-attention and a feed-forward network, each with a residual connection
and layer normalisation before it (the reference code normalises the queries first), then a
final layer normalisation. PyTorch's ``nn.TransformerEncoderLayer`` is the block. A position
attends to itself and to earlier non-padding positions only.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from semrec.encoder.hparams import NonNegativeInt, PositiveFloat, PositiveInt, Probability, choice
from semrec.encoder.models.sequential.base import INITS, ITEM_TEXT, LOSSES, SequentialRecommender
from semrec.encoder.registry import register


def causal_mask(valid: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B·heads, L, L)`` boolean attention mask, True where attention is *not* allowed.

    Position ``i`` may attend to ``j <= i`` when ``j`` is a real item, and always to itself
    (so a padding row never has every key masked, which would give NaN)."""
    length = valid.shape[1]
    ar = torch.arange(length, device=valid.device)
    allowed = (ar[None, :] <= ar[:, None])[None] & (valid[:, None, :] | (ar[None, :] == ar[:, None])[None])
    return (~allowed).repeat_interleave(heads, dim=0)


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
        loss: ``ce`` (full softmax), ``sampled_softmax`` or ``bce`` (the paper, 1 negative).
        negatives: sampled negatives per position for the sampled losses.
        init, init_std, item_text, text_shuffle, text_emb: see :class:`SequentialRecommender`.

    Shapes: ``encode``: ``(B, L)`` -> ``(B, L, d)``.
    """

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50, layers: PositiveInt = 2,
                 heads: PositiveInt = 2, ffn_dim: PositiveInt = 64, dropout: Probability = 0.2,
                 loss: choice(*LOSSES) = "ce", negatives: NonNegativeInt = 0,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02,
                 item_text: choice(*ITEM_TEXT) = "none", text_shuffle: bool = False, text_emb: np.ndarray | None = None):
        super().__init__(num_items, dim=dim, max_len=max_len, dropout=dropout, loss=loss, negatives=negatives,
                         init=init, init_std=init_std,
                         item_text=item_text, text_shuffle=text_shuffle, text_emb=text_emb)
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.pos_emb = nn.Embedding(max_len, dim)
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ffn_dim, dropout=dropout, activation="relu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.init_weights()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        length = items.shape[1]
        valid = items != self.pad
        x = self.embed_items(items) * self.dim ** 0.5
        x = x + self.pos_emb.weight[self.max_len - length:]  # the newest item always has the last position
        x = self.dropout(x) * valid[..., None]
        x = self.blocks(x, mask=causal_mask(valid, self.heads))
        return self.norm(x) * valid[..., None]
