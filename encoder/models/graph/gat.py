"""GAT over users, items and item attributes: Veličković et al., "Graph Attention Networks",
ICLR 2018 (https://arxiv.org/abs/1710.10903), on the heterogeneous user–item–attribute graph,
as LLM-ESR-Pro uses it to bring item structure (brand, category, genre, knowledge-graph
facts) into item representations.

Two views of every item:

* **Interaction view**: the user–item graph, propagated as in LightGCN with semrec's sparse
  matrices (``interaction="lightgcn"``, the default), or with multi-head GAT layers over the
  user→item and item→user relations (``interaction="gat"``). The fixed normalised propagation
  stays the default because attention over every user–item edge costs far more per step.
* **Attribute view**: multi-head GAT layers (PyTorch Geometric's ``GATConv`` in ``HeteroConv``)
  over the item→attribute and attribute→item edges, typed by a relation embedding in each
  edge's attention score. An item's attribute view is the sum of what its layers bring in
  (without its own ID embedding), so an item without attributes has a zero attribute view.

Items enter the interaction graph as their ID embedding plus their attribute view
(``attr_fusion="input"``), so users' representations carry their items' attributes too; or the
two views are added after propagation (``"output"``). The training loss is BPR + L2 +
``cl_weight`` × InfoNCE between the two views of the batch's distinct positive items that have
attributes (at most ``cl_items`` of them, drawn at random; cosine, ``temperature``; candidates:
those items' interaction views, or every item's). Its default weight is 0: on validation it
lowered accuracy at every weight tried (docs/benchmarks.md). The layers are linear (no activation between them), as in LightGCN: ID embeddings
need no feature transform.

The GAT layers themselves (:class:`~semrec.encoder.models.layers.AttributeGAT`, the attribute
view alone) live in :mod:`semrec.encoder.models.layers`, which the sequential models use too.
"""
from __future__ import annotations

import scipy.sparse as sp
import torch

from semrec.encoder.attributes import ItemAttributes
from semrec.common.hparams import DropoutRate, KeepRate, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, choice
from semrec.encoder.losses import l2_of_parameters
from semrec.encoder.models.graph.base import GraphOutput
from semrec.encoder.models.graph.lightgcn import LightGCN
from semrec.encoder.models.layers import AttributeGAT, HeteroGAT
from semrec.encoder.models.graph.ssl import NEGATIVES, view_contrast
from semrec.encoder.registry import register
from semrec.encoder.batches import PairBatch

INTERACTIONS = ("lightgcn", "gat")
ATTR_FUSIONS = ("output", "input")


