"""Convert raw public data into a semrec dataset folder (RLMRec's layout and more).

    python data/prepare.py recbole ../shared/data/ml-100k --name ml100k
    python data/prepare.py s3rec ../shared/data/s3rec/Yelp.txt --name yelp_seq \\
        --item-text ../shared/data/gamer_yelp_text/Yelp.item.json --item-text-offset 1
    python data/prepare.py amazon ../shared/data/amazon2018_gift_cards --name gift_cards --kcore 5
    python data/prepare.py yelp ~/yelp_dataset --name yelp_open --min-rating 4 --kcore 10
    python data/prepare.py rlmrec ../shared/data/rlmrec_yelp --name yelp
    python data/prepare.py csv ratings.csv.gz --name mine --user userId --item movieId --time timestamp \
        --rating rating --item-text title,genres --split leave-one-out
    python data/prepare.py parquet events.parquet --name mine --user uid --item sku --time ts

From Python, a pandas or polars DataFrame: ``semrec.data.prepare.from_dataframe(df, "mine",
user="userId", item="movieId", ...)`` (the same options as keyword arguments).

Pipeline (every filter is off unless asked for, so a plain conversion keeps every
interaction): minimum rating -> deduplication -> uniform user sampling -> iterative
k-core -> id mapping -> split -> checks -> files. The split works on distinct
(user, item) pairs (the matrices are binary); a pair's time is its first interaction.
See docs/data.md for every output file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from semrec.common.io import atomic_write, check_name, write_json

if __package__ in (None, ""):  # run as a script: import the installed package
    from semrec.data.readers import (ATTRIBUTE_FIELDS, PrepareError, RawInteractions, item_attributes, read_amazon,
                                     read_recbole, read_s3rec, read_yelp)
else:
    from .readers import (ATTRIBUTE_FIELDS, PrepareError, RawInteractions, item_attributes, read_amazon, read_recbole,
                          read_s3rec, read_yelp)

from semrec.data.tables import read_csv, read_parquet  # noqa: E402

KINDS = ("recbole", "amazon", "yelp", "s3rec", "rlmrec", "csv", "parquet")
TABLES = ("csv", "parquet")
SPLITS = ("random", "time", "leave-one-out")
MATRICES = ("trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl")


# ----------------------------------------------------------------------------- filtering
def _ids(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids -> (sorted unique raw ids, index per value). Integer-like ids sort numerically."""
    uniq, inv = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    if all(u.isdigit() for u in uniq):
        order = np.argsort(uniq.astype(np.int64), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return uniq[order], rank[inv]
    return uniq, inv


def kcore(u: np.ndarray, i: np.ndarray, user_k: int, item_k: int) -> np.ndarray:
    """Mask of the rows of distinct (u, i) pairs that survive iterative user/item k-core filtering."""
    keep = np.ones(len(u), dtype=bool)
    while True:
        uc = np.bincount(u[keep], minlength=u.max() + 1)
        ic = np.bincount(i[keep], minlength=i.max() + 1)
        bad = keep & ((uc[u] < user_k) | (ic[i] < item_k))
        if not bad.any():
            return keep
        keep &= ~bad


def split_pairs(u: np.ndarray, t: np.ndarray, how: str, ratios: tuple[float, float, float],
                rng: np.random.Generator) -> np.ndarray:
    """Split label per distinct pair: 0 train, 1 valid, 2 test.

    ``random``: per user, shuffled, ``ratios`` of each user's pairs (at least one in train);
    ``time``: global time cut-offs at the ``ratios`` quantiles;
    ``leave-one-out``: per user, the last pair is test, the second last valid.
    Pairs are assumed sorted by (user, time).
    """
    label = np.zeros(len(u), dtype=np.int8)
    if how == "time":
        order = np.argsort(t, kind="stable")
        total = sum(ratios)
        n_trn = int(round(len(u) * ratios[0] / total))
        n_val = int(round(len(u) * ratios[1] / total))
        label[order[n_trn:n_trn + n_val]] = 1
        label[order[n_trn + n_val:]] = 2
        return label
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    ends = np.r_[starts[1:], len(u)]
    total = sum(ratios)
    for s, e in zip(starts, ends):
        n = e - s
        if how == "leave-one-out":
            if n >= 3:
                label[e - 2], label[e - 1] = 1, 2
            elif n == 2:
                label[e - 1] = 2
            continue
        n_val = int(round(n * ratios[1] / total))
        n_tst = int(round(n * ratios[2] / total))
        while n - n_val - n_tst < 1 and (n_val or n_tst):
            if n_tst >= n_val:
                n_tst -= 1
            else:
                n_val -= 1
        pos = s + rng.permutation(n)
        label[pos[n - n_val - n_tst:n - n_tst]] = 1
        label[pos[n - n_tst:]] = 2
    return label


# ----------------------------------------------------------------------------- writing
def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows).encode()


