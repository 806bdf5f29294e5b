"""Readers from raw public data to one in-memory form, :class:`RawInteractions`.

Each reader takes the path the user gave (a file or a folder) and returns every
interaction with its user, item, rating, timestamp and review text where the source has
them, plus item and user metadata keyed by raw id. A malformed line is an error that names
the file and the line number.

Sources: RecBole atomic files, Amazon reviews (2014/2018 and 2023 JSON lines, gzipped or
not) with metadata, the Yelp Open Dataset, S3-Rec sequence files with ``item2attributes``
and an optional item-text JSON.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from semrec.common.io import int_cell, parse_json, read_text, text_lines
from semrec.common.io import json_lines as _json_lines


class PrepareError(ValueError):
    """Raw data cannot be converted; the message names the file (and line)."""


@dataclass
class RawInteractions:
    """Interactions in source order, with optional per-interaction fields.

    Attributes:
        users, items: raw ids (str), one per interaction.
        ratings: float per interaction, NaN where the source has none.
        times: float per interaction (seconds, or the position in a sequence), NaN if none.
        reviews: review text per interaction, or ``None`` for sources without reviews.
        item_meta, user_meta: raw id -> dict of metadata fields.
        time_kind: what ``times`` holds: ``"unix"``, ``"position"`` or ``"none"``.
    """

    users: list[str]
    items: list[str]
    ratings: np.ndarray
    times: np.ndarray
    reviews: list[str] | None = None
    item_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    time_kind: str = "none"


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-empty line; a bad line raises PrepareError."""
    return _json_lines(path, PrepareError)


def _float(value: Any, path: Path, no: int, what: str) -> float:
    if value is None or value == "":
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PrepareError(f"{path}:{no}: {what} {value!r} is not a number") from None


def _require(obj: dict, keys: tuple[str, ...], path: Path, no: int) -> list[Any]:
    missing = [k for k in keys if obj.get(k) in (None, "")]
    if missing:
        raise PrepareError(f"{path}:{no}: missing field(s) {', '.join(missing)}")
    return [obj[k] for k in keys]


def _find(folder: Path, patterns: tuple[str, ...], what: str, required: bool = True) -> Path | None:
    for pat in patterns:
        hits = sorted(folder.glob(pat))
        if hits:
            return hits[0]
    if required:
        raise PrepareError(f"{folder}: no {what} file (looked for {', '.join(patterns)})")
    return None


