"""SEAR: token streams of collaborative, semantic (and rating) information, read by Mamba.

Guan, Cao, Cai, Gao, Cai & Ng, "SEAR: LLM-Powered Sequential Recommendation via Fusion of
Collaborative, Semantic, and Rating Information", WWW 2026
(reference code: https://github.com/guanwei49/SEAR).

* **Streams.** Each position of a history is several tokens: *semantic* (the item's frozen text
  embedding through a trained linear adapter), *collaborative* (ID rows started from the text
  embeddings' PCA: an :class:`~.item_table.ItemTable` with ``item_text=pca``) and, where the data
  has ratings, *rating*; each token gets its own layer norm and dropout. No position embedding:
  the Mamba blocks read order themselves.
* **Layers.** Per layer and stream: attention from the stream's token to the tokens of every
  stream at the same position (an aggregation, residual and post-norm, then a feed-forward
  network), then a Mamba block over the stream's sequence (:class:`~.mamba.MambaBlock`, residual,
  post-norm, feed-forward). A user's state is the streams' states at the newest position, joined.
* **Output.** Items are scored against their own table, ``(I, streams × dim)``, started from the
  text embeddings' PCA at that width (not tied to the input rows).
* **Loss.** ``soft`` (SEAR's): at every position, the KL divergence from a soft label over the
  next ``soft_targets`` items of the training sequence, weights ``exp(-decay · j)`` for the
  ``j``-th (normalised over those that exist; an item twice gets both weights) to the softmax over
  every item. ``ce``: the next item alone (``soft_targets=1``). The reference code trains one prefix
  an example (RecBole's augmentation); here every position of a training sequence is one prefix,
  the same objective.

The rating stream reads each interaction's rating (a learned linear map of the value, layer-normed
like the other tokens, so it tells ratings apart through the map's bias, which starts at 0, as in the
reference code) where the
sequences carry ratings (``sequences.jsonl`` written by ``data/prepare.py`` from a source with
ratings: MovieLens, Amazon reviews); without them (S3-Rec files) SEAR runs with two streams and says so.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from semrec.common.hparams import DropoutRate, NonNegativeFloat, PositiveFloat, PositiveInt, choice
from semrec.encoder.batches import SeqBatch
from semrec.encoder.losses import weighted_logsumexp_similarity
from semrec.encoder.models.sequential.base import SequentialRecommender
from semrec.encoder.models.sequential.encoders import LENGTH_GROUPS, SequenceEncoder, encode_by_length
from semrec.encoder.models.sequential.item_table import SemanticTable, text_matrix
from semrec.encoder.models.sequential.mamba import SCANS, MambaBlock
from semrec.encoder.registry import register

log = logging.getLogger(__name__)

SEAR_LOSSES = ("soft", "ce")


class FeedForward(nn.Module):
    """``x + FFN(x)``, then layer norm (post-norm, GELU, ``4 dim`` wide)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.dropout, self.norm = nn.Dropout(dropout), nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.net(x)))


