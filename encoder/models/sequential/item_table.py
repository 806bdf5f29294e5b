"""Item tables: how a sequential model turns item ids into vectors.

An :class:`ItemTable` holds a row for every id: the items ``0..I-1``, then padding (``I``, zero),
then any extra token (BERT4Rec's mask). Where the item rows come from is the table's setting
``item_text`` (text embeddings: the dataset's ``itm_emb_np.pkl``, as text4rec and LLM-ESR use them):

* ``none``: learned ID rows;
* ``pca``: learned ID rows that start as the top ``dim`` principal components of the text
  embeddings (LLM-ESR's collaborative view), rescaled to the deviation ``init_std``;
* ``frozen`` (:class:`FrozenText`): the text embeddings stay fixed; a two-layer MLP maps them to
  ``dim`` (trained);
* ``trainable`` (:class:`TrainableText`): the text embeddings are the trained rows, through a
  linear map to ``dim`` if the widths differ;
* any other :class:`TextRows` registered with :func:`register_item_text`: a new kind of item is one
  class, and every sequential model takes it as ``model.item_text=<name>``.

``text_shuffle`` permutes the text rows among items first: the control run (same vectors, wrong
items). ``item_graph`` fuses the item rows with their attribute view (GAT layers over the
item–attribute graph, :class:`~semrec.encoder.models.layers.GraphItemFusion`): ``concat`` (a
linear map of both) or ``gate`` (a learned per-dimension mix); ``none`` leaves them. Padding and
extra rows are learned ID rows in every case. A model reads its inputs and scores its outputs
from the same table, and may hold more than one: LLM-ESR's collaborative view is an
:class:`ItemTable` started from PCA, its semantic view a :class:`SemanticTable` (frozen LLM
embeddings behind a trained adapter).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from semrec.encoder.attributes import ItemAttributes
from semrec.common.hparams import PositiveInt, choice

ITEM_GRAPH = ("none", "concat", "gate")
#: ``item_text`` kinds that are ID rows (no :class:`TextRows`)
ID_KINDS = ("none", "pca")
#: :class:`TextRows` kinds by name (:func:`register_item_text`)
TEXT_ROWS: dict[str, type] = {}


def register_item_text(name: str):
    """Class decorator: a :class:`TextRows` kind, chosen as ``item_text=<name>``."""
    def wrap(cls: type) -> type:
        if name in ID_KINDS or (name in TEXT_ROWS and TEXT_ROWS[name] is not cls):
            raise ValueError(f"item_text {name!r} is already taken")
        TEXT_ROWS[name] = cls
        return cls

    return wrap


def item_text_kinds() -> tuple[str, ...]:
    """Every value ``item_text`` may take."""
    return ID_KINDS + tuple(TEXT_ROWS)


class TextRows(nn.Module):
    """Item rows computed from the items' text embeddings: ``forward()`` -> ``(I, dim)``.

    Args:
        text: ``(I, s)`` text embeddings (already permuted for the shuffled control).
        dim: the model's width.
    """

    def __init__(self, text: torch.Tensor, dim: int):
        super().__init__()


@register_item_text("frozen")
class FrozenText(TextRows):
    """Fixed text embeddings through a trained two-layer MLP, ``s -> (s + dim)/2 -> dim``."""

    def __init__(self, text: torch.Tensor, dim: int):
        super().__init__(text, dim)
        self.register_buffer("text", text, persistent=False)  # data, not a weight
        hidden = (text.shape[1] + dim) // 2
        self.proj = nn.Sequential(nn.Linear(text.shape[1], hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self) -> torch.Tensor:
        return self.proj(self.text)


@register_item_text("trainable")
class TrainableText(TextRows):
    """The text embeddings as trained rows, through a linear map where widths differ."""

    def __init__(self, text: torch.Tensor, dim: int):
        super().__init__(text, dim)
        self.text = nn.Parameter(text.clone())
        self.proj = nn.Linear(text.shape[1], dim, bias=False) if text.shape[1] != dim else nn.Identity()

    def forward(self) -> torch.Tensor:
        return self.proj(self.text)


def text_matrix(text_emb: np.ndarray | None, num_items: int, shuffle: bool, needed_by: str) -> torch.Tensor:
    """The ``(I, s)`` text embeddings as float32, checked, and permuted among items for the control."""
    if text_emb is None:
        raise ValueError(f"{needed_by} needs item text embeddings (itm_emb_np.pkl in the dataset folder; make "
                         "them with generation/item/generate_profile.py --source metadata, then "
                         "generation/emb/generate_emb.py)")
    text = np.asarray(text_emb, dtype=np.float32)
    if text.ndim != 2 or text.shape[0] != num_items:
        raise ValueError(f"item text embeddings have shape {text.shape}; expected ({num_items}, width)")
    if shuffle:  # the control: the same vectors, owned by the wrong items
        text = text[np.random.default_rng(0).permutation(num_items)]
    return torch.from_numpy(text)


def graph_fusion(item_graph: str, attributes: ItemAttributes | None, num_items: int, dim: int, layers: int,
                 heads: int, dropout: float) -> nn.Module | None:
    """The attribute-view fusion ``item_graph`` asks for (``None`` for ``none``)."""
    if item_graph not in ITEM_GRAPH:
        raise ValueError(f"item_graph must be one of {', '.join(ITEM_GRAPH)}, got {item_graph!r}")
    if item_graph == "none":
        return None
    if attributes is None:
        raise ValueError(f"item_graph={item_graph} needs item attributes (item_attributes.jsonl, or an S3-Rec "
                         "file's _item2attributes.json)")
    if attributes.num_items != num_items:
        raise ValueError(f"the attributes describe {attributes.num_items} items, the model {num_items}")
    from semrec.encoder.models.layers import GraphItemFusion

    return GraphItemFusion(attributes, dim, item_graph, layers=layers, heads=heads, dropout=dropout)


class LinearAdapter(nn.Module):
    """Two linear maps with no activation between, ``s -> s/2 -> d`` (the reference code's adapter),
    applied as their product: every step maps the whole frozen ``(I, s)`` table, and one ``(s, d)``
    matrix does that with under a third of the operations of the two layers one after the other
    (s = 384, d = 64: 24,576 against 86,016 a row); the gradients of both layers are the same
    either way."""

    def __init__(self, width: int, hidden: int, dim: int):
        super().__init__()
        self.inner, self.outer = nn.Linear(width, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.outer.weight @ self.inner.weight  # (d, s)
        bias = self.outer.weight @ self.inner.bias + self.outer.bias
        return torch.addmm(bias, x, weight.t())


class SemanticTable(nn.Module):
    """The semantic view's rows: the items' LLM embeddings, frozen, through a trained adapter
    (``linear``: :class:`LinearAdapter`, ``s -> s/2 -> dim``, as LLM-ESR's reference code; ``mlp``:
    ``s -> (s + dim)/2 -> dim`` with a GELU; ``affine``: one linear map, as SEAR's); padding zero,
    never learned; the mask token's row
    learned where a mask is ever read (``mask_row``).

    Shapes: ``forward(fusion)`` -> ``(I + 2, dim)``, the items first passed through ``fusion``
    (the attribute view) where given.
    """

    def __init__(self, text: torch.Tensor, dim: int, adapter: str, mask_row: bool):
        super().__init__()
        self.register_buffer("text", text, persistent=False)  # frozen: data, not a weight
        width = text.shape[1]
        if adapter == "linear":
            self.adapter = LinearAdapter(width, max(width // 2, 1), dim)
        elif adapter == "affine":
            self.adapter = nn.Linear(width, dim)
        else:
            self.adapter = nn.Sequential(nn.Linear(width, (width + dim) // 2), nn.GELU(), nn.Linear((width + dim) // 2, dim))
        self.mask = nn.Parameter(torch.zeros(1, dim)) if mask_row else None

    def forward(self, fusion: nn.Module | None = None) -> torch.Tensor:
        items = self.adapter(self.text)
        if fusion is not None:
            items = fusion(items)
        pad = items.new_zeros(1, items.shape[1])
        return torch.cat([items, pad, pad if self.mask is None else self.mask])


class ItemTable(nn.Module):
    """Rows for every id: items (module docstring), padding (zero), then ``extra_tokens`` rows.

    Args:
        num_items, dim: the vocabulary and the width (from the model).
        extra_tokens: rows after padding (BERT4Rec's mask token).
        dropout: the attribute view's attention dropout (the model's rate).
        item_text: ``none``, ``pca`` or a :class:`TextRows` kind (module docstring).
        text_shuffle: permute the text embeddings among items (the control run).
        item_graph: ``none``, ``concat`` or ``gate`` (module docstring).
        graph_layers: the attribute view's GAT layers.
        graph_heads: the attribute view's attention heads.
        text_emb: ``(I, s)`` text embeddings (from the data; needed unless ``item_text`` is ``none``).
        attributes: the item–attribute edges (from the data; needed unless ``item_graph`` is ``none``).

    Shapes: ``forward()`` -> ``(I + 1 + extra_tokens, dim)``.
    """

    #: arguments the model passes (the rest are the table's settings, ``model.<name>``)
    model_args = ("num_items", "dim", "extra_tokens", "dropout")
    #: arguments that come from the dataset
    data_args = ("text_emb", "attributes")

    def __init__(self, num_items: int, dim: int, extra_tokens: int = 0, dropout: float = 0.2,
                 item_text: str = "none", text_shuffle: bool = False, item_graph: choice(*ITEM_GRAPH) = "none",
                 graph_layers: PositiveInt = 1, graph_heads: PositiveInt = 2, text_emb: np.ndarray | None = None,
                 attributes: ItemAttributes | None = None):
        super().__init__()
        if item_text not in item_text_kinds():
            raise ValueError(f"item_text must be one of {', '.join(item_text_kinds())}, got {item_text!r}")
        self.num_items, self.dim, self.pad = num_items, dim, num_items
        self.item_text, self.text_shuffle, self.item_graph = item_text, text_shuffle, item_graph
        self.item_emb = nn.Embedding(num_items + 1 + extra_tokens, dim, padding_idx=num_items)
        self.text_rows: TextRows | None = None
        if item_text == "none":
            if text_shuffle:
                raise ValueError("text_shuffle permutes item text embeddings: set item_text too "
                                 f"({', '.join(item_text_kinds()[1:])})")
        else:
            text = text_matrix(text_emb, num_items, text_shuffle, f"item_text={item_text}")
            if item_text == "pca":
                if text.shape[1] < dim:
                    raise ValueError(f"item_text=pca takes the top dim={dim} principal components of "
                                     f"{text.shape[1]}-wide text embeddings: dim must be at most {text.shape[1]}")
                self._pca_source = text  # used once, by start()
            else:
                self.text_rows = TEXT_ROWS[item_text](text, dim)
        self.fusion = graph_fusion(item_graph, attributes, num_items, dim, graph_layers, graph_heads, dropout)

    @property
    def num_rows(self) -> int:
        return self.item_emb.num_embeddings

    @property
    def computed(self) -> bool:
        """Whether the item rows are computed (from text or the attribute graph) rather than read
        from the ID rows: then a step computes them once and reads them twice."""
        return self.text_rows is not None or self.fusion is not None

    def forward(self) -> torch.Tensor:
        """Every row, ``(I + 1 + extra_tokens, dim)``."""
        rows = self.item_emb.weight
        if self.text_rows is not None:
            rows = torch.cat([self.text_rows(), rows[self.num_items:]])
        if self.fusion is not None:
            rows = torch.cat([self.fusion(rows[: self.num_items]), rows[self.num_items:]])
        return rows

    def embed(self, items: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, dim)`` vectors, from this table or the given ``rows``."""
        if rows is None and not self.computed:
            return self.item_emb(items)
        return nn.functional.embedding(items, self() if rows is None else rows, padding_idx=self.pad)

    @torch.no_grad()
    def start(self, init: str, init_std: float) -> None:
        """The table's own start, after the model has initialised every layer by ``init``:
        ``torch`` draws the ID rows with deviation ``dim ** -0.5``, ``pca`` sets them from the text,
        padding is zero."""
        if init == "torch":
            nn.init.normal_(self.item_emb.weight, std=self.dim ** -0.5)
        source = self.__dict__.pop("_pca_source", None)
        if source is not None:
            from semrec.common.linalg import pca

            start = torch.from_numpy(pca(source.numpy(), self.dim))
            self.item_emb.weight[: self.num_items] = start * (init_std / start.std(correction=0).clamp(min=1e-12))
        self.item_emb.weight[self.pad].zero_()


def table_settings(table_cls: type = ItemTable) -> list[str]:
    """The names of a table's settings (``model.<name>``)."""
    import inspect

    skip = set(table_cls.model_args) | set(table_cls.data_args) | {"self"}
    return [n for n in inspect.signature(table_cls.__init__).parameters if n not in skip]