# ---------------------------------------------------------------- RecBole atomic files
def _atomic(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    lines = text_lines(path, PrepareError)
    _, first = next(lines, (1, ""))
    header = first.split("\t")
    if len(header) == 1 and any(sep in first for sep in ",;|"):
        raise PrepareError(f"{path}: the header {first.strip()[:80]!r} is not tab-separated, so this is not a RecBole "
                           "atomic file; for a CSV, name its columns: prepare.py csv PATH --user COLUMN --item COLUMN "
                           "[--time COLUMN] [--rating COLUMN]")
    names = [h.split(":")[0] for h in header]
    for no, line in lines:
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(names):
            raise PrepareError(f"{path}:{no}: expected {len(names)} tab-separated fields "
                               f"({', '.join(header)}), got {len(cells)}")
        yield no, dict(zip(names, cells))


def read_recbole(path: Path) -> RawInteractions:
    """RecBole atomic files: ``<name>.inter`` plus optional ``.item`` / ``.user`` beside it."""
    inter = path if path.is_file() else _find(path, ("*.inter",), "RecBole .inter")
    users, items, ratings, times = [], [], [], []
    for no, row in _atomic(inter):
        u, i = _require(row, ("user_id", "item_id"), inter, no)
        users.append(u)
        items.append(i)
        ratings.append(_float(row.get("rating"), inter, no, "rating"))
        times.append(_float(row.get("timestamp"), inter, no, "timestamp"))
    raw = RawInteractions(users, items, np.asarray(ratings), np.asarray(times),
                          time_kind="unix" if not np.isnan(times).all() else "none")
    for kind, key in (("item", "item_id"), ("user", "user_id")):
        side = inter.with_suffix(f".{kind}")
        if side.exists():
            meta = {row[key]: {k: v for k, v in row.items() if k != key} for _, row in _atomic(side)}
            setattr(raw, f"{kind}_meta", meta)
    kg, link = inter.with_suffix(".kg"), inter.with_suffix(".link")
    if kg.exists() and link.exists():
        for item, facts in _kg_facts(kg, link).items():
            raw.item_meta.setdefault(item, {})["kg"] = facts
    return raw


def _kg_facts(kg: Path, link: Path) -> dict[str, list[list[str]]]:
    """Knowledge-graph facts about items, ``item_id -> [[relation, entity], ...]``, from RecBole's
    ``.kg`` (``head_id, relation_id, tail_id``) and ``.link`` (``item_id, entity_id``) files.

    Only triples whose head is an item count (the KG lists most facts both ways: ``film.film.actor``
    and ``film.actor.film``; the second has a person as head). A relation is named by its last
    dotted part (``film.film.directed_by`` -> ``directed_by``)."""
    entity_item: dict[str, str] = {}
    for no, row in _atomic(link):
        item, entity = _require(row, ("item_id", "entity_id"), link, no)
        entity_item[entity] = item
    facts: dict[str, list[list[str]]] = {}
    for no, row in _atomic(kg):
        head, rel, tail = _require(row, ("head_id", "relation_id", "tail_id"), kg, no)
        if head in entity_item:
            facts.setdefault(entity_item[head], []).append([rel.rsplit(".", 1)[-1], tail])
    return facts


def name_attribute_ids(meta: dict[str, dict[str, Any]], min_overlap: float = 0.9) -> dict[str, str]:
    """Name S3-Rec attribute ids by the category they stand for, where the item texts say it.

    An id's name is the category whose items are the id's items: the one with the largest Jaccard
    overlap between the two item sets, used when that overlap is at least ``min_overlap``
    (categories from ``categories`` or, as in GAMER's Yelp texts, a comma-separated
    ``description``). S3-Rec's Yelp ids decode this way; ids with no matching category (Beauty's
    brands) stay ids. The names go to ``attribute_names`` beside the ids (which stay as the source
    has them); :func:`item_attributes` reads them. Returns ``{id: name}``.
    """
    def categories(m: dict) -> set[str]:
        if m.get("categories"):
            return set(_names(m["categories"]))
        return set(_names(m["description"])) if isinstance(m.get("description"), str) else set()

    cat_items: dict[str, int] = {}
    holders: dict[str, list[set[str]]] = {}
    for m in meta.values():
        cats = categories(m)
        for c in cats:
            cat_items[c] = cat_items.get(c, 0) + 1
        for a in m.get("attributes") or []:
            holders.setdefault(str(a), []).append(cats)
    names: dict[str, str] = {}
    for a, cat_sets in holders.items():
        shared: dict[str, int] = {}
        for cats in cat_sets:
            for c in cats:
                shared[c] = shared.get(c, 0) + 1
        jaccard = {c: n / (len(cat_sets) + cat_items[c] - n) for c, n in shared.items()}
        if jaccard:
            best = max(sorted(jaccard), key=jaccard.get)
            if jaccard[best] >= min_overlap:
                names[a] = best
    for m in meta.values():
        if m.get("attributes") and names:
            m["attribute_names"] = [names.get(str(a), str(a)) for a in m["attributes"]]
    return names


# ---------------------------------------------------------------- item attributes
#: metadata field -> relation of the attributes it gives (``kg`` facts name their own relations)
ATTRIBUTE_FIELDS = {"attributes": "attribute", "categories": "category", "category": "category", "brand": "brand",
                    "store": "brand", "price": "price", "class": "genre", "genres": "genre", "kg": None}
#: upper bounds of the price buckets (the last bucket is open)
PRICE_BUCKETS = (5, 10, 25, 50, 100)


def _price_bucket(value: Any) -> str | None:
    if isinstance(value, (int, float)):
        price = float(value)
    else:
        digits = "".join(c if c.isdigit() or c == "." else " " for c in str(value)).split()
        try:
            price = float(digits[0])
        except (IndexError, ValueError):
            return None
    for i, top in enumerate(PRICE_BUCKETS):
        if price < top:
            return f"{PRICE_BUCKETS[i - 1] if i else 0}-{top}"
    return f"{PRICE_BUCKETS[-1]}+"


def _names(value: Any) -> list[str]:
    """Attribute names in a metadata value: a string (comma-separated), a list, a list of
    category paths (every level), or a dict (``key=value`` pairs)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items() if v not in (None, "")]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in (_names(v) if isinstance(v, (list, tuple, dict)) else [str(v).strip()]) if n]
    return [str(value)]


def item_attributes(meta: dict[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """An item's attributes by relation, ``{"category": [...], "brand": [...], ...}``, from its metadata.

    Args:
        meta: the item's metadata as a reader gives it.
        fields: the metadata fields to read (default: every field of :data:`ATTRIBUTE_FIELDS`).
            Which field gives which relation: ``attributes`` (S3-Rec's attribute ids, or their
            names where :func:`name_attribute_ids` found them) -> ``attribute``;
            ``categories`` / ``category`` (strings, comma lists or category paths: every level)
            -> ``category``; ``brand`` / ``store`` -> ``brand``; ``price`` -> ``price`` (a bucket,
            ``0-5`` ... ``100+``); ``class`` / ``genres`` (MovieLens genres) -> ``genre``; ``kg``
            (``[relation, entity]`` facts) -> one relation per KG relation, ``kg_<relation>``.
    """
    out: dict[str, list[str]] = {}
    for fld in fields if fields is not None else ATTRIBUTE_FIELDS:
        value = meta.get(fld)
        if value in (None, "", [], {}):
            continue
        if fld == "attributes" and meta.get("attribute_names"):  # ids named by name_attribute_ids
            pairs = [("attribute", str(n)) for n in meta["attribute_names"]]
        elif fld == "kg":
            pairs = [(f"kg_{rel}", str(ent)) for rel, ent in value]
        elif fld == "price":
            bucket = _price_bucket(value)
            pairs = [("price", bucket)] if bucket else []
        elif fld in ("class", "genres") and isinstance(value, str) and "," not in value:
            pairs = [("genre", g) for g in value.split()]  # RecBole's genres are space-separated tokens
        else:
            pairs = [(ATTRIBUTE_FIELDS[fld], n) for n in _names(value)]
        for rel, name in pairs:
            names = out.setdefault(rel, [])
            if name not in names:
                names.append(name)
    return out


# ---------------------------------------------------------------- Amazon reviews
def _amazon_meta(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    keep = ("title", "brand", "store", "main_category", "category", "categories", "description",
            "feature", "features", "price", "details")
    meta = {}
    for no, obj in json_lines(path):
        iid = obj.get("parent_asin") or obj.get("asin")
        if iid in wanted:
            meta[iid] = {k: obj[k] for k in keep if obj.get(k) not in (None, "", [], {})}
    return meta


def read_amazon(path: Path, meta: Path | None = None) -> RawInteractions:
    """Amazon reviews, 2014/2018 (``reviewerID, asin, overall, unixReviewTime, reviewText``)
    or 2023 (``user_id, parent_asin, rating, timestamp`` in ms, ``text``), gzipped or not.
    A folder is searched for the reviews file and a ``meta_*`` file beside it."""
    if path.is_dir():
        reviews = _find(path, ("*_5.json.gz", "*_5.json", "*.jsonl.gz", "*.jsonl", "[!m]*.json.gz", "[!m]*.json"),
                        "Amazon reviews")
        meta = meta or _find(path, ("meta_*.json*",), "Amazon metadata", required=False)
    else:
        reviews = path
    users, items, ratings, times, texts = [], [], [], [], []
    for no, obj in json_lines(reviews):
        if "reviewerID" in obj:  # 2014 / 2018
            u, i = _require(obj, ("reviewerID", "asin"), reviews, no)
            r, t = obj.get("overall"), _float(obj.get("unixReviewTime"), reviews, no, "unixReviewTime")
            text = " ".join(s for s in (obj.get("summary"), obj.get("reviewText")) if s)
        else:  # 2023
            u = _require(obj, ("user_id",), reviews, no)[0]
            i = obj.get("parent_asin") or _require(obj, ("asin",), reviews, no)[0]
            r, t = obj.get("rating"), _float(obj.get("timestamp"), reviews, no, "timestamp") / 1000.0
            text = " ".join(s for s in (obj.get("title"), obj.get("text")) if s)
        users.append(str(u))
        items.append(str(i))
        ratings.append(_float(r, reviews, no, "rating"))
        times.append(t)
        texts.append(text)
    raw = RawInteractions(users, items, np.asarray(ratings), np.asarray(times), texts, time_kind="unix")
    if meta is not None:
        raw.item_meta = _amazon_meta(Path(meta), set(items))
    return raw


# ---------------------------------------------------------------- Yelp Open Dataset
def _yelp_time(value: str, path: Path, no: int) -> float:
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        raise PrepareError(f"{path}:{no}: date {value!r} is not YYYY-MM-DD HH:MM:SS") from None


def read_yelp(path: Path) -> RawInteractions:
    """The Yelp Open Dataset folder: ``*review.json`` (+ ``*business.json``, ``*user.json``)."""
    folder = path if path.is_dir() else path.parent
    reviews = path if path.is_file() else _find(folder, ("*review.json", "*review.json.gz"), "Yelp review")
    users, items, ratings, times, texts = [], [], [], [], []
    for no, obj in json_lines(reviews):
        u, i, d = _require(obj, ("user_id", "business_id", "date"), reviews, no)
        users.append(u)
        items.append(i)
        ratings.append(_float(obj.get("stars"), reviews, no, "stars"))
        times.append(_yelp_time(d, reviews, no))
        texts.append(obj.get("text") or "")
    raw = RawInteractions(users, items, np.asarray(ratings), np.asarray(times), texts, time_kind="unix")
    wanted_i, wanted_u = set(items), set(users)
    business = _find(folder, ("*business.json", "*business.json.gz"), "Yelp business", required=False)
    if business:
        keep = ("name", "city", "state", "categories", "stars", "review_count", "attributes")
        raw.item_meta = {o["business_id"]: {k: o[k] for k in keep if o.get(k) not in (None, "")}
                         for _, o in json_lines(business) if o.get("business_id") in wanted_i}
    user_file = _find(folder, ("*user.json", "*user.json.gz"), "Yelp user", required=False)
    if user_file:
        keep = ("review_count", "yelping_since", "average_stars")
        raw.user_meta = {o["user_id"]: {k: o[k] for k in keep if o.get(k) not in (None, "")}
                         for _, o in json_lines(user_file) if o.get("user_id") in wanted_u}
    return raw


# ---------------------------------------------------------------- S3-Rec sequences
def read_s3rec(path: Path, item_text: Path | None = None, item_text_offset: int = 1) -> RawInteractions:
    """S3-Rec ``<name>.txt`` (``user item item ...`` in time order) with ``<name>_item2attributes.json``.

    Args:
        item_text: optional JSON ``{key: {"title", "description"}}``; its entry ``key`` describes
            item ``key + item_text_offset`` (GAMER's Yelp texts: offset 1).

    Raises:
        PrepareError: a malformed line (ids are ASCII digits), a user on two lines (named with
            both: an S3-Rec file holds one time-ordered line per user), or a malformed JSON file.
    """
    seq_file = path if path.is_file() else _find(path, ("*.txt",), "S3-Rec sequence")
    users, items, times = [], [], []
    line_of: dict[str, int] = {}
    for no, line in text_lines(seq_file, PrepareError):
        cells = line.split()
        if not cells:
            continue
        if len(cells) < 2 or not all(int_cell(c) is not None for c in cells):
            raise PrepareError(f"{seq_file}:{no}: expected 'user item item ...' with integer ids (ASCII digits)")
        u = str(int(cells[0]))
        if u in line_of:
            raise PrepareError(f"{seq_file}:{no}: user {u} already has a sequence on line {line_of[u]}; an S3-Rec "
                               "file holds one line per user (join the two in time order)")
        line_of[u] = no
        users.extend([u] * (len(cells) - 1))
        items.extend(str(int(c)) for c in cells[1:])
        times.extend(range(len(cells) - 1))
    raw = RawInteractions(users, items, np.full(len(users), np.nan), np.asarray(times, dtype=float),
                          time_kind="position")
    attr_file = seq_file.with_name(seq_file.stem + "_item2attributes.json")
    meta: dict[str, dict[str, Any]] = {}
    if attr_file.exists():
        attrs = parse_json(read_text(attr_file, PrepareError), str(attr_file), PrepareError)
        if not isinstance(attrs, dict):
            raise PrepareError(f"{attr_file}: expected {{item id: [attribute id, ...]}}")
        for iid, a in attrs.items():
            if int_cell(iid) is None or not isinstance(a, list) or not all(isinstance(x, (int, str)) for x in a):
                raise PrepareError(f"{attr_file}: entry {iid!r}: expected an item id and a list of attribute ids")
            meta.setdefault(str(int(iid)), {})["attributes"] = a
    if item_text is not None:
        for key, entry in read_item_text(Path(item_text)).items():
            meta.setdefault(str(key + item_text_offset), {}).update(entry)
        name_attribute_ids(meta)
    raw.item_meta = meta
    return raw


#: item-text fields read as text: a string (or null) each
TEXT_FIELDS = ("title", "description", "brand", "name")


def _plain(value: Any, depth: int = 0) -> bool:
    """A JSON value metadata may hold: a scalar, or a list of them (category paths: lists of lists)."""
    if value is None or isinstance(value, (str, int, float)):
        return True
    return isinstance(value, list) and depth < 2 and all(_plain(v, depth + 1) for v in value)


def read_item_text(path: Path) -> dict[int, dict[str, Any]]:
    """An item-text JSON, ``{"<integer key>": {"title": str, "description": str, ...}}``, checked:
    keys are integers, entries are objects, text fields are strings, other fields scalars or lists
    of them (nothing that would turn into profile text by accident).

    Raises:
        PrepareError: naming the file, and the entry and field where one is at fault.
    """
    texts = parse_json(read_text(path, PrepareError), str(path), PrepareError)
    if not isinstance(texts, dict):
        raise PrepareError(f"{path}: expected a JSON object {{item key: {{\"title\": ..., ...}}}}, got a "
                           f"{type(texts).__name__}")
    out = {}
    for key, entry in texts.items():
        k = int_cell(key)
        if k is None:
            raise PrepareError(f"{path}: key {key!r} is not an integer item key")
        if not isinstance(entry, dict):
            raise PrepareError(f"{path}: entry {key!r} is a {type(entry).__name__}, not an object of fields")
        for field_name, value in entry.items():
            if field_name in TEXT_FIELDS and not (value is None or isinstance(value, str)):
                raise PrepareError(f"{path}: entry {key!r}: {field_name} must be a string, got "
                                   f"{type(value).__name__}")
            if not _plain(value):
                raise PrepareError(f"{path}: entry {key!r}: field {field_name!r} must be text, a number or a list "
                                   "of them")
        out[k] = entry
    return out