class StreamLayer(nn.Module):
    """One stream's layer: aggregate the streams' tokens at each position, then read the sequence
    with a Mamba block. Shapes: ``(B, L, d)`` own tokens and ``(B, L, S, d)`` every stream's -> ``(B, L, d)``."""

    def __init__(self, dim: int, heads: int, dropout: float, state: int, conv: int, expand: int, scan: str):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.attn_dropout, self.attn_norm = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.attn_ffn = FeedForward(dim, dropout)
        self.mamba = MambaBlock(dim, state=state, conv=conv, expand=expand, scan=scan)
        self.mamba_dropout, self.mamba_norm = nn.Dropout(dropout), nn.LayerNorm(dim, eps=1e-12)
        self.mamba_ffn = FeedForward(dim, dropout)

    def forward(self, own: torch.Tensor, every: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, length, streams, dim = every.shape
        q = own.reshape(b * length, 1, dim)
        read = self.attn(q, every.reshape(b * length, streams, dim), every.reshape(b * length, streams, dim),
                         need_weights=False)[0].view(b, length, dim)
        x = self.attn_ffn(self.attn_norm(own + self.attn_dropout(read)))
        x = self.mamba_norm(x + self.mamba_dropout(self.mamba(x, valid)))
        return self.mamba_ffn(x) * valid[..., None]


class SEAREncoder(SequenceEncoder):
    """The streams' layers. Shapes: ``(B, L, S, d)`` tokens -> ``(B, L, S·d)`` states (zeros at padding)."""

    def __init__(self, dim: int, streams: int, layers: int, heads: int, dropout: float, state: int, conv: int,
                 expand: int, scan: str, length_groups: int = LENGTH_GROUPS):
        super().__init__()
        self.length_groups = length_groups
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.layers = nn.ModuleList(nn.ModuleList(StreamLayer(dim, heads, dropout, state, conv, expand, scan)
                                                  for _ in range(streams)) for _ in range(layers))

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # rows of similar length together, each group cut to its longest history: the Mamba blocks
        # ignore left padding, so the states are those of one call, with far fewer positions scanned
        return encode_by_length(self._encode, tokens, valid, self.length_groups)

    def _encode(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tokens = torch.stack([stream(tokens[:, :, i], tokens, valid) for i, stream in enumerate(layer)], dim=2)
        return tokens.flatten(2)


@register("sear")
class SEAR(SequentialRecommender):
    """SEAR.

    Args:
        num_items: item vocabulary (from the data).
        dim: width of each stream's tokens (states and output rows are ``streams × dim``).
        max_len: history length (SEAR's window: 100).
        layers: aggregation-and-Mamba layers.
        heads: attention heads of the aggregation (``dim`` divisible by it).
        state: Mamba's state size per channel (SEAR: 32).
        conv: Mamba's convolution width.
        expand: Mamba's inner width as a multiple of ``dim``.
        dropout: dropout rate (tokens, attention and feed-forward outputs).
        loss: ``soft`` (KL to the soft label over the next items) or ``ce`` (the next item).
        soft_targets: ``k``, the next items in the soft label (SEAR: 4).
        decay: ``λ``, the soft label's weight ``exp(-λ j)`` of the ``j``-th next item (SEAR: 2).
        scan: the selective scan's method (:func:`~.mamba.selective_scan`).
        ratings: read the rating stream where the data has ratings (``false``: two streams always).
        length_groups: a batch is encoded in up to this many groups of rows of similar length, each
            cut to its longest history (the same states; see :class:`~.sasrec.SASRec`).
        init_std: the deviation of every weight's normal start.
        text_emb: ``(I, s)`` the items' text embeddings (from the data; ``s`` at least ``streams × dim``).
        rated: whether the data's sequences carry ratings (from the data).
    """

    data_args = ("num_items", "text_emb", "rated")
    alignable = False  #: its semantic stream already brings the text in
    losses = SEAR_LOSSES

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 100, layers: PositiveInt = 2,
                 heads: PositiveInt = 4, state: PositiveInt = 32, conv: PositiveInt = 4, expand: PositiveInt = 2,
                 dropout: DropoutRate = 0.2, loss: choice(*SEAR_LOSSES) = "soft", soft_targets: PositiveInt = 4,
                 decay: NonNegativeFloat = 2.0, scan: choice(*SCANS) = "auto", ratings: bool = True,
                 length_groups: PositiveInt = LENGTH_GROUPS, init_std: PositiveFloat = 0.02,
                 text_emb: np.ndarray | None = None, rated: bool = False):
        text = text_matrix(text_emb, num_items, False, "sear")
        # the collaborative stream: ID rows started from the text's PCA
        super().__init__(num_items, dim=dim, max_len=max_len, dropout=dropout, loss="ce", init="normal",
                         init_std=init_std, item_text="pca", text_emb=text_emb)
        self.loss_name = loss
        self.streams = 3 if ratings and rated else 2  # semantic, collaborative (and rating)
        if text.shape[1] < self.streams * dim:
            raise ValueError(f"sear starts its output rows from the top {self.streams * dim} principal components of "
                             f"{text.shape[1]}-wide text embeddings: dim must be at most {text.shape[1] // self.streams}")
        self.semantic = SemanticTable(text, dim, "affine", mask_row=False)
        self.rating_proj = nn.Linear(1, dim) if self.streams == 3 else None
        self.token_norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-12) for _ in range(self.streams))
        self.token_dropout = nn.Dropout(dropout)
        self.encoder = SEAREncoder(dim, self.streams, layers, heads, dropout, state, conv, expand, scan,
                                   length_groups)
        self.output = nn.Parameter(torch.empty(num_items, self.streams * dim))
        self.soft_targets = 1 if loss == "ce" else soft_targets
        self.decay = decay
        self.init_weights()
        from semrec.common.linalg import pca

        with torch.no_grad():  # the output rows: the text's principal components as they are (SEAR's start)
            self.output.copy_(torch.from_numpy(pca(self.semantic.text.numpy(), self.streams * dim)))

    @classmethod
    def from_data(cls, data, **hparams) -> "SEAR":
        from semrec.common.io import DataError

        data.require_sequences("sear")
        if data.item_emb is None:
            raise DataError(f"{data.path or data.name}: sear needs item text embeddings (itm_emb_np.pkl); make them "
                            "with `python generation/emb/generate_emb.py --encoder all-mpnet-base-v2` (SEAR's "
                            "encoder) on a folder with item profiles (docs/data.md)")
        rated = data.sequences.ratings is not None
        if not rated:
            log.info("sear: the dataset has no ratings beside its sequences, so the rating stream is off "
                     "(semantic and collaborative streams only)")
        elif not hparams.get("ratings", True):
            log.info("sear: model.ratings=false: the rating stream is off")
        return cls(data.num_items, text_emb=data.item_emb, rated=rated, **hparams)

    @property
    def history_ratings(self) -> bool:
        return self.streams == 3

    def sampler_options(self) -> dict:
        return {**super().sampler_options(), **({"ratings": True} if self.history_ratings else {})}

    def item_table(self) -> torch.Tensor:
        return self.output

    def tokens(self, items: torch.Tensor, ratings: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids (and their ratings, with the rating stream) -> ``(B, L, streams, dim)``
        tokens, each normed and dropped out on its own."""
        streams = [F.embedding(items, self.semantic()), self.items.embed(items)]
        if self.rating_proj is not None:
            if ratings is None:
                raise ValueError("sear reads the rating stream and was given no ratings")
            streams.append(self.rating_proj(ratings[..., None].to(streams[0].dtype)))
        return torch.stack([self.token_norms[i](self.token_dropout(t)) for i, t in enumerate(streams)], dim=2)

    def encode(self, items: torch.Tensor, table: torch.Tensor | None = None,
               ratings: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids (and ratings) -> ``(B, L, streams · dim)`` states."""
        return self.encoder(self.tokens(items, ratings), items != self.pad)

    def user_state(self, batch) -> torch.Tensor:
        return self.encode(batch.history, ratings=batch.ratings)[:, -1]

    def soft_labels(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For every position, its next ``soft_targets`` items (``(B, L, k)``, padding where the
        training sequence has ended) and their normalised weights ``exp(-decay · j)``."""
        b, length = targets.shape
        padded = torch.cat([targets, targets.new_full((b, self.soft_targets - 1), self.pad)], dim=1)
        ahead = padded.unfold(1, self.soft_targets, 1)  # (B, L, k): targets t .. t+k-1
        weights = torch.exp(-self.decay * torch.arange(self.soft_targets, dtype=torch.float32, device=targets.device))
        weights = weights * (ahead != self.pad)
        return ahead, weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)

    def loss(self, batch: SeqBatch, out=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        states = self.encode(batch.inputs, ratings=batch.ratings)
        scored = batch.targets != self.pad
        ahead, weights = self.soft_labels(batch.targets)
        h, ahead, weights = states[scored], ahead[scored], weights[scored]  # (P, d), (P, k), (P, k)
        ahead = torch.where(ahead == self.pad, torch.zeros_like(ahead), ahead)  # weight 0 there
        # KL(soft || q) over the k labelled items only (the label is 0 elsewhere). The weights of a
        # row sum to 1, so with log q_i = s_i - logsumexp(s):
        #   KL = sum_j w_j log m_j - sum_j w_j s_j + logsumexp(s)
        # (m_j: the summed weight of an item named twice). The log-sum-exp over every item is the
        # chunked one of the next-item losses (the (P, I) log-probabilities are never held).
        same = ahead[:, :, None] == ahead[:, None, :]  # (P, k, k)
        merged = (same * weights[:, None, :]).sum(-1)
        n = max(h.shape[0], 1)
        labelled = (h[:, None, :] * self.output[ahead]).sum(-1)  # (P, k) the labelled items' scores
        kl = ((torch.xlogy(weights, merged) - weights * labelled).sum() / n
              + weighted_logsumexp_similarity(h, self.output, weights.sum(-1) / n))
        return kl, {self.loss_name: kl}