@register("gat")
class GAT(LightGCN):
    """GAT over the user–item–attribute graph (module docstring).

    Args:
        interactions: binary ``users × items`` training matrix.
        attributes: the item–attribute edges (from the data).
        dim, layers, keep_rate, reg_weight, layer_agg: the interaction view, as in
            :class:`LightGCN` (``keep_rate``: edge dropout, ``lightgcn`` interaction only).
        interaction: ``lightgcn`` (sparse propagation) or ``gat`` (attention layers).
        attr_layers: GAT layers of the attribute view.
        heads: attention heads (both views).
        attn_dropout: dropout on attention coefficients.
        min_attribute_items: drop attributes that fewer items hold (1 keeps all).
        cl_weight: weight of the InfoNCE between the two views of an item (0: none).
        temperature: its temperature.
        cl_items: contrast at most this many of the batch's distinct positive items per step,
            drawn at random (0: all; the contrast over all of a 4096 batch costs more than the
            attribute view itself).
        cl_negatives: ``batch`` (the interaction views of the batch's items) or ``all`` (every item's: slower).
        attr_fusion: ``output`` (rank by interaction + attribute view) or ``input`` (items enter the
            interaction graph as ID embedding + attribute view, so users' representations carry
            their items' attributes too; the interaction view is then the final item).
    """

    data_args = ("interactions", "attributes")

    def __init__(self, interactions: sp.spmatrix, attributes: ItemAttributes | None = None, dim: PositiveInt = 32,
                 layers: NonNegativeInt = 3, keep_rate: KeepRate = 0.8, reg_weight: NonNegativeFloat = 1e-6,
                 layer_agg: str = "sum", interaction: choice(*INTERACTIONS) = "lightgcn",
                 attr_layers: PositiveInt = 1, heads: PositiveInt = 2, attn_dropout: DropoutRate = 0.1,
                 min_attribute_items: PositiveInt = 2, cl_weight: NonNegativeFloat = 0.0,
                 temperature: PositiveFloat = 0.2, cl_items: NonNegativeInt = 1024,
                 cl_negatives: choice(*NEGATIVES) = "batch", attr_fusion: choice(*ATTR_FUSIONS) = "input"):
        super().__init__(interactions, dim=dim, layers=layers, keep_rate=keep_rate, reg_weight=reg_weight,
                         layer_agg=layer_agg)
        if attributes is None:
            raise ValueError("gat needs item attributes (item_attributes.jsonl in the dataset folder, or an S3-Rec "
                             "file's _item2attributes.json)")
        if attributes.num_items != self.num_items:
            raise ValueError(f"the attributes describe {attributes.num_items} items, the interactions "
                             f"{self.num_items}")
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {', '.join(INTERACTIONS)}, got {interaction!r}")
        if cl_negatives not in NEGATIVES:
            raise ValueError(f"cl_negatives must be one of {', '.join(NEGATIVES)}, got {cl_negatives!r}")
        if attr_fusion not in ATTR_FUSIONS:
            raise ValueError(f"attr_fusion must be one of {', '.join(ATTR_FUSIONS)}, got {attr_fusion!r}")
        self.attr_fusion = attr_fusion
        attributes = attributes.prune(min_attribute_items)
        self.interaction, self.cl_weight, self.temperature = interaction, cl_weight, temperature
        self.cl_negatives, self.cl_items = cl_negatives, cl_items
        self.attr_view = AttributeGAT(attributes, dim, layers=attr_layers, heads=heads, dropout=attn_dropout)
        self.register_buffer("has_attributes", torch.from_numpy(attributes.per_item() > 0), persistent=False)
        self.num_attributes = attributes.num_attributes
        if interaction == "gat":
            coo = sp.coo_matrix(interactions)
            ui = torch.stack([torch.from_numpy(coo.row.astype("int64")), torch.from_numpy(coo.col.astype("int64"))])
            self.register_buffer("edges_ui", ui, persistent=False)
            self.register_buffer("edges_iu", ui.flip(0), persistent=False)
            rels = [("user", "ui", "item"), ("item", "iu", "user")]
            self.ui_gat = HeteroGAT(rels, dim, layers, heads, attn_dropout, last_targets=("user", "item"))

    @classmethod
    def from_data(cls, data, **hparams) -> "GAT":
        if data.attributes is None:
            from semrec.common.io import DataError

            raise DataError(f"{data.path or data.name}: gat needs item attributes: item_attributes.jsonl (written by "
                            "`python data/prepare.py` from the source's metadata; docs/data.md) or an S3-Rec file "
                            "with its _item2attributes.json beside it")
        return cls(data.train, attributes=data.attributes, **hparams)

    def interaction_view(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Users and items propagated over the user–item graph, ``(U, d)`` and ``(I, d)``."""
        if self.interaction == "lightgcn":
            return self.split(self.propagate(x0, self.keep_rate if self.training else 1.0))
        users, items = self.split(x0)
        out = self.ui_gat({"user": users, "item": items}, {("user", "ui", "item"): self.edges_ui,
                                                           ("item", "iu", "user"): self.edges_iu})
        users, items = users + out.get("user", 0), items + out.get("item", 0)
        if self.layer_agg == "mean":
            users, items = users / (self.layers + 1), items / (self.layers + 1)
        return users, items

    def views(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Users, items' final representations, their interaction view and their attribute view."""
        users0, items0 = self.split(x0)
        attr = self.attr_view(items0)
        if self.attr_fusion == "input":  # items enter the interaction graph with their attributes
            users, items = self.interaction_view(torch.cat([users0, items0 + attr]))
            return users, items, items, attr
        users, items = self.interaction_view(x0)
        return users, items + attr, items, attr

    def encode(self, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        users, items, _, _ = self.views(self.input_embeddings() if x0 is None else x0)
        return users, items

    def forward_train(self, x0: torch.Tensor | None = None, batch: PairBatch | None = None) -> GraphOutput:
        x0 = self.input_embeddings() if x0 is None else x0
        users, items, interaction, attr = self.views(x0)
        return GraphOutput(users, items, x0=x0, extras={"interaction": interaction, "attribute": attr})

    def view_contrast(self, out: GraphOutput, items: torch.Tensor) -> torch.Tensor:
        """InfoNCE between the attribute and interaction views of ``items`` (those with attributes),
        averaged over them, repeats included."""
        items = items[self.has_attributes[items]]
        if not items.numel():
            return out.items.new_zeros(())
        total = view_contrast(out.extras["attribute"], out.extras["interaction"], items,
                              temperature=self.temperature, negatives=self.cl_negatives)
        return total / items.numel()

    def loss(self, batch: PairBatch, out: GraphOutput | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = out if out is not None else self.forward_train(None, batch)
        rec = self.bpr(out, batch)
        reg = self.reg_weight * l2_of_parameters(self)
        terms = {"bpr": rec, "reg": reg}
        total = rec + reg
        if self.cl_weight > 0:
            items = torch.unique(batch.pos)
            if self.cl_items and items.numel() > self.cl_items:
                items = items[torch.randperm(items.numel(), device=items.device)[: self.cl_items]]
            cl = self.cl_weight * self.view_contrast(out, items)
            terms["cl"] = cl
            total = total + cl
        return total, terms
