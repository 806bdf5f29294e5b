"""LLM-ESR: LLM embeddings for long-tail sequential recommendation.

Liu, Wu, Wang, Li, Zhang, Zhao & Wang, "LLM-ESR: Large Language Models Enhancement for
Long-tailed Sequential Recommendation", NeurIPS 2024. https://arxiv.org/abs/2405.20646
(reference code: https://github.com/liuqidong07/LLM-ESR)

* **Dual view.** Semantic view: the items' LLM (text) embeddings, frozen, through a trained
  adapter to ``dim`` (linear, as the reference code, or an MLP). Collaborative view: ID
  embeddings that start from the top ``dim`` principal components of the same LLM embeddings.
  Each view's item sequence goes through a
  sequence encoder (:data:`~semrec.encoder.models.sequential.base.ENCODERS`: ``sasrec``,
  ``bert4rec`` or ``gru4rec``), one shared by both views or one each; a user's state is the two
  views' states side by side, an item's vector its two views side by side (``2 dim`` wide).
* **Cross-attention** between the views before the encoder: each view's sequence is re-read
  with the other view's vectors as queries (values stay in the view's own space). The
  reference code masks only padding there, so in next-item training a position sees the later
  items of the other view, its own target among them; here the attention is causal for a
  causal encoder (a position sees itself and earlier positions), bidirectional for BERT4Rec.
  The reference code then feeds the encoder the cross-attention's output alone; with causal
  attention that blurs each position's own item into a mix of earlier ones, which slowed
  learning (docs/benchmarks.md), so by default it is added to the view's items (``residual``);
  ``cross_attention=replace`` is the reference's form.
* **Retrieval-augmented self-distillation.** Each user's ``neighbors`` most similar users by
  LLM user embedding (cosine, computed once: :func:`~semrec.common.linalg.top_k_cosine`) are
  the teacher: the mean of their (detached) representations, matched by MSE with weight
  ``distill_weight``. A representation is the state at the newest position of the user's
  training sequence. ``teacher=step`` encodes the neighbours at every step, as the reference
  code does; ``teacher=epoch`` (default) encodes every user once at the start of each epoch, in
  evaluation mode, and reads the teachers from that table: the same signal up to one epoch of
  staleness, at a fraction of the cost (docs/benchmarks.md). ``teacher=running`` costs nothing
  beyond the first table: each step writes its users' (detached) training representations into
  it, so a teacher is the neighbours' newest representation as their own steps left it.

**Head and tail users (LLM-ESR-Pro).** With ``user_heads``, a user whose history (as the model
reads it, at most ``max_len`` items) has at most ``tail_len`` items is a tail user; a linear
head per group (started as the identity) maps the shared state, and the state used for
ranking is ``(1 - head_weight) · shared + head_weight · head_of_group(shared)`` (scores are linear
in the state, so this is the weighted fusion of the shared and the group's scores). Training:
``head_loss=separate`` (the default) trains the shared state and the group head's state each on
the next items (the mean of the two losses), so the shared state stays a recommender for every
user and only the group head specialises, and distils the shared state; ``fused`` trains the fused
state, which overfit on Beauty (docs/notes/2026-11-benchmark-log.md, "Head and tail users' heads, trained apart").
``distill_head_users=false`` distils tail users only.

Every part has a switch, so the paper's ablations are settings: ``views`` (``both``, or one
view alone), ``cross_attention``, ``share_encoder``, ``distill_weight=0``, and ``id_init=random``
for a collaborative view that does not start from the LLM embeddings.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from semrec.encoder.attributes import ItemAttributes
from semrec.common.hparams import DropoutRate, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability, choice
from semrec.encoder.models.sequential.base import INITS, LOSSES, SequentialRecommender
from semrec.encoder.models.sequential.encoders import LENGTH_GROUPS, attention_mask, build_encoder, encode_by_length, \
    encoder_options
from semrec.encoder.models.sequential.item_table import ITEM_GRAPH, SemanticTable, graph_fusion, text_matrix
from semrec.encoder.registry import register
from semrec.encoder.batches import SeqBatch

SEQUENCE_ENCODERS = ("sasrec", "bert4rec", "gru4rec")
VIEWS = ("both", "collaborative", "semantic")
TEACHERS = ("epoch", "step", "running")
CROSS = ("residual", "replace", "none")
ADAPTERS = ("linear", "mlp")
HEAD_LOSSES = ("fused", "separate")


@register("llmesr")
class LLMESR(SequentialRecommender):
    """LLM-ESR.

    Args:
        num_items: item vocabulary (from the data).
        encoder: the sequence encoder, ``sasrec``, ``bert4rec`` or ``gru4rec``.
        dim: width of each view (states and item vectors are ``2 dim`` with both views).
        max_len, layers, heads, ffn_dim, dropout: the encoder's size (a GRU uses ``layers`` and
            ``dropout`` only).
        mask_prob: share of items masked in training (``bert4rec`` only).
        length_groups: see :class:`~semrec.encoder.models.sequential.sasrec.SASRec` (a GRU packs its
            batch and ignores it).
        loss, negatives, init, init_std: see :class:`SequentialRecommender`.
        views: ``both``, ``collaborative`` (ID view alone) or ``semantic`` (LLM view alone).
        id_init: ``pca`` (the collaborative view starts from the LLM embeddings' principal
            components) or ``random``.
        cross_attention: exchange information between the views before the encoder: ``residual``
            (each view's items plus what it reads from the other), ``replace`` (the read alone,
            as the reference code) or ``none``.
        share_encoder: one encoder for both views (the paper) or one each.
        distill_weight: weight of the self-distillation MSE (0: none).
        neighbors: similar users per user, the teacher.
        teacher: ``epoch`` (a table refreshed each epoch), ``step`` (re-encoded each step) or
            ``running`` (a table that each step updates with its users' representations).
        user_heads: separate heads for head and tail users (LLM-ESR-Pro); ``tail_len``: the
            longest history of a tail user; ``head_weight``: the group head's share of the state.
        head_loss: ``fused`` (train the fused state) or ``separate`` (train the shared state and
            each user's group head, each on its own; fused at ranking).
        distill_head_users: distil head users too (``false``: tail users only).
        text_shuffle: permute the LLM item embeddings among items (the control run).
        adapter: ``linear`` (two linear layers, ``s -> s/2 -> dim``, as the reference code) or
            ``mlp`` (``s -> (s + dim)/2 -> dim`` with a GELU between).
        item_graph: ``concat`` or ``gate`` fuses the semantic view's items with their attribute
            view (GAT over the item–attribute graph; the ID view when there is no semantic
            view): LLM-ESR-Pro's attribute-aware item embeddings. ``none``: off.
        graph_layers, graph_heads: the attribute view's GAT layers and heads.
        text_emb, user_emb, histories: from the data: LLM item embeddings ``(I, s)``, LLM user
            embeddings ``(U, s')`` (for the neighbours) and every user's training window
            ``(U, max_len)``; ``attributes``: the item–attribute edges (for ``item_graph``).
    """

    data_args = ("num_items", "text_emb", "user_emb", "histories", "attributes")
    #: no ``llmesr_plus`` / ``_gene``: its semantic view already brings the LLM embeddings in
    alignable = False
    extra_tokens = 1  # a mask row, used with a bidirectional encoder

    def __init__(self, num_items: int, encoder: choice(*SEQUENCE_ENCODERS) = "sasrec", dim: PositiveInt = 64,
                 max_len: PositiveInt = 50, layers: PositiveInt = 2, heads: PositiveInt = 2,
                 ffn_dim: PositiveInt = 256, dropout: DropoutRate = 0.5, mask_prob: Probability = 0.2,
                 length_groups: PositiveInt = LENGTH_GROUPS,
                 loss: choice(*LOSSES) = "ce", negatives: NonNegativeInt = 0,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02,
                 views: choice(*VIEWS) = "both", id_init: choice("pca", "random") = "pca",
                 cross_attention: choice(*CROSS) = "residual", share_encoder: bool = True,
                 distill_weight: NonNegativeFloat = 0.1, neighbors: PositiveInt = 10,
                 teacher: choice(*TEACHERS) = "epoch", user_heads: bool = False, tail_len: PositiveInt = 9,
                 head_weight: Probability = 0.5, head_loss: choice(*HEAD_LOSSES) = "separate",
                 distill_head_users: bool = True, text_shuffle: bool = False,
                 adapter: choice(*ADAPTERS) = "linear",
                 item_graph: choice(*ITEM_GRAPH) = "none", graph_layers: PositiveInt = 1, graph_heads: PositiveInt = 2,
                 text_emb: np.ndarray | None = None, user_emb: np.ndarray | None = None,
                 histories: np.ndarray | None = None, attributes: ItemAttributes | None = None):
        if views not in VIEWS:
            raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
        if teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {teacher!r}")
        if text_emb is None:
            raise ValueError("llmesr needs LLM item embeddings (itm_emb_np.pkl)")
        uses_id, uses_sem = views in ("both", "collaborative"), views in ("both", "semantic")
        pca_start = uses_id and id_init == "pca"
        options = self._encoder_options(encoder, layers=layers, heads=heads, ffn_dim=ffn_dim, dropout=dropout)
        # the collaborative view: ID rows, started from the PCA of the LLM embeddings
        super().__init__(num_items, dim=dim, max_len=max_len, dropout=dropout, loss=loss, negatives=negatives,
                         init=init, init_std=init_std, item_text="pca" if pca_start else "none",
                         text_shuffle=text_shuffle and pca_start, text_emb=text_emb)
        # the attribute view, fused into the semantic view's items (the ID view's without one)
        self.graph_fusion = graph_fusion(item_graph, attributes, num_items, dim, graph_layers, graph_heads, dropout)
        self.views, self.uses_id, self.uses_sem = views, uses_id, uses_sem
        self.mask_prob, self.distill_weight, self.teacher = mask_prob, distill_weight, teacher
        self.length_groups = length_groups
        self.encoder = build_encoder(encoder, dim, max_len, **options)
        # the semantic view's own encoder, unless the views share one (or there is one view)
        self.sem_encoder = None if share_encoder or views != "both" else build_encoder(encoder, dim, max_len, **options)
        self.sem = None
        if uses_sem:  # the same permutation as the collaborative view's start, for the control
            self.sem = SemanticTable(text_matrix(text_emb, num_items, text_shuffle, "llmesr"), dim, adapter,
                                     mask_row=self.encoder.bidirectional)
        self.cross = None
        if cross_attention not in CROSS:
            raise ValueError(f"cross_attention must be one of {', '.join(CROSS)}, got {cross_attention!r}")
        self.cross_mode = cross_attention
        if cross_attention != "none" and views == "both":
            if dim % heads:
                raise ValueError(f"dim {dim} must be divisible by heads {heads}")
            self.cross = nn.ModuleDict({"to_id": nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True),
                                        "to_sem": nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)})
        self.neighbors = 0
        if distill_weight > 0:
            if user_emb is None or histories is None:
                raise ValueError("self-distillation (distill_weight > 0) needs LLM user embeddings (usr_emb_np.pkl); "
                                 "set model.distill_weight=0 to train without it")
            from semrec.common.linalg import top_k_cosine

            self.neighbors = min(neighbors, len(user_emb) - 1)
            self.register_buffer("similar", torch.from_numpy(top_k_cosine(user_emb, self.neighbors)), persistent=False)
            self.register_buffer("histories", torch.as_tensor(histories, dtype=torch.long), persistent=False)
            self.register_buffer("teachers", torch.zeros(0), persistent=False)
        if head_loss not in HEAD_LOSSES:
            raise ValueError(f"head_loss must be one of {', '.join(HEAD_LOSSES)}, got {head_loss!r}")
        self.user_heads, self.tail_len, self.head_weight = user_heads, tail_len, head_weight
        # the state that trains and is distilled: the fused one, or the shared one (heads trained apart)
        self.fuse_in_training = user_heads and head_loss == "fused"
        self.distill_head_users = distill_head_users
        width = dim * (2 if views == "both" else 1)
        if user_heads:
            self.group_heads = nn.ModuleDict({"head": nn.Linear(width, width), "tail": nn.Linear(width, width)})
        self.init_weights()
        self._init_own_layers()
        if uses_sem and self.sem.mask is not None:
            with torch.no_grad():
                self.sem.mask.normal_(std=init_std)
        if user_heads:
            with torch.no_grad():  # both start as the identity: the fused state starts as the shared one
                for head in self.group_heads.values():
                    head.weight.copy_(torch.eye(width))
                    head.bias.zero_()

    @torch.no_grad()
    def _init_own_layers(self) -> None:
        """The adapter's and the cross-attention's weights by Xavier-normal (the reference code's
        start), whatever ``init`` says for the encoder and the ID table: N(0, 0.02) there would
        shrink every vector that passes through, leaving the items far below the positions the
        encoder adds (docs/benchmarks.md)."""
        layers = [m for m in (None if self.sem is None else self.sem.adapter, self.cross) if m is not None]
        for module in (m for layer in layers for m in layer.modules()):
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.xavier_normal_(module.in_proj_weight)
                if module.in_proj_bias is not None:
                    module.in_proj_bias.zero_()

    @classmethod
    def from_data(cls, data, **hparams) -> "LLMESR":
        from semrec.encoder.dataset import DataError

        seq = data.require_sequences("llmesr")
        if data.item_emb is None:
            raise DataError(f"{data.path or data.name}: llmesr needs LLM item embeddings (itm_emb_np.pkl); make them "
                            "with `python generation/item/generate_profile.py --source metadata` (or an LLM) and "
                            "`python generation/emb/generate_emb.py` (docs/data.md)")
        import inspect

        defaults = inspect.signature(cls.__init__).parameters
        distill = hparams.get("distill_weight", defaults["distill_weight"].default) > 0
        if distill and data.user_emb is None:
            raise DataError(f"{data.path or data.name}: llmesr's self-distillation needs LLM user embeddings "
                            "(usr_emb_np.pkl; generation/user/generate_profile.py, then generate_emb.py), or "
                            "model.distill_weight=0")
        histories = None
        if distill:
            max_len = hparams.get("max_len", defaults["max_len"].default)
            histories = seq.histories(np.arange(data.num_users), "train", max_len, pad=data.num_items)
        cls.check_data(data, hparams)
        return cls(data.num_items, text_emb=data.item_emb, user_emb=data.user_emb if distill else None,
                   histories=histories, attributes=data.attributes, **hparams)

    def sampler_options(self) -> dict:
        options = super().sampler_options()
        return {**options, "mask_prob": self.mask_prob} if self.encoder.bidirectional else options

    # ----- items ---------------------------------------------------------------------------
    def view_tables(self) -> list[torch.Tensor]:
        """Each used view's rows for every id (items, padding, mask): ``(I + 2, dim)`` each."""
        tables = []
        if self.uses_id:
            ids = self.items.item_emb.weight
            if self.graph_fusion is not None and not self.uses_sem:
                ids = torch.cat([self.graph_fusion(ids[: self.num_items]), ids[self.num_items:]])
            tables.append(ids)
        if self.uses_sem:
            tables.append(self.sem(self.graph_fusion))
        return tables

    def item_vectors(self) -> torch.Tensor:
        return torch.cat(self.view_tables(), dim=1)

    # ----- sequences -----------------------------------------------------------------------
    def _cross(self, query: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor, attn: nn.MultiheadAttention):
        """``keys``' view re-read with ``query``'s vectors as queries (causal unless the encoder
        is bidirectional); zero at padding."""
        mask = attention_mask(valid, attn.num_heads, causal=not self.encoder.bidirectional)
        out, _ = attn(query, keys, keys, attn_mask=mask, need_weights=False)
        return out * valid[..., None]

    def encode(self, items: torch.Tensor, tables: list[torch.Tensor] | None = None, fuse: bool = True) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, width)`` states (item rows from ``tables``, default :meth:`view_tables`);
        with user heads, fused with each user's group head unless ``fuse`` is false (the shared state)."""
        valid = items != self.pad
        xs = [F.embedding(items, table, padding_idx=self.pad) for table in (tables or self.view_tables())]
        widths = [x.shape[-1] for x in xs]
        # the cross-attention and the encoder, on rows grouped by length (each group cut to its longest)
        states = encode_by_length(lambda x, v: self._encode_views(list(x.split(widths, dim=-1)), v),
                                  torch.cat(xs, dim=-1), valid, self.length_groups)
        if not self.user_heads or not fuse:
            return states
        fused = (1 - self.head_weight) * states + self.head_weight * self.group_states(items, states)
        return fused * valid[..., None]

    def group_states(self, items: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Each row's shared ``states`` through its user group's head (padding positions are left
        as the head maps them: nothing scores them, and :meth:`encode` zeroes them in the fused state)."""
        tail = self.is_tail(items)[:, None, None]
        return torch.where(tail, self.group_heads["tail"](states), self.group_heads["head"](states))

    def _encode_views(self, xs: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        """Each view's ``(B, L, dim)`` item vectors -> ``(B, L, width)`` states."""
        if self.cross is not None:
            x_id, x_sem = xs
            crossed = [self._cross(x_sem, x_id, valid, self.cross["to_id"]),
                       self._cross(x_id, x_sem, valid, self.cross["to_sem"])]
            xs = crossed if self.cross_mode == "replace" else [x_id + crossed[0], x_sem + crossed[1]]
        if len(xs) == 2 and self.sem_encoder is None:
            # one shared encoder: both views in one call (twice the rows, half the calls)
            states = torch.cat(self.encoder(torch.cat(xs), valid.repeat(2, 1)).chunk(2), dim=-1)
        else:
            encoders = [self.encoder, self.sem_encoder or self.encoder] if len(xs) == 2 else [self.encoder]
            states = torch.cat([enc(x, valid) for enc, x in zip(encoders, xs)], dim=-1)
        return states

    @property
    def loss_groups(self) -> int:
        return self.length_groups

    @classmethod
    def _encoder_options(cls, encoder: str, **given) -> dict:
        """The encoder settings ``encoder`` takes, with ``length_groups=1`` (:meth:`encode` groups
        the rows by length once, around the cross-attention and the encoder together); a setting
        it does not take, given other than its default, is an error naming the ones it takes."""
        import inspect

        valid = encoder_options(encoder)
        defaults = inspect.signature(cls.__init__).parameters
        for name, value in given.items():
            if name not in valid and value != defaults[name].default:
                raise ValueError(f"model.{name}={value}: the {encoder} encoder takes no {name}; its options: "
                                 f"{', '.join(n for n in valid if n != 'length_groups')}")
        return {**{k: v for k, v in given.items() if k in valid}, **({"length_groups": 1} if "length_groups" in valid
                                                                     else {})}

    def is_tail(self, items: torch.Tensor) -> torch.Tensor:
        """``(B,)`` whether each row's history (its real items) is a tail user's (``<= tail_len``)."""
        return (items != self.pad).sum(1) <= self.tail_len

    # ----- training ------------------------------------------------------------------------
    def _representations(self, users: torch.Tensor) -> torch.Tensor:
        """The state at the newest position of each user's training window."""
        return self.encode(self.histories[users], fuse=self.fuse_in_training)[:, -1]

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> None:
        """``teacher=epoch``: every user's representation, once, in evaluation mode (``running``:
        only when there is no table yet, at the start of a run or of a resumed one)."""
        if not self.neighbors or self.teacher == "step" or (self.teacher == "running" and self.teachers.numel()):
            return
        was_training = self.training
        self.eval()
        tables = self.view_tables()  # once for the whole table, not once a chunk
        # users of similar length together, each chunk cut to its longest history (windows are
        # right-aligned, so the dropped columns are padding only): most Beauty histories are short
        lengths = (self.histories != self.pad).sum(1)
        order = torch.argsort(lengths)
        teachers = None
        for chunk in order.split(1024):
            width = max(int(lengths[chunk].max()), 1)
            states = self.encode(self.histories[chunk, -width:], tables, fuse=self.fuse_in_training)[:, -1]
            if teachers is None:
                teachers = states.new_empty(len(order), states.shape[1])
            teachers[chunk] = states
        self.teachers = teachers
        self.train(was_training)

    def teacher_of(self, users: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` the mean representation of each user's similar users, without gradient."""
        near = self.similar[users]  # (B, k)
        if self.teacher != "step":
            if self.teachers.numel() == 0:
                self.start_epoch(0)
            return self.teachers[near].mean(1)
        with torch.no_grad():
            return self._representations(near.reshape(-1)).view(*near.shape, -1).mean(1)

    def loss(self, batch: SeqBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tables = self.view_tables()  # once a step: the adapter (and any attribute view) read twice
        states = self.encode(batch.inputs, tables, fuse=self.fuse_in_training)
        table = torch.cat(tables, dim=1)[: self.num_items]
        if self.user_heads and not self.fuse_in_training:
            # the shared and the group states as one batch of twice the rows: the mean of their losses
            both = torch.cat([states, self.group_states(batch.inputs, states)])
            rec = self.next_item_loss(both, batch.targets.repeat(2, 1), batch.negatives.repeat(2, 1, 1),
                                      batch.per_sequence, table)
        else:
            rec = self.next_item_loss(states, batch.targets, batch.negatives, batch.per_sequence, table)
        parts = {self.loss_name: rec}
        if not self.neighbors:
            return rec, parts
        per_user = (states[:, -1] - self.teacher_of(batch.users)).pow(2).mean(1)
        if self.teacher == "running":  # after reading the teachers: this batch's users are others' teachers
            self.teachers[batch.users] = states[:, -1].detach().to(self.teachers.dtype)  # float32 under autocast too
        if self.user_heads and not self.distill_head_users:
            per_user = per_user * self.is_tail(batch.inputs)
        distill = self.distill_weight * per_user.mean()
        parts["distill"] = distill
        return rec + distill, parts
