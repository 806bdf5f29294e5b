"""The shared base of the sequential recommenders: next-item prediction from a user's history.

A recommender here is three pieces: an **item table** (ids -> vectors, also the output layer:
tied input and output embeddings, as SASRec does), a **sequence encoder** (a
:class:`SequenceEncoder`: ``(B, L, d)`` item vectors of a left-padded batch, the newest item
last, -> ``(B, L, d)`` states; one per paper, registered in :data:`ENCODERS` so that other
models compose them by name) and a **next-item loss**; the state at a position scores every
item by its inner product with the item's vector.
Training scores every position of the training sequence at once (the loss of every next item),
not one sampled prefix per step: the main reason these models train fast.

Losses (``loss``): ``ce`` (softmax over every item), ``sampled_softmax`` (softmax over the
target and ``negatives`` sampled items), ``bce`` (SASRec's: the target against each sampled
negative, ``negatives`` of them, 1 in the paper). See :mod:`semrec.encoder.losses`.
The sampled losses see every score shifted by ``-ln k`` (``k`` negatives): a BCE over ``k``
negatives is least, with all scores equal, at ``-ln k``, and without the shift the item vectors
must first grow a shared direction to get there; on Beauty that put every user on nearly one
state and held gSASRec's validation NDCG@10 at popularity's level (docs/benchmarks.md, "gSASRec's
plateau"). A constant shift changes no ranking and no softmax, and is 0 for one negative.

Initialisation (``init``): ``normal`` draws every embedding, linear and attention weight from
N(0, ``init_std``) with zero biases and unit layer norms (BERT's scheme, which the S3-Rec and
RecBole implementations use, and the one their published numbers come from); ``torch`` keeps
PyTorch's layer defaults with item embeddings of standard deviation ``dim ** -0.5``. A subclass
builds its layers, then calls :meth:`init_weights` once, last in its constructor.

Item tables from text (``item_text``; the dataset's ``itm_emb_np.pkl``, LLM or sentence
embeddings of the items' text, as text4rec and LLM-ESR use them):

* ``none``: learned ID embeddings.
* ``frozen``: the text embeddings stay fixed; a two-layer MLP maps them to ``dim`` (trained).
* ``trainable``: the text embeddings are the trained table; a linear map to ``dim`` if widths differ.
* ``pca``: learned ID embeddings that start as the top ``dim`` principal components of the text
  embeddings (LLM-ESR's collaborative view), rescaled to the deviation ``init_std``.

``text_shuffle`` permutes the text rows among items first: the control run (same vectors, wrong
items). Padding and mask rows are learned ID rows in every case. Input and output (scoring) use
the same table.

Attribute-aware items (``item_graph``; the dataset's item attributes, LLM-ESR-Pro's
attribute-aware graph embedding): the item rows above are fused with their attribute view, GAT
layers over the item–attribute graph (:class:`~semrec.encoder.models.graph.gat.GraphItemFusion`),
by ``concat`` (a linear map of both) or ``gate`` (a learned per-dimension mix); ``none`` leaves
them as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from semrec.encoder.attributes import ItemAttributes
from semrec.encoder.hparams import DropoutRate, NonNegativeInt, PositiveFloat, PositiveInt, choice
from semrec.encoder.losses import full_softmax_ce, sampled_bce, sampled_softmax_ce
from semrec.encoder.models.base import AlignTarget, Recommender
from semrec.encoder.sampling import SeqBatch

if TYPE_CHECKING:
    from semrec.encoder.evaluator import EvalBatch

LOSSES = ("ce", "sampled_softmax", "bce")
INITS = ("normal", "torch", "xavier")
ITEM_TEXT = ("none", "frozen", "trainable", "pca")
ITEM_GRAPH = ("none", "concat", "gate")


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
    batch, while the encoder works on far fewer padded positions (on Beauty a random batch of 256
    is padded to about 50 columns around histories of 9 items on average; sorting batches by
    length instead changes the loss and cost accuracy, :data:`semrec.encoder.sampling.LENGTH_BUCKETS`).
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


def build_encoder(name: str, dim: int, max_len: int, **options) -> SequenceEncoder:
    """The encoder ``name`` with the options its constructor takes (others are ignored, so one
    set of settings can serve any encoder: a GRU has no ``heads``)."""
    import inspect

    from semrec.encoder.models.sequential import bert4rec, gru4rec, sasrec  # noqa: F401  (they register)

    if name not in ENCODERS:
        raise ValueError(f"unknown sequence encoder {name!r}; valid: {', '.join(sorted(ENCODERS))}")
    cls = ENCODERS[name]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(dim=dim, max_len=max_len, **{k: v for k, v in options.items() if k in accepted})


@dataclass
class SeqOutput:
    """One training step's item rows and, once the loss has run, its states (for alignment).

    Attributes:
        table: ``(num_items, dim)`` the item rows used this step (an alignment may mask some).
        inputs: ``(B, L)`` the batch's input ids; ``states``: ``(B, L, d)`` their states.
    """

    table: torch.Tensor
    inputs: torch.Tensor | None = None
    states: torch.Tensor | None = None


class SequentialRecommender(Recommender):
    """Item embeddings, a sequence encoder (:meth:`encode`) and a next-item loss.

    Args:
        num_items: the item vocabulary (from the data); id ``num_items`` is padding.
        dim: embedding and state width.
        max_len: the newest ``max_len`` items of a history are used.
        dropout: dropout rate.
        loss: ``ce``, ``sampled_softmax`` or ``bce`` (above).
        negatives: sampled negatives per position for ``sampled_softmax`` and ``bce``.
        init: ``normal`` or ``torch`` (module docstring); ``init_std``: the normal's deviation.
        item_text: ``none``, ``frozen``, ``trainable`` or ``pca`` (module docstring).
        text_shuffle: permute the text embeddings among items (the control run).
        text_emb: ``(num_items, s)`` item text embeddings (from the data; needed unless
            ``item_text`` is ``none``).
        item_graph: ``none``, ``concat`` or ``gate`` (module docstring); ``graph_layers``,
            ``graph_heads``: the attribute view's GAT layers and heads.
        attributes: the item–attribute edges (from the data; needed unless ``item_graph`` is ``none``).

    Shapes: :meth:`encode` maps ``(B, L)`` ids to ``(B, L, dim)`` states.
    """

    data_args = ("num_items", "text_emb", "attributes")
    #: extra ids after padding (BERT4Rec's mask token)
    extra_tokens = 0
    #: the values ``loss`` may take (a subclass with its own loss narrows them)
    losses: tuple[str, ...] = LOSSES

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50,
                 dropout: DropoutRate = 0.2, loss: choice(*LOSSES) = "ce", negatives: NonNegativeInt = 0,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02,
                 item_text: choice(*ITEM_TEXT) = "none", text_shuffle: bool = False, text_emb: np.ndarray | None = None,
                 item_graph: choice(*ITEM_GRAPH) = "none", graph_layers: PositiveInt = 1, graph_heads: PositiveInt = 2,
                 attributes: ItemAttributes | None = None):
        super().__init__()
        if loss not in self.losses:
            raise ValueError(f"loss must be one of {', '.join(self.losses)}, got {loss!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        if loss != "ce" and negatives < 1:
            raise ValueError(f"loss {loss!r} needs negatives >= 1 (sampled items per position)")
        if loss != "ce" and negatives >= num_items:
            raise ValueError(f"model.negatives ({negatives}) must be below the number of items ({num_items}): "
                             "negatives are drawn among the items other than the target")
        self.num_items, self.dim, self.max_len = num_items, dim, max_len
        self.loss_name, self.negatives = loss, negatives if loss != "ce" else 0
        self.pad = num_items
        self.init, self.init_std = init, init_std
        self.item_emb = nn.Embedding(num_items + 1 + self.extra_tokens, dim, padding_idx=num_items)
        self.dropout_rate = dropout
        self._text_table(item_text, text_shuffle, text_emb)
        self._graph_fusion(item_graph, graph_layers, graph_heads, attributes)

    def _graph_fusion(self, item_graph: str, layers: int, heads: int, attributes: ItemAttributes | None) -> None:
        if item_graph not in ITEM_GRAPH:
            raise ValueError(f"item_graph must be one of {', '.join(ITEM_GRAPH)}, got {item_graph!r}")
        self.item_graph = item_graph
        if item_graph == "none":
            return
        if attributes is None:
            raise ValueError(f"item_graph={item_graph} needs item attributes (item_attributes.jsonl, or an S3-Rec "
                             "file's _item2attributes.json)")
        if attributes.num_items != self.num_items:
            raise ValueError(f"the attributes describe {attributes.num_items} items, the model {self.num_items}")
        from semrec.encoder.models.graph.gat import GraphItemFusion

        self.graph_fusion = GraphItemFusion(attributes, self.dim, item_graph, layers=layers, heads=heads,
                                            dropout=self.dropout_rate)

    def _text_table(self, item_text: str, shuffle: bool, text_emb: np.ndarray | None) -> None:
        if item_text not in ITEM_TEXT:
            raise ValueError(f"item_text must be one of {', '.join(ITEM_TEXT)}, got {item_text!r}")
        self.item_text, self.text_shuffle = item_text, shuffle
        if item_text == "none":
            if shuffle:
                raise ValueError("text_shuffle permutes item text embeddings: set item_text too (frozen, trainable, pca)")
            return
        if text_emb is None:
            raise ValueError(f"item_text={item_text} needs item text embeddings (itm_emb_np.pkl in the dataset folder; "
                             "make them with generation/item/generate_profile.py --source metadata, then "
                             "generation/emb/generate_emb.py)")
        text = np.asarray(text_emb, dtype=np.float32)
        if text.ndim != 2 or text.shape[0] != self.num_items:
            raise ValueError(f"item text embeddings have shape {text.shape}; expected ({self.num_items}, width)")
        if shuffle:  # the control: the same vectors, owned by the wrong items
            text = text[np.random.default_rng(0).permutation(self.num_items)]
        self._text = torch.from_numpy(text)  # kept until init_weights has used it (pca)
        width = text.shape[1]
        if item_text == "frozen":
            self.register_buffer("text_emb", self._text, persistent=False)  # data, not a weight
            hidden = (width + self.dim) // 2
            self.text_proj = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, self.dim))
        elif item_text == "trainable":
            self.text_emb = nn.Parameter(self._text.clone())
            self.text_proj = nn.Linear(width, self.dim, bias=False) if width != self.dim else nn.Identity()
        elif width < self.dim:
            raise ValueError(f"item_text=pca takes the top dim={self.dim} principal components of "
                             f"{width}-wide text embeddings: dim must be at most {width}")

    def item_vectors(self) -> torch.Tensor:
        """Every row of the item table, ``(num_items + 1 + extra_tokens, dim)``: the items
        (from text where ``item_text`` says so), then padding (zero) and any mask token."""
        rows = self.item_emb.weight
        if self.item_text in ("frozen", "trainable"):
            rows = torch.cat([self.text_proj(self.text_emb), rows[self.num_items:]])
        if self.item_graph != "none":
            rows = torch.cat([self.graph_fusion(rows[: self.num_items]), rows[self.num_items:]])
        return rows

    @property
    def computed_table(self) -> bool:
        """Whether the item rows are computed (from text or the attribute graph) rather than read
        from ``item_emb``: then a step computes them once and reads them twice."""
        return self.item_text in ("frozen", "trainable") or self.item_graph != "none"

    def embed_items(self, items: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, dim)`` item vectors, from :meth:`item_vectors` or ``table``."""
        if table is None and not self.computed_table:
            return self.item_emb(items)
        return nn.functional.embedding(items, self.item_vectors() if table is None else table, padding_idx=self.pad)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise every parameter by ``init`` (call once, after all layers exist)."""
        if self.init == "torch":
            nn.init.normal_(self.item_emb.weight, std=self.dim ** -0.5)
        elif self.init == "xavier":  # RecTools' transformers (eSASRec): Xavier-normal for every trained matrix
            for p in self.parameters():
                if p.dim() > 1 and p.requires_grad:
                    nn.init.xavier_normal_(p)
        else:
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=self.init_std)
                    if getattr(m, "bias", None) is not None:
                        m.bias.zero_()
                elif isinstance(m, nn.MultiheadAttention):  # its input projection is a bare parameter
                    nn.init.normal_(m.in_proj_weight, std=self.init_std)
                    if m.in_proj_bias is not None:
                        m.in_proj_bias.zero_()
                elif isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
        if self.item_text == "pca":
            from semrec.encoder.linalg import pca

            start = torch.from_numpy(pca(self._text.numpy(), self.dim))
            self.item_emb.weight[: self.num_items] = start * (self.init_std / start.std(correction=0).clamp(min=1e-12))
        self.__dict__.pop("_text", None)
        self.item_emb.weight[self.pad].zero_()

    @classmethod
    def from_data(cls, data, **hparams) -> "SequentialRecommender":
        data.require_sequences(getattr(cls, "registered_name", cls.__name__))
        if hparams.get("item_text", "none") != "none" and data.item_emb is None:
            from semrec.encoder.dataset import DataError

            raise DataError(f"{data.path or data.name}: model.item_text={hparams['item_text']} needs item text "
                            "embeddings (itm_emb_np.pkl); make them with `python generation/item/generate_profile.py "
                            "--source metadata` and `python generation/emb/generate_emb.py` on a folder prepared "
                            "with item text (docs/data.md)")
        cls._require_attributes(data, hparams)
        return cls(data.num_items, text_emb=data.item_emb, attributes=data.attributes, **hparams)

    @classmethod
    def _require_attributes(cls, data, hparams: dict) -> None:
        if hparams.get("item_graph", "none") != "none" and data.attributes is None:
            from semrec.encoder.dataset import DataError

            raise DataError(f"{data.path or data.name}: model.item_graph={hparams['item_graph']} needs item "
                            "attributes: item_attributes.jsonl (`python data/prepare.py` writes it from the source's "
                            "metadata; docs/data.md) or an S3-Rec file with its _item2attributes.json")

    #: the sequence encoder (a subclass sets it in its constructor)
    encoder: SequenceEncoder

    @property
    def batch_kind(self) -> str:
        return "cloze" if self.encoder.bidirectional else "next_item"

    @property
    def mask_id(self) -> int:
        return self.num_items + 1

    @property
    def history_len(self) -> int:
        return self.max_len - 1 if self.encoder.bidirectional else self.max_len  # the mask slot is last

    def sampler_options(self) -> dict[str, Any]:
        return {"max_len": self.max_len, "negatives": self.negatives}

    def item_table(self) -> torch.Tensor:
        """``(num_items, dim)`` output embeddings of the real items (no padding or mask rows)."""
        return self.item_vectors()[: self.num_items]

    def encode(self, items: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, d)`` states (item vectors from ``table`` if given: all rows)."""
        return self.encoder(self.embed_items(items, table), items != self.pad)

    def loss(self, batch: SeqBatch, out: SeqOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The next-item loss of the batch. With ``out`` (alignment), the inputs are read from its
        item rows (a generative alignment masks some) while the outputs stay the item table, and
        the states are kept in it."""
        vectors = self.item_vectors() if self.computed_table or out is not None else None
        table = vectors if out is None else torch.cat([out.table, vectors[self.num_items:]])
        states = self.encode(batch.inputs, table)
        if out is not None:
            out.inputs, out.states = batch.inputs, states
        rec = self.next_item_loss(states, batch.targets, batch.negatives,
                                  None if vectors is None else vectors[: self.num_items])
        return rec, {self.loss_name: rec}

    def next_item_loss(self, states: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                       table: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of states ``(B, L, d)`` at the positions with a target (``targets`` ``(B, L)``,
        padding elsewhere), against :meth:`item_table` or the item rows ``table``. Negatives in
        either of the samplers' layouts (:mod:`semrec.encoder.sampling`): ``(B, L, k)`` per
        position, or ``(B, 1, k)`` per sequence (one matrix product per sequence instead of a
        gather per position)."""
        table = self.item_table() if table is None else table
        scored = targets != self.pad
        if negatives.shape[1] == 1 and targets.shape[1] > 1 and self.loss_name != "ce":
            s_pos, s_neg = self._sequence_negative_scores(states, targets, negatives[:, 0], table, scored)
        else:
            h, pos = states[scored], targets[scored]
            if self.loss_name == "ce":
                return full_softmax_ce(h, table, pos)
            s_pos = (h * table[pos]).sum(-1)
            s_neg = torch.einsum("pd,pkd->pk", h, table[negatives[scored]])
        shift = math.log(s_neg.shape[1])  # module docstring
        return self.sampled_loss(s_pos - shift, s_neg - shift)

    def _sequence_negative_scores(self, states: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                                  table: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the targets ``(P,)`` and of each sequence's ``k`` negatives ``(P, k)`` at the
        scored positions, one matrix product per sequence. The products run on groups of rows of
        similar length, each over its own scored columns (:func:`length_plan`, as the encoder's
        ``length_groups``): a random batch's rows are mostly padding, which a product over all
        columns would score and throw away. The positions come out group by group, the order the
        mean over positions does not see."""
        width = scored.shape[1]
        plan = length_plan(scored, self.loss_groups) or [(slice(None), width)]  # one product: views, no copies
        s_pos, s_neg = [], []
        for rows, w in plan:
            keep = scored[rows, width - w:]
            st = states[rows, width - w:]
            s_neg.append(torch.bmm(st, table[negatives[rows]].transpose(1, 2))[keep])
            s_pos.append((st[keep] * table[targets[rows, width - w:][keep]]).sum(-1))
        return torch.cat(s_pos), torch.cat(s_neg)

    @property
    def loss_groups(self) -> int:
        """The model's ``length_groups`` (its encoder's where the model has none; GRU4Rec: the default)."""
        return getattr(self, "length_groups", None) or getattr(self.encoder, "length_groups", LENGTH_GROUPS)

    def sampled_loss(self, s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "bce":
            return sampled_bce(s_pos, s_neg)
        return sampled_softmax_ce(s_pos, s_neg)

    # ----- RLMRec's alignment (<name>_plus, <name>_gene; see semrec.encoder.align) --------------
    #: the rows of :meth:`input_embeddings`: items
    node_kinds: tuple[str, ...] = ("item",)

    @property
    def out_dim(self) -> int:
        return self.dim

    def input_embeddings(self) -> torch.Tensor:
        """The item rows, ``(num_items, dim)``."""
        return self.item_table()

    def forward_train(self, x0: torch.Tensor | None = None) -> SeqOutput:
        return SeqOutput(self.input_embeddings() if x0 is None else x0)

    def mask_candidates(self, batch: SeqBatch) -> torch.Tensor:
        """The items a generative alignment may mask this step: those the batch reads (an item
        absent from every sequence of the batch has no state to reconstruct from)."""
        seen = batch.inputs[batch.inputs < self.num_items]
        return torch.unique(seen)

    def node_outputs(self, out: SeqOutput, ids: torch.Tensor) -> torch.Tensor:
        """An item's output: the mean state of the positions that read it in this batch."""
        flat_items, flat = out.inputs.reshape(-1), out.states.reshape(-1, out.states.shape[-1])
        rows = self.item_emb.num_embeddings
        sums = torch.zeros(rows, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(0, flat_items, flat)
        counts = torch.bincount(flat_items, minlength=rows).clamp(min=1).to(flat.dtype)
        return sums[ids] / counts[ids, None]

    def align_targets(self, out: SeqOutput, batch: SeqBatch) -> list[AlignTarget]:
        """The batch's users (the state at each sequence's newest position), the items it
        predicts and its sampled negatives (RLMRec aligns users, positives and negatives)."""
        scored = batch.targets != self.pad
        targets = [AlignTarget("user", out.states[:, -1], batch.users, per_row=True),
                   AlignTarget("item", out.table, batch.targets[scored])]
        if batch.negatives.shape[-1]:
            targets.append(AlignTarget("item", out.table, batch.negatives_at(scored).reshape(-1)))
        return targets

    @torch.no_grad()
    def scorer(self) -> Callable[[EvalBatch], torch.Tensor]:
        """Scores of every item from the state at each history's newest position (a
        bidirectional encoder: at the mask slot appended after it)."""
        table = self.item_table().t().contiguous()

        def score(batch: EvalBatch) -> torch.Tensor:
            h = batch.history
            if self.encoder.bidirectional:
                h = torch.cat([h, torch.full_like(h[:, :1], self.mask_id)], dim=1)
            return self.encode(h)[:, -1] @ table

        return score
