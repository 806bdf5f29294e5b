"""Item attributes as data: the item–attribute graph's edges, typed by relation.

One format on disk, ``item_attributes.jsonl`` in a dataset folder (``data/prepare.py`` writes it
from the source's metadata; docs/data.md), one line per item that has attributes::

    {"iid": 0, "attributes": {"brand": ["OPI"], "category": ["Makeup", "Nails"]}}

Relations (``brand``, ``category``, ``genre``, ``price``, ``attribute`` for S3-Rec's unnamed ids,
``kg_<relation>`` for knowledge-graph facts) type the edges; an attribute is a (relation, name)
pair, so the same name under two relations is two nodes. Items absent from the file have no
attributes (they stay in the graph, isolated). An S3-Rec sequence file's
``<name>_item2attributes.json`` (item ids from 1) is read directly as relation ``attribute``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semrec.common.io import DataError, int_cell, is_int, json_lines, parse_json, read_text

ATTRIBUTE_FILE = "item_attributes.jsonl"
#: attribute-coverage buckets of items: number of attributes -> label (used by the benchmarks)
COVERAGE_BUCKETS = ((0, 0, "0"), (1, 2, "1-2"), (3, None, "3+"))


@dataclass
class ItemAttributes:
    """The item–attribute edges of a dataset.

    Attributes:
        num_items: items of the dataset (ids ``0..num_items-1``).
        relations: relation names; ``edge_relation`` indexes them.
        names: ``"relation:name"`` of each attribute node; ``edge_attribute`` indexes them.
        edge_item, edge_attribute, edge_relation: one entry per (item, attribute) edge, int64.
    """

    num_items: int
    relations: list[str]
    names: list[str]
    edge_item: np.ndarray
    edge_attribute: np.ndarray
    edge_relation: np.ndarray

    @property
    def num_attributes(self) -> int:
        return len(self.names)

    @property
    def num_edges(self) -> int:
        return len(self.edge_item)

    def per_item(self) -> np.ndarray:
        """Number of attributes of each item, ``(num_items,)``."""
        return np.bincount(self.edge_item, minlength=self.num_items)

    def coverage(self) -> np.ndarray:
        """Each item's coverage bucket label (:data:`COVERAGE_BUCKETS`)."""
        n = self.per_item()
        out = np.empty(self.num_items, dtype=object)
        for lo, hi, label in COVERAGE_BUCKETS:
            out[(n >= lo) & (n <= (hi if hi is not None else n.max(initial=0)))] = label
        return out

    def prune(self, min_items: int) -> "ItemAttributes":
        """Without the attributes held by fewer than ``min_items`` items (a knowledge graph's
        one-film actors say nothing that the item's own embedding cannot), renumbered."""
        if min_items <= 1:
            return self
        counts = np.bincount(self.edge_attribute, minlength=self.num_attributes)
        keep_attr = counts >= min_items
        new_id = np.cumsum(keep_attr) - 1
        keep = keep_attr[self.edge_attribute]
        return ItemAttributes(self.num_items, self.relations, [n for n, k in zip(self.names, keep_attr) if k],
                              self.edge_item[keep], new_id[self.edge_attribute[keep]], self.edge_relation[keep])

    def summary(self) -> dict:
        per_rel = np.bincount(self.edge_relation, minlength=len(self.relations))
        return {"attributes": self.num_attributes, "edges": self.num_edges,
                "items_with_attributes": int((self.per_item() > 0).sum()), "items": self.num_items,
                "edges_per_relation": dict(zip(self.relations, per_rel.tolist()))}


def from_lists(num_items: int, per_item: dict[int, dict[str, list[str]]], where: str = "") -> ItemAttributes:
    """Build :class:`ItemAttributes` from ``{iid: {relation: [name, ...]}}``."""
    relations = sorted({rel for attrs in per_item.values() for rel in attrs})
    rel_id = {r: k for k, r in enumerate(relations)}
    node: dict[tuple[str, str], int] = {}
    items, attrs, rels = [], [], []
    for iid in sorted(per_item):
        if not 0 <= iid < num_items:
            raise DataError(f"{where}: item {iid} is outside the dataset's {num_items} items")
        for rel, names in per_item[iid].items():
            for name in dict.fromkeys(names):  # a repeated name is one edge
                key = (rel, name)
                if key not in node:
                    node[key] = len(node)
                items.append(iid)
                attrs.append(node[key])
                rels.append(rel_id[rel])
    names = [f"{r}:{n}" for r, n in node]
    as_int = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return ItemAttributes(num_items, relations, names, as_int(items), as_int(attrs), as_int(rels))


def read_item_attributes(path: str | Path, num_items: int) -> ItemAttributes:
    """Read ``item_attributes.jsonl`` (module docstring); DataError naming the line otherwise."""
    path = Path(path)
    per_item: dict[int, dict[str, list[str]]] = {}
    for no, row in json_lines(path):
        iid, attrs = row.get("iid"), row.get("attributes")
        if not is_int(iid) or not isinstance(attrs, dict) or not all(
                isinstance(r, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
                for r, v in attrs.items()):
            raise DataError(f'{path}:{no}: expected {{"iid": int, "attributes": {{relation: [name, ...]}}}}')
        if not 0 <= iid < num_items:
            raise DataError(f"{path}:{no}: item {iid} is outside the dataset's items 0..{num_items - 1}")
        if iid in per_item:
            raise DataError(f"{path}:{no}: item {iid} is listed twice")
        per_item[iid] = attrs
    return from_lists(num_items, per_item, str(path))


def read_s3rec_attributes(path: str | Path, num_items: int) -> ItemAttributes:
    """S3-Rec's ``<name>_item2attributes.json`` (``{item id from 1: [attribute id, ...]}``) as
    relation ``attribute``."""
    path = Path(path)
    raw = parse_json(read_text(path), str(path))
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected {{item id: [attribute id, ...]}}")
    per_item = {}
    for key, ids in raw.items():
        item = int_cell(str(key))
        if item is None or not isinstance(ids, list) or not all(is_int(a) or isinstance(a, str) for a in ids):
            raise DataError(f"{path}: entry {key!r}: expected an item id and a list of attribute ids")
        if not 1 <= item <= num_items:
            raise DataError(f"{path}: entry {key!r}: item ids run from 1 to {num_items} (S3-Rec numbers items "
                            "from 1)")
        per_item[item - 1] = {"attribute": [str(a) for a in ids]}
    return from_lists(num_items, per_item, str(path))
