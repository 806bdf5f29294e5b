"""Graph-attention layers that both model families use: the attribute view of items.

PyTorch Geometric's ``GATConv`` in ``HeteroConv`` over typed bipartite relations (Veličković et al.,
"Graph Attention Networks", ICLR 2018, https://arxiv.org/abs/1710.10903). The graph model ``gat``
(:mod:`semrec.encoder.models.graph.gat`) propagates items with them; the sequential models fuse
an item table with its items' attribute view (:class:`GraphItemFusion`, LLM-ESR-Pro's
attribute-aware item embeddings; :mod:`semrec.encoder.models.sequential.item_table`).
"""
from __future__ import annotations

import torch
from torch import nn

from semrec.encoder.attributes import ItemAttributes

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

        from semrec.common.extras import require

        pyg = require("torch_geometric.nn", "graph", "the GAT layers (gat, model.item_graph)")  # here: PyG loads slowly
        GATConv, HeteroConv = pyg.GATConv, pyg.HeteroConv

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
