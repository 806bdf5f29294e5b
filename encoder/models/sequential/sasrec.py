"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
https://arxiv.org/abs/1808.09781 (reference code: https://github.com/kang205/SASRec)

Item vectors (scaled by sqrt(d)) plus learned positions go through ``layers`` blocks of causal
multi-head self-attention and a feed-forward network, each with a residual connection and layer
normalisation before it (the reference code normalises the queries first), then a final layer
normalisation. PyTorch's ``nn.TransformerEncoderLayer`` is the block. A position attends to
itself and to earlier non-padding positions only.

``layout="s3rec"`` builds the blocks as the S3-Rec and RecBole code does (the code behind the
published tables on the S3-Rec files): item vectors unscaled, a layer normalisation on the input,
post-norm blocks with GELU, no final normalisation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from semrec.encoder.attributes import ItemAttributes
from semrec.encoder.hparams import NonNegativeInt, PositiveFloat, PositiveInt, Probability, choice
from semrec.encoder.models.sequential.base import INITS, ITEM_GRAPH, ITEM_TEXT, LOSSES, SequenceEncoder, SequentialRecommender, \
    attention_mask, register_encoder
from semrec.encoder.registry import register


LAYOUTS = ("sasrec", "s3rec")


@register_encoder("sasrec")
class SASRecEncoder(SequenceEncoder):
    """SASRec's causal Transformer. Shapes: ``(B, L, dim)`` -> ``(B, L, dim)`` (zeros at padding)."""

    def __init__(self, dim: int, max_len: int, layers: int = 2, heads: int = 2, ffn_dim: int = 256,
                 dropout: float = 0.2, layout: str = "sasrec"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.dim, self.max_len, self.heads, self.layout = dim, max_len, heads, layout
        self.pos_emb = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        pre = layout == "sasrec"
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ffn_dim, dropout=dropout,
                                           activation="relu" if pre else "gelu", batch_first=True, norm_first=pre)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)  # after the blocks (sasrec) or on the input (s3rec)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        pos = self.pos_emb.weight[self.max_len - length:]  # the newest item: the last position
        if self.layout == "sasrec":
            x = self.dropout(x * self.dim ** 0.5 + pos) * valid[..., None]
            return self.norm(self.blocks(x, mask=attention_mask(valid, self.heads))) * valid[..., None]
        x = self.dropout(self.norm(x + pos)) * valid[..., None]
        return self.blocks(x, mask=attention_mask(valid, self.heads)) * valid[..., None]


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
        layout: ``sasrec`` (pre-norm, the reference code) or ``s3rec`` (post-norm, S3-Rec's and
            RecBole's; module docstring).
        loss: ``ce`` (full softmax), ``sampled_softmax`` or ``bce`` (the paper, 1 negative).
        negatives: sampled negatives per position for the sampled losses.
        init, init_std, item_text, text_shuffle, text_emb, item_graph,
            graph_layers, graph_heads, attributes: see :class:`SequentialRecommender`.

    Shapes: ``encode``: ``(B, L)`` -> ``(B, L, d)``.
    """

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50, layers: PositiveInt = 2,
                 heads: PositiveInt = 2, ffn_dim: PositiveInt = 64, dropout: Probability = 0.2,
                 layout: choice(*LAYOUTS) = "sasrec", loss: choice(*LOSSES) = "ce", negatives: NonNegativeInt = 0,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02,
                 item_text: choice(*ITEM_TEXT) = "none", text_shuffle: bool = False, text_emb: np.ndarray | None = None,
                 item_graph: choice(*ITEM_GRAPH) = "none", graph_layers: PositiveInt = 1, graph_heads: PositiveInt = 2,
                 attributes: ItemAttributes | None = None):
        super().__init__(num_items, dim=dim, max_len=max_len, dropout=dropout, loss=loss, negatives=negatives,
                         init=init, init_std=init_std,
                         item_text=item_text, text_shuffle=text_shuffle, text_emb=text_emb,
                         item_graph=item_graph, graph_layers=graph_layers, graph_heads=graph_heads, attributes=attributes)
        self.encoder = SASRecEncoder(dim, max_len, layers=layers, heads=heads, ffn_dim=ffn_dim, dropout=dropout,
                                     layout=layout)
        self.init_weights()
