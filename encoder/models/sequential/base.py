"""The shared base of the sequential recommenders: next-item prediction from a user's history.

A recommender here is three parts joined: an **item table** (:mod:`.item_table`: ids -> vectors,
also the output layer, tied input and output embeddings as SASRec has them), a **sequence
encoder** (:mod:`.encoders`: ``(B, L, d)`` item vectors of a left-padded batch -> ``(B, L, d)``
states) and a **next-item loss**; the state at a position scores every item by its inner product
with the item's vector. Training scores every position of the training sequence at once (the
loss of every next item), not one sampled prefix per step: the main reason these models train fast.

Losses (``loss``): ``ce`` (softmax over every item), ``sampled_softmax`` (softmax over the
target and ``negatives`` sampled items), ``bce`` (SASRec's: the target against each sampled
negative, ``negatives`` of them, 1 in the paper). See :mod:`semrec.encoder.losses`.
The sampled losses see every score shifted by ``-ln k`` (``k`` negatives): a BCE over ``k``
negatives is least, with all scores equal, at ``-ln k``, and without the shift the item vectors
must first grow a shared direction to get there (docs/notes/2026-11-benchmark-log.md, "gSASRec's plateau"). A
constant shift changes no ranking and no softmax, and is 0 for one negative.

Initialisation (``init``): ``normal`` draws every embedding, linear and attention weight from
N(0, ``init_std``) with zero biases and unit layer norms (BERT's scheme, which the S3-Rec and
RecBole implementations use, and the one their published numbers come from); ``torch`` keeps
PyTorch's layer defaults with item embeddings of standard deviation ``dim ** -0.5``; ``xavier``
draws every trained matrix Xavier-normal (RecTools' transformers). A subclass builds its
layers, then calls :meth:`init_weights` once, last in its constructor.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from semrec.encoder.batches import EvalBatch, SeqBatch
from semrec.common.hparams import DropoutRate, NonNegativeInt, PositiveFloat, PositiveInt, choice
from semrec.encoder.losses import full_softmax_ce, sampled_bce, sampled_softmax_ce
from semrec.encoder.models.base import Recommender
from semrec.encoder.models.sequential.alignment import SeqOutput, SequenceAlignment
from semrec.encoder.models.sequential.encoders import LENGTH_GROUPS, SequenceEncoder, length_plan
from semrec.encoder.models.sequential.item_table import ItemTable, table_settings

LOSSES = ("ce", "sampled_softmax", "bce")
INITS = ("normal", "torch", "xavier")


class SequentialRecommender(SequenceAlignment, Recommender):
    """An item table, a sequence encoder (:meth:`encode`) and a next-item loss.

    Args:
        num_items: the item vocabulary (from the data); id ``num_items`` is padding.
        dim: embedding and state width.
        max_len: the newest ``max_len`` items of a history are used.
        dropout: dropout rate.
        loss: ``ce``, ``sampled_softmax`` or ``bce`` (above).
        negatives: sampled negatives per position for ``sampled_softmax`` and ``bce``.
        init: ``normal``, ``torch`` or ``xavier`` (module docstring).
        init_std: the deviation of ``normal``'s draws (and of the PCA start).
        **table: the item table's settings and data (:class:`~.item_table.ItemTable`: ``item_text``,
            ``text_shuffle``, ``item_graph``, ``graph_layers``, ``graph_heads``; ``text_emb``,
            ``attributes``), checked against its signature.

    Shapes: :meth:`encode` maps ``(B, L)`` ids to ``(B, L, dim)`` states.
    """

    #: the item table's class: its settings are the model's too (``model.item_text``, ...)
    table_cls: type = ItemTable
    data_args = ("num_items",) + ItemTable.data_args
    #: extra ids after padding (BERT4Rec's mask token)
    extra_tokens = 0
    #: the values ``loss`` may take (a subclass with its own loss narrows them)
    losses: tuple[str, ...] = LOSSES

    def __init__(self, num_items: int, dim: PositiveInt = 64, max_len: PositiveInt = 50,
                 dropout: DropoutRate = 0.2, loss: choice(*LOSSES) = "ce", negatives: NonNegativeInt = 0,
                 init: choice(*INITS) = "normal", init_std: PositiveFloat = 0.02, **table: Any):
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
        self.dropout_rate = dropout
        valid = table_settings(self.table_cls) + list(self.table_cls.data_args)
        unknown = sorted(set(table) - set(valid))
        if unknown:
            raise ValueError(f"unknown item table option {', '.join(map(repr, unknown))}; valid: "
                             f"{', '.join(table_settings(self.table_cls))}")
        self.items = self.table_cls(num_items, dim, extra_tokens=self.extra_tokens, dropout=dropout, **table)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise every parameter by ``init`` (call once, after all layers exist), then let
        the item table set its own start (:meth:`~.item_table.ItemTable.start`)."""
        if self.init == "xavier":  # RecTools' transformers (eSASRec): Xavier-normal for every trained matrix
            for p in self.parameters():
                if p.dim() > 1 and p.requires_grad:
                    nn.init.xavier_normal_(p)
        elif self.init == "normal":
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
        self.items.start(self.init, self.init_std)

    @classmethod
    def from_data(cls, data, **hparams) -> "SequentialRecommender":
        data.require_sequences(getattr(cls, "registered_name", cls.__name__))
        cls.check_data(data, hparams)
        given = {"text_emb": data.item_emb, "attributes": data.attributes}
        return cls(data.num_items, **{k: v for k, v in given.items() if k in cls.data_args}, **hparams)

    @classmethod
    def check_data(cls, data, hparams: dict) -> None:
        """DataError naming what the settings need and the dataset lacks (text, attributes)."""
        from semrec.common.io import DataError

        if hparams.get("item_text", "none") != "none" and data.item_emb is None:
            raise DataError(f"{data.path or data.name}: model.item_text={hparams['item_text']} needs item text "
                            "embeddings (itm_emb_np.pkl); make them with `python generation/item/generate_profile.py "
                            "--source metadata` and `python generation/emb/generate_emb.py` on a folder prepared "
                            "with item text (docs/data.md)")
        if hparams.get("item_graph", "none") != "none" and data.attributes is None:
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

    def item_vectors(self) -> torch.Tensor:
        """Every row of the item table: items, padding and any extra token."""
        return self.items()

    def item_table(self) -> torch.Tensor:
        """``(num_items, dim)`` output embeddings of the real items (no padding or mask rows)."""
        return self.item_vectors()[: self.num_items]

    def encode(self, items: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, d)`` states (item vectors from ``table`` if given: all rows)."""
        return self.encoder(self.items.embed(items, table), items != self.pad)

    def loss(self, batch: SeqBatch, out: SeqOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The next-item loss of the batch, from ``out`` (default: :meth:`forward_train` of it)."""
        out = self.forward_train(None, batch) if out is None else out
        rec = self.next_item_loss(out.states, batch.targets, batch.negatives, batch.per_sequence, out.outputs)
        return rec, {self.loss_name: rec}

    def next_item_loss(self, states: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                       per_sequence: bool = False, table: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of states ``(B, L, d)`` at the positions with a target (``targets`` ``(B, L)``,
        padding elsewhere), against :meth:`item_table` or the item rows ``table``. Negatives as
        the batch lays them out (:mod:`semrec.encoder.batches`): ``(B, L, k)`` per position, or
        with ``per_sequence`` ``(B, 1, k)`` (one matrix product per sequence, not a gather per position)."""
        table = self.item_table() if table is None else table
        scored = targets != self.pad
        if per_sequence and self.loss_name != "ce":
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
        scored positions, one matrix product per sequence, on groups of rows of similar length
        each over its own scored columns (:func:`~.encoders.length_plan`, as the encoder's
        ``length_groups``): a random batch's rows are mostly padding. The positions come out
        group by group, an order the mean over positions does not see."""
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
        """How many length groups the per-sequence negatives' scores use: the encoder's
        ``length_groups`` (an encoder without groups: the default)."""
        return getattr(self.encoder, "length_groups", LENGTH_GROUPS)

    def sampled_loss(self, s_pos: torch.Tensor, s_neg: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "bce":
            return sampled_bce(s_pos, s_neg)
        return sampled_softmax_ce(s_pos, s_neg)

    @torch.no_grad()
    def user_state(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, d)``: the state at each history's newest position (a bidirectional encoder: at
        the mask slot appended after it)."""
        h = batch.history
        if self.encoder.bidirectional:
            h = torch.cat([h, torch.full_like(h[:, :1], self.mask_id)], dim=1)
        return self.encode(h)[:, -1]

    def factors(self) -> tuple[Callable[[EvalBatch], torch.Tensor], torch.Tensor]:
        """Users are their histories' states, items the rows of :meth:`item_table`."""
        return self.user_state, self.item_table()
