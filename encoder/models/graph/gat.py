"""GAT over users, items and item attributes: Veličković et al., "Graph Attention Networks",
ICLR 2018 (https://arxiv.org/abs/1710.10903), on the heterogeneous user–item–attribute graph,
as LLM-ESR-Pro uses it to bring item structure (brand, category, genre, knowledge-graph
facts) into item representations.

Two views of every item:

* **Interaction view**: the user–item graph, propagated as in LightGCN with semrec's sparse
  matrices (``interaction="lightgcn"``, the default), or with multi-head GAT layers over the
  user→item and item→user relations (``interaction="gat"``). The fixed normalised propagation
  stays the default because attention over every user–item edge costs far more per step (issue 20
  puts PyG's edge-list LightGCN at about 10x slower on CPU; not re-measured here).
* **Attribute view**: multi-head GAT layers (PyTorch Geometric's ``GATConv`` in ``HeteroConv``)
  over the item→attribute and attribute→item edges, typed by a relation embedding in each
  edge's attention score. An item's attribute view is the sum of what its layers bring in
  (without its own ID embedding), so an item without attributes has a zero attribute view.

Items enter the interaction graph as their ID embedding plus their attribute view
(``attr_fusion="input"``), so users' representations carry their items' attributes too; or the
two views are added after propagation (``"output"``). The training loss is BPR + L2 +
``cl_weight`` × InfoNCE between the two views of the batch's distinct positive items that have
attributes (at most ``cl_items`` of them, drawn at random; cosine, ``temperature``; candidates:
those items' interaction views, or every item's). On MovieLens-100K's validation split the
contrast lowered Recall@20 at every weight tried (0.01, 0.1; docs/benchmarks.md), so its default
weight is 0. The layers are linear (no activation between them), as in LightGCN: ID embeddings
need no feature transform.

:class:`AttributeGAT` (the attribute view alone) and :class:`GraphItemFusion` (its item vectors
fused with another item table) are the pieces the sequential models reuse.
"""
from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import nn

from semrec.encoder.attributes import ItemAttributes
from semrec.encoder.hparams import DropoutRate, KeepRate, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, choice
from semrec.encoder.losses import l2_of_parameters
from semrec.encoder.models.graph.base import GraphOutput
from semrec.encoder.models.graph.lightgcn import LightGCN
from semrec.encoder.models.graph.ssl import NEGATIVES, view_contrast
from semrec.encoder.registry import register
from semrec.encoder.sampling import PairBatch

INTERACTIONS = ("lightgcn", "gat")
ATTR_FUSIONS = ("output", "input")
FUSIONS = ("concat", "gate")