def _to_py(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else (int(v) if float(v).is_integer() else float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def summary(trn: sp.csr_matrix, val: sp.csr_matrix, tst: sp.csr_matrix) -> dict[str, Any]:
    full = (trn + val + tst).tocsr()
    per_user = np.diff(full.indptr)
    per_item = np.bincount(full.indices, minlength=full.shape[1])
    return {
        "train": int(trn.nnz), "valid": int(val.nnz), "test": int(tst.nnz),
        "density": float(full.nnz / (full.shape[0] * full.shape[1])),
        "items_per_user": {"mean": float(per_user.mean()), "median": float(np.median(per_user))},
        "users_per_item": {"mean": float(per_item.mean()), "median": float(np.median(per_item))},
        "users_with_test": int((np.diff(tst.indptr) > 0).sum()),
    }


def print_table(stats: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    rows = [("users", stats["users"]), ("items", stats["items"]),
            ("interactions (before splitting)", stats["interactions"]), ("distinct pairs", stats["pairs"]),
            ("train pairs", stats["train"]), ("valid pairs", stats["valid"]), ("test pairs", stats["test"]),
            ("density", f"{stats['density']:.5f}"),
            ("items per user (mean / median)",
             f"{stats['items_per_user']['mean']:.2f} / {stats['items_per_user']['median']:.0f}"),
            ("users per item (mean / median)",
             f"{stats['users_per_item']['mean']:.2f} / {stats['users_per_item']['median']:.0f}")]
    attrs = stats.get("attributes") or {}
    if attrs.get("items_with_attributes"):
        rows.append(("items with attributes", attrs["items_with_attributes"]))
        rows += [(f"  {rel} attributes", n) for rel, n in attrs["per_relation"].items()]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>14}", file=out)


def convert(raw: RawInteractions, out: Path, *, source: str, options: dict[str, Any], min_rating: float | None = None,
            dedup: bool = False, sample_users: int | None = None, user_core: int = 0, item_core: int = 0,
            split: str = "random", ratios=(3.0, 1.0, 1.0), seed: int = 2023,
            attribute_fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Filter, map, split and write ``raw`` into ``out``; returns the statistics.

    ``attribute_fields``: the metadata fields that become ``item_attributes.jsonl`` (default: all
    that :func:`~semrec.data.readers.item_attributes` knows; ``()``: none)."""
    n_raw = len(raw.users)
    if n_raw == 0:
        raise PrepareError(f"{source}: no interactions found")
    rng = np.random.default_rng(seed)
    raw_users, u = _ids(raw.users)
    raw_items, i = _ids(raw.items)
    key = u.astype(np.int64) * len(raw_items) + i  # one number per (user, item) pair
    keep = np.ones(n_raw, dtype=bool)
    if min_rating is not None:
        if np.isnan(raw.ratings).all():
            raise PrepareError(f"{source}: --min-rating given but the source has no ratings")
        keep &= raw.ratings >= min_rating
    order = np.lexsort((np.arange(n_raw), np.nan_to_num(raw.times, nan=0.0), u))  # by user, time, source order
    order = order[keep[order]]
    if dedup:
        _, first = np.unique(key[order], return_index=True)
        order = order[np.sort(first)]
    if sample_users is not None:
        present = np.unique(u[order])
        if sample_users < len(present):
            chosen = np.zeros(len(raw_users), dtype=bool)
            chosen[rng.choice(present, size=sample_users, replace=False)] = True
            order = order[chosen[u[order]]]
    # distinct pairs, each at the time of its first interaction (order is by user, time)
    _, first = np.unique(key[order], return_index=True)
    pairs = order[np.sort(first)]
    if (user_core or item_core) and len(pairs):
        pairs = pairs[kcore(u[pairs], i[pairs], user_core, item_core)]
        order = order[np.isin(key[order], key[pairs])]
    if len(pairs) == 0:
        raise PrepareError(f"{source}: the filters left no interactions ({json.dumps(options)}); relax "
                           "--min-rating / --kcore / --sample-users")
    # new ids: users and items that survive, in raw-id order
    kept_u, new_u = np.unique(u[pairs], return_inverse=True)
    kept_i, new_i = np.unique(i[pairs], return_inverse=True)
    u_map = np.full(len(raw_users), -1)
    u_map[kept_u] = np.arange(len(kept_u))
    i_map = np.full(len(raw_items), -1)
    i_map[kept_i] = np.arange(len(kept_i))
    n_users, n_items = len(kept_u), len(kept_i)
    t_pairs = np.nan_to_num(raw.times[pairs], nan=0.0)
    labels = split_pairs(new_u, t_pairs, split, ratios, rng)
    dropped_cold = 0
    has_train = np.zeros(n_users, dtype=bool)
    has_train[new_u[labels == 0]] = True
    cold = (labels > 0) & ~has_train[new_u]
    if cold.any():  # held-out pairs of users with no training pair cannot be evaluated
        dropped_cold = int(cold.sum())
        labels[cold] = -1
    mats = []
    for s in range(3):
        m = labels == s
        mats.append(sp.coo_matrix((np.ones(int(m.sum())), (new_u[m], new_i[m])), shape=(n_users, n_items)))
    csr = [m.tocsr() for m in mats]
    _check(csr, raw_users[kept_u], raw_items[kept_i], source)

    out.mkdir(parents=True, exist_ok=True)
    (out / "mapper").mkdir(exist_ok=True)
    files: dict[str, bytes] = {name: pickle.dumps(m, protocol=4) for name, m in zip(MATRICES, mats)}
    files["mapper/user.json"] = _jsonl({"uid": k, "user_id": str(r)} for k, r in enumerate(raw_users[kept_u]))
    files["mapper/item.json"] = _jsonl({"iid": k, "item_id": str(r)} for k, r in enumerate(raw_items[kept_i]))
    if raw.item_meta:
        files["items.jsonl"] = _jsonl({"iid": k, "item_id": str(r), **raw.item_meta.get(str(r), {})}
                                      for k, r in enumerate(raw_items[kept_i]))
    attr_rows = [{"iid": k, "attributes": a} for k, r in enumerate(raw_items[kept_i])
                 if (a := item_attributes(raw.item_meta.get(str(r), {}), attribute_fields))]
    if attr_rows:
        files["item_attributes.jsonl"] = _jsonl(attr_rows)
    if raw.user_meta:
        files["users.jsonl"] = _jsonl({"uid": k, "user_id": str(r), **raw.user_meta.get(str(r), {})}
                                      for k, r in enumerate(raw_users[kept_u]))
    # every kept interaction in (user, time) order, with its split; held-out pair labels apply
    pair_label = dict(zip((new_u.astype(np.int64) * n_items + new_i).tolist(), labels.tolist()))
    ou, oi = u_map[u[order]], i_map[i[order]]
    ok = (ou >= 0) & (oi >= 0)
    order, ou, oi = order[ok], ou[ok], oi[ok]
    names = {0: "train", 1: "valid", 2: "test", -1: "dropped"}
    inter_rows, seqs = [], {}
    for idx, uu, ii in zip(order.tolist(), ou.tolist(), oi.tolist()):
        row = {"uid": uu, "iid": ii, "split": names[pair_label[uu * n_items + ii]]}
        if not np.isnan(raw.ratings[idx]):
            row["rating"] = float(raw.ratings[idx])
        if raw.time_kind != "none":
            row["timestamp"] = _to_py(raw.times[idx])
        if raw.reviews is not None and raw.reviews[idx]:
            row["review"] = raw.reviews[idx]
        inter_rows.append(row)
        s = seqs.setdefault(uu, {"uid": uu, "items": [], "timestamps": [], "ratings": []})
        s["items"].append(ii)
        s["timestamps"].append(_to_py(raw.times[idx]) if raw.time_kind != "none" else None)
        s["ratings"].append(_to_py(raw.ratings[idx]))
    if not all(r is not None for s in seqs.values() for r in s["ratings"]):  # ratings only where all have one
        for s in seqs.values():
            del s["ratings"]
    files["interactions.jsonl"] = _jsonl(inter_rows)
    files["sequences.jsonl"] = _jsonl(seqs[k] for k in sorted(seqs))
    stats = {"source": source, "options": options, "raw_interactions": n_raw,
             "users": n_users, "items": n_items, "interactions": len(order), "pairs": int(len(pairs)),
             **summary(*csr), "dropped_cold_heldout": dropped_cold, "time": raw.time_kind,
             "attributes": _attribute_stats(attr_rows, n_items)}
    for name, payload in files.items():
        atomic_write(out / name, payload)
    if "item_attributes.jsonl" not in files:  # a folder prepared again: no stale attributes left behind
        (out / "item_attributes.jsonl").unlink(missing_ok=True)
    stats["sha256"] = {name: hashlib.sha256(payload).hexdigest() for name, payload in sorted(files.items())}
    write_json(out / "stats.json", stats)
    return stats


def _attribute_stats(rows: list[dict], n_items: int) -> dict[str, Any]:
    """Distinct attributes per relation, and items with at least one attribute."""
    per_rel: dict[str, set[str]] = {}
    for row in rows:
        for rel, names in row["attributes"].items():
            per_rel.setdefault(rel, set()).update(names)
    return {"items_with_attributes": len(rows), "items": n_items,
            "per_relation": {rel: len(v) for rel, v in sorted(per_rel.items())}}


def _check(mats: list[sp.csr_matrix], users: np.ndarray, items: np.ndarray, source: str) -> None:
    """Invariants of every output; a failure here is a bug, reported rather than written."""
    if len(set(users.tolist())) != len(users) or len(set(items.tolist())) != len(items):
        raise PrepareError(f"{source}: an original id maps to two new ids")
    for a, b, name in ((0, 1, "train/valid"), (0, 2, "train/test"), (1, 2, "valid/test")):
        if mats[a].multiply(mats[b]).nnz:
            raise PrepareError(f"{source}: {name} share interactions")
    users_test = np.flatnonzero(np.diff(mats[2].indptr))
    if (np.diff(mats[0].indptr)[users_test] == 0).any():
        raise PrepareError(f"{source}: a user with test items has no training items")


def copy_rlmrec(src: Path, out: Path) -> dict[str, Any]:
    """Validate an RLMRec-layout folder and copy it, recording checksums and statistics."""
    from semrec.data.read_profile import read_profiles
    from semrec.encoder.dataset import PROFILE_FILES, DataError, load_dataset

    try:
        data = load_dataset(src)
        for kind, fname in PROFILE_FILES.items():  # checked as the readers will read them
            if (src / fname).exists():
                n = len(read_profiles(src, kind))
                expected = data.num_users if kind == "user" else data.num_items
                if n != expected:
                    raise DataError(f"{src / fname}: {n} {kind} profiles for {expected} {kind}s")
    except DataError as e:
        raise PrepareError(str(e)) from e
    out.mkdir(parents=True, exist_ok=True)
    copied = {}
    for f in sorted(src.iterdir()):
        if f.is_file() and (f.suffix == ".pkl" or f.name.endswith(".json")):
            if f.resolve() != (out / f.name).resolve():
                shutil.copyfile(f, out / f.name)
            copied[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    total = data.train.nnz + data.valid.nnz + data.test.nnz
    stats = {"source": f"rlmrec:{src}", "options": {}, "raw_interactions": total, "users": data.num_users,
             "items": data.num_items, "interactions": total, "pairs": total,
             **summary(data.train, data.valid, data.test), "dropped_cold_heldout": 0, "time": "none",
             "overlaps": data.overlaps(), "sha256": copied}
    write_json(out / "stats.json", stats)
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("kind", choices=KINDS, help="the raw format")
    p.add_argument("path", help="raw file or folder")
    p.add_argument("--name", required=True, help="dataset name (the output folder's name)")
    p.add_argument("--out-dir", default=None, help="parent folder (default: $SEMREC_HOME/data, or ./data)")
    p.add_argument("--min-rating", type=float, help="drop interactions rated below this")
    p.add_argument("--dedup", action="store_true", help="keep only the first of repeated user-item interactions")
    p.add_argument("--sample-users", type=int, help="keep this many users, drawn uniformly with --seed")
    p.add_argument("--kcore", type=int, default=0, help="iterative k-core for users and items")
    p.add_argument("--user-core", type=int, help="k-core threshold for users (overrides --kcore)")
    p.add_argument("--item-core", type=int, help="k-core threshold for items (overrides --kcore)")
    p.add_argument("--split", choices=SPLITS, default="random")
    p.add_argument("--ratios", default="3,1,1", help="train,valid,test ratios (random and time splits)")
    p.add_argument("--seed", type=int, default=2023)
    p.add_argument("--meta", help="Amazon metadata file (default: meta_*.json* beside the reviews)")
    p.add_argument("--item-text", help="s3rec: JSON {key: {title, description}} of item texts; "
                   "csv/parquet: the columns describing an item (title,genres,...), comma-separated")
    p.add_argument("--item-text-offset", type=int, default=1, help="s3rec: text key k describes item k+offset")
    p.add_argument("--attributes", help="metadata fields that become item attributes (item_attributes.jsonl), "
                   f"comma-separated from {', '.join(ATTRIBUTE_FIELDS)}; 'none' for no file (default: all present)")
    p.add_argument("--force", action="store_true", help="overwrite an existing dataset folder")
    t = p.add_argument_group("csv and parquet: which column holds what")
    t.add_argument("--user", help="the user id column (required)")
    t.add_argument("--item", help="the item id column (required)")
    t.add_argument("--time", help="the time column: numbers (Unix seconds) or ISO 8601 dates (default: file order)")
    t.add_argument("--rating", help="the rating column")
    t.add_argument("--delimiter", help="csv: the field delimiter (default: sniffed from the header: , ; tab |)")
    return p


def table_columns(args: argparse.Namespace):
    from semrec.data.tables import Columns

    if not args.user or not args.item:
        raise PrepareError(f"{args.kind} needs --user COLUMN and --item COLUMN (the columns of the ids)")
    text = tuple(c.strip() for c in (args.item_text or "").split(",") if c.strip())
    return Columns(args.user, args.item, args.time, args.rating, text)


def from_dataframe(df, name: str, *, user: str, item: str, time: str | None = None, rating: str | None = None,
                   item_text: tuple[str, ...] | list[str] = (), out_dir: str | Path | None = None, force: bool = False,
                   min_rating: float | None = None, dedup: bool = False, sample_users: int | None = None,
                   kcore: int = 0, user_core: int | None = None, item_core: int | None = None,
                   split: str = "random", ratios: tuple[float, float, float] = (3.0, 1.0, 1.0),
                   seed: int = 2023) -> Path:
    """A pandas or polars DataFrame of interactions -> the dataset folder ``out_dir/name``
    (the options of ``prepare.py csv``); returns the folder. Raises PrepareError on bad input."""
    from semrec.common.io import data_root
    from semrec.data.tables import Columns, read_dataframe

    try:
        check_name(name, hint="name is the folder's own name; choose its parent with out_dir")
    except ValueError as e:
        raise PrepareError(str(e)) from None
    if split not in SPLITS:
        raise PrepareError(f"split {split!r}: valid: {', '.join(SPLITS)}")
    out = (Path(out_dir) if out_dir is not None else data_root()) / name
    if (out / "trn_mat.pkl").exists() and not force:
        raise PrepareError(f"{out} already holds a dataset; pass force=True to overwrite it")
    raw = read_dataframe(df, Columns(user, item, time, rating, tuple(item_text)))
    options = {"name": name, "user": user, "item": item, "time": time, "rating": rating, "item_text": list(item_text),
               "min_rating": min_rating, "dedup": dedup, "sample_users": sample_users, "kcore": kcore,
               "user_core": user_core, "item_core": item_core, "split": split, "ratios": list(ratios), "seed": seed}
    convert(raw, out, source="dataframe", options=options, min_rating=min_rating, dedup=dedup,
            sample_users=sample_users, user_core=kcore if user_core is None else user_core,
            item_core=kcore if item_core is None else item_core, split=split, ratios=tuple(ratios), seed=seed)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semrec.common.io import data_root

    src, out = Path(args.path), (Path(args.out_dir) if args.out_dir else data_root()) / args.name
    t0 = time.perf_counter()
    try:
        try:
            check_name(args.name, hint="--name is the folder's own name; choose its parent with --out-dir")
        except ValueError as e:
            raise PrepareError(f"--name: {e}") from None
        if not src.exists():
            raise PrepareError(f"{src}: no such file or folder")
        if (out / "trn_mat.pkl").exists() and not args.force and src.resolve() != out.resolve():
            raise PrepareError(f"{out} already holds a dataset; pass --force to overwrite it")
        try:
            ratios = tuple(float(x) for x in args.ratios.split(","))
        except ValueError:
            ratios = ()
        if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
            raise PrepareError(f"--ratios {args.ratios!r}: expected three non-negative numbers, train > 0")
        fields = None  # checked before the (possibly long) read
        if args.attributes is not None:
            fields = () if args.attributes == "none" else tuple(f.strip() for f in args.attributes.split(","))
            bad = [f for f in fields if f not in ATTRIBUTE_FIELDS]
            if bad:
                raise PrepareError(f"--attributes: unknown field(s) {', '.join(bad)}; valid: "
                                   f"{', '.join(ATTRIBUTE_FIELDS)}, or none")
        given = [f"--{k}" for k in ("user", "item", "time", "rating", "delimiter") if getattr(args, k) is not None]
        if given and args.kind not in TABLES:
            raise PrepareError(f"{', '.join(given)}: for csv and parquet only ({args.kind} files name their own fields)")
        if args.kind == "rlmrec":
            stats = copy_rlmrec(src, out)
        else:
            raw = {"recbole": lambda: read_recbole(src), "yelp": lambda: read_yelp(src),
                   "amazon": lambda: read_amazon(src, Path(args.meta) if args.meta else None),
                   "s3rec": lambda: read_s3rec(src, Path(args.item_text) if args.item_text else None,
                                               args.item_text_offset),
                   "csv": lambda: read_csv(src, table_columns(args), args.delimiter),
                   "parquet": lambda: read_parquet(src, table_columns(args))}[args.kind]()
            options = {k: v for k, v in vars(args).items() if k not in ("kind", "path", "out_dir", "force")}
            core_u = args.user_core if args.user_core is not None else args.kcore
            core_i = args.item_core if args.item_core is not None else args.kcore
            stats = convert(raw, out, source=f"{args.kind}:{src}", options=options, min_rating=args.min_rating,
                            dedup=args.dedup, sample_users=args.sample_users, user_core=core_u, item_core=core_i,
                            split=args.split, ratios=ratios, seed=args.seed, attribute_fields=fields)
    except PrepareError as e:
        print(f"prepare.py: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only or full output folder: the files written so far are whole (atomic)
        print(f"prepare.py: {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"prepare.py: {src}: out of memory while converting it", file=sys.stderr)
        return 2
    print_table(stats)
    print(f"wrote {out} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