class HeteroGAT(nn.Module):
    """Multi-head GAT layers over bipartite relations between node types, summed over layers.

    Args:
        relations: ``(source type, relation, destination type)`` triples; each gets its own
            ``GATConv`` per layer (heads averaged, no bias, no self-loops: the graph is bipartite).
        dim: node width (in and out).
        layers, heads: GAT layers and attention heads.
        dropout: dropout on the attention coefficients.
        edge_dim: width of per-edge features that enter the attention (0: none).
        last_targets: node types the last layer must produce (relations into other types are
            skipped there: nothing would read them).
    """

    def __init__(self, relations: list[tuple[str, str, str]], dim: int, layers: int, heads: int, dropout: float,
                 last_targets: tuple[str, ...], edge_dim: int = 0):
        super().__init__()
        import warnings

        from torch_geometric.nn import GATConv, HeteroConv  # here, not at import: PyG takes seconds to load

        def conv():
            return GATConv((dim, dim), dim, heads=heads, concat=False, dropout=dropout, add_self_loops=False,
                           bias=False, edge_dim=edge_dim or None)

        self.layers = nn.ModuleList()
        for layer in range(layers):
            rels = [r for r in relations if layer < layers - 1 or r[2] in last_targets]
            with warnings.catch_warnings():  # a type that is only a source in the last layer is intended
                warnings.filterwarnings("ignore", message="There exist node types")
                self.layers.append(HeteroConv({r: conv() for r in rels}, aggr="sum"))

    def forward(self, x: dict[str, torch.Tensor], edges: dict[tuple[str, str, str], torch.Tensor],
                edge_attr: dict[tuple[str, str, str], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The sum over layers ``1..L`` of each node type's output (layer 0, ``x``, not included)."""
        total: dict[str, torch.Tensor] = {}
        for conv in self.layers:
            out = conv(x, edges, **({"edge_attr_dict": edge_attr} if edge_attr else {}))
            for kind, h in out.items():
                total[kind] = total[kind] + h if kind in total else h
            x = {**x, **out}
        return total


class AttributeGAT(nn.Module):
    """The attribute view: item vectors from the items' attributes, through GAT layers over the
    item→attribute and attribute→item edges. Owns the attribute embeddings.

    Relations are typed by a learned embedding per relation that enters each edge's attention
    score (``GATConv``'s edge features), so that a brand and a category weigh differently, with
    one convolution per direction: one ``GATConv`` per relation, as ``HeteroConv`` would have it,
    costs a message-passing pass per relation (a knowledge graph has dozens) for the same edges.

    Args:
        attributes: the item–attribute edges.
        dim, layers, heads, dropout: as :class:`HeteroGAT`.

    Shapes: ``forward(items)`` maps ``(I, dim)`` item vectors to ``(I, dim)``; items without
    attributes get zeros.
    """

    RELATIONS = [("item", "has", "attribute"), ("attribute", "describes", "item")]
    REL_DIM = 8

    def __init__(self, attributes: ItemAttributes, dim: int, layers: int = 1, heads: int = 2, dropout: float = 0.1):
        super().__init__()
        self.num_items = attributes.num_items
        self.attr_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(max(attributes.num_attributes, 1), dim)))
        # a small embedding per relation is enough to shift attention scores; one relation needs none
        typed = len(attributes.relations) > 1
        self.rel_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(len(attributes.relations), self.REL_DIM))) \
            if typed else None
        edge = torch.stack([torch.from_numpy(attributes.edge_item), torch.from_numpy(attributes.edge_attribute)])
        self.register_buffer("edges", edge, persistent=False)
        self.register_buffer("edge_relation", torch.from_numpy(attributes.edge_relation), persistent=False)
        self.gat = HeteroGAT(self.RELATIONS, dim, layers, heads, dropout, last_targets=("item",),
                             edge_dim=self.REL_DIM if typed else 0) if attributes.num_edges else None

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        if self.gat is None:
            return torch.zeros_like(items)
        typed = None
        if self.rel_emb is not None:
            rel = self.rel_emb[self.edge_relation]
            typed = {self.RELATIONS[0]: rel, self.RELATIONS[1]: rel}
        out = self.gat({"item": items, "attribute": self.attr_emb},
                       {self.RELATIONS[0]: self.edges, self.RELATIONS[1]: self.edges.flip(0)}, typed)
        return out["item"]


class GraphItemFusion(nn.Module):
    """Another item table fused with the attribute view of its items (LLM-ESR-Pro's
    attribute-aware item embeddings).

    ``concat``: ``W [e; g]`` (a linear map of both); ``gate``: ``σ(W [e; g]) ⊙ e + (1 - σ(...)) ⊙ g``,
    where ``e`` is the given table and ``g`` :class:`AttributeGAT` of it.
    """

    def __init__(self, attributes: ItemAttributes, dim: int, mode: str = "gate", layers: int = 1, heads: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"graph fusion must be one of {', '.join(FUSIONS)}, got {mode!r}")
        self.mode = mode
        self.graph = AttributeGAT(attributes, dim, layers=layers, heads=heads, dropout=dropout)
        self.mix = nn.Linear(2 * dim, dim)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        g = self.graph(items)
        both = torch.cat([items, g], dim=-1)
        if self.mode == "concat":
            return self.mix(both)
        gate = torch.sigmoid(self.mix(both))
        return gate * items + (1 - gate) * g


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
            from semrec.encoder.io import DataError

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

    def forward_train(self, x0: torch.Tensor | None = None) -> GraphOutput:
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
        out = out if out is not None else self.forward_train()
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
