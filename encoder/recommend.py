"""Recommendations and vectors out of a trained run, in the dataset's own ids.

    semrec-recommend RUN_DIR --user 196 -k 10
    semrec-recommend RUN_DIR --all --out top10.parquet           # or .csv: user, rank, item, score
    semrec-recommend RUN_DIR --history 50,172,133 -k 5           # a sequence model, an ad-hoc history
    semrec-export RUN_DIR --out vectors/                          # user and item vectors for an ANN index

Ids are the original ones (``mapper/user.json`` and ``mapper/item.json`` of a folder written by
``data/prepare.py``; a dataset without them has ids ``0..n-1``). What a user already has (every
split) is never recommended. A sequence model reads each user's whole sequence, newest last.
``--as-of test`` ranks as the evaluator does for the test split instead (history before the test
item, training and validation items excluded), so the lists can be checked against
``results.json``. Exit 2 with one line for an unknown user or item.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch

AS_OF = ("all", "valid", "test")
TITLE_KEYS = ("title", "movie_title", "name", "business_name")


class UnknownId(KeyError):
    """A user or item id the dataset does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class IdMap:
    """Original ids of a dataset's users and items, in index order."""

    users: list[str]
    items: list[str]

    @classmethod
    def of(cls, folder: Path | None, num_users: int, num_items: int) -> "IdMap":
        def read(kind: str, key: str, n: int) -> list[str]:
            path = folder / "mapper" / f"{kind}.json" if folder else None
            if path is None or not path.exists():
                return [str(i) for i in range(n)]
            from semrec.common.io import json_lines

            ids = [""] * n
            for _, row in json_lines(path):
                idx = row.get("uid" if kind == "user" else "iid")
                if isinstance(idx, int) and 0 <= idx < n:
                    ids[idx] = str(row.get(key))
            return ids

        return cls(read("user", "user_id", num_users), read("item", "item_id", num_items))

    def _lookup(self, kind: str, raw: Any) -> int:
        cache = f"_{kind}_index"
        if not hasattr(self, cache):
            setattr(self, cache, {r: i for i, r in enumerate(getattr(self, f"{kind}s"))})
        try:
            return getattr(self, cache)[str(raw)]
        except KeyError:
            known = getattr(self, f"{kind}s")
            raise UnknownId(f"unknown {kind} {raw!r} (the dataset has {len(known)} {kind}s, e.g. "
                            f"{', '.join(known[:3])})") from None

    def user(self, raw: Any) -> int:
        return self._lookup("user", raw)

    def item(self, raw: Any) -> int:
        return self._lookup("item", raw)


def item_titles(folder: Path | None, num_items: int) -> list[str] | None:
    """Each item's title from ``items.jsonl`` (the first of :data:`TITLE_KEYS` it has), or None."""
    path = folder / "items.jsonl" if folder else None
    if path is None or not path.exists():
        return None
    from semrec.common.io import json_lines

    titles = [""] * num_items
    for _, row in json_lines(path):
        i = row.get("iid")
        if isinstance(i, int) and 0 <= i < num_items:
            titles[i] = next((str(row[k]) for k in TITLE_KEYS if row.get(k)), "")
    return titles if any(titles) else None


class RunRecommender:
    """Top-k lists and vectors of one trained run (its best weights).

    Args:
        data: the run's dataset.
        model: the trained model (best weights loaded).
        device: where to score.
        batch_size: users scored at once.
        exclude: what ``as_of`` ``valid`` / ``test`` leaves out, as the run's ``eval.exclude``
            (``history``, ``train`` or ``none``).
    """

    def __init__(self, data, model, device: torch.device | str = "cpu", batch_size: int = 1024,
                 exclude: str = "history"):
        self.data, self.model, self.exclude = data, model.eval(), exclude
        self.device, self.batch_size = torch.device(device), batch_size
        self.ids = IdMap.of(data.path, data.num_users, data.num_items)
        self.titles = item_titles(data.path, data.num_items)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | None = None, batch_size: int = 1024) -> "RunRecommender":
        from semrec.encoder.train_encoder import load_run

        data, trainer = load_run(run_dir, device)
        return cls(data, trainer.model, trainer.device, batch_size, trainer.cfg.eval.exclude)

    # -- what a user has -------------------------------------------------------------------------
    def _seen(self, as_of: str) -> sp.csr_matrix:
        d = self.data
        if as_of == "all":
            return (d.train + d.valid + d.test).tocsr()
        if self.exclude == "none":
            return sp.csr_matrix(d.train.shape, dtype=np.float32)
        return (d.train if as_of == "valid" or self.exclude == "train" else d.train + d.valid).tocsr()

    def _batch(self, users: np.ndarray, as_of: str, history: np.ndarray | None = None):
        from semrec.encoder.batches import EvalBatch

        hist = rated = None
        if self.model.history_len:
            if history is not None:
                hist = history[None, -self.model.history_len:]
            else:
                seq = self.data.require_sequences()
                hist = seq.histories(users, as_of, self.model.history_len, self.data.num_items)
                if self.model.history_ratings:
                    rated = torch.from_numpy(seq.rating_histories(users, as_of, self.model.history_len)).to(self.device)
            hist = torch.from_numpy(np.ascontiguousarray(hist)).to(self.device)
        return EvalBatch(torch.from_numpy(users.astype(np.int64)).to(self.device), hist, rated)

    @torch.no_grad()
    def top_k(self, users: Sequence[int], k: int = 10, as_of: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """``(items, scores)``, each ``(len(users), k)``, best first, for user indices ``users``;
        what each user has (as of ``as_of``) is left out (fewer than ``k`` left: padded with -1 / -inf)."""
        if as_of not in AS_OF:
            raise ValueError(f"as_of must be one of {', '.join(AS_OF)}, got {as_of!r}")
        users = np.asarray(users, dtype=np.int64)
        k = min(k, self.data.num_items)
        seen = self._seen(as_of)
        score = self.model.scorer()
        items = np.empty((len(users), k), dtype=np.int64)
        scores = np.empty((len(users), k), dtype=np.float32)
        for lo in range(0, len(users), self.batch_size):
            u = users[lo:lo + self.batch_size]
            s = score(self._batch(u, as_of)).float()
            rows = seen[u]
            r = torch.from_numpy(np.repeat(np.arange(len(u)), np.diff(rows.indptr))).to(self.device)
            s[r, torch.from_numpy(rows.indices.astype(np.int64)).to(self.device)] = -torch.inf
            top = torch.topk(s, k, dim=1)
            items[lo:lo + len(u)] = top.indices.cpu().numpy()
            scores[lo:lo + len(u)] = top.values.cpu().numpy()
        items[~np.isfinite(scores)] = -1
        return items, scores

    @torch.no_grad()
    def for_history(self, history: Sequence[int], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(items, scores)`` for an ad-hoc history of item indices (a sequence model), its items left out."""
        if not self.model.history_len:
            raise ValueError(f"{type(self.model).__name__} ranks by user, not by history; "
                             "--history needs a sequence model")
        if self.model.history_ratings:
            raise ValueError("this model reads each history item's rating; an ad-hoc history has none "
                             "(train it with model.ratings=false to rank ad-hoc histories)")
        h = np.asarray(history, dtype=np.int64)
        s = self.model.scorer()(self._batch(np.zeros(1, dtype=np.int64), "all", h)).float()[0]
        s[torch.from_numpy(h).to(self.device)] = -torch.inf
        top = torch.topk(s, min(k, self.data.num_items - len(set(h.tolist()))))
        return top.indices.cpu().numpy(), top.values.cpu().numpy()

    @torch.no_grad()
    def vectors(self, as_of: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """``(user_vectors (U, d), item_vectors (I, d))``: a user's score for an item is their inner product."""
        user_fn, items = self.model.factors()
        users = np.arange(self.data.num_users)
        out = [user_fn(self._batch(users[lo:lo + self.batch_size], as_of)).float().cpu().numpy()
               for lo in range(0, len(users), self.batch_size)]
        return np.concatenate(out), items.float().cpu().numpy()

    def rows(self, users: Sequence[int], items: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        """One row per recommendation: user, rank, item (original ids), score, title where known."""
        out = []
        for u, its, ss in zip(users, items, scores):
            for rank, (i, s) in enumerate(zip(its, ss), start=1):
                if i < 0:
                    break
                row = {"user": self.ids.users[u], "rank": rank, "item": self.ids.items[i], "score": float(s)}
                if self.titles:
                    row["title"] = self.titles[i]
                out.append(row)
        return out


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows to ``.csv`` or ``.parquet`` (by the suffix), written whole or not at all."""
    import csv
    import io

    from semrec.common.io import atomic_write

    if path.suffix == ".parquet":
        from semrec.common.extras import require

        pa = require("pyarrow", "tables", "writing Parquet")
        pq = require("pyarrow.parquet", "tables", "writing Parquet")
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        atomic_write(path, buf.getvalue())
        return
    if path.suffix != ".csv":
        raise ValueError(f"{path}: write .csv or .parquet")
    buf = io.StringIO()
    fields = list(rows[0]) if rows else ["user", "rank", "item", "score"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue().encode("utf-8"))


def _print(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        title = f"  {r['title']}" if r.get("title") else ""
        print(f"{r['rank']:>3}  {r['item']:<14} {r['score']:9.4f}{title}")


# -------------------------------------------- CLIs ---------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semrec-recommend", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("run_dir", help="a run folder (train_encoder.py --out, or runs/<dataset>/<model>/...)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one user's original id: prints the list")
    who.add_argument("--users", help="a file of original user ids, one a line: writes --out")
    who.add_argument("--all", action="store_true", help="every user: writes --out")
    who.add_argument("--history", help="comma-separated original item ids, oldest first (sequence models)")
    p.add_argument("-k", type=int, default=10, help="items per list (default 10)")
    p.add_argument("--out", help="the top-k file for --users / --all: .parquet or .csv "
                   "(user, rank, item, score[, title])")
    p.add_argument("--as-of", choices=AS_OF, default="all",
                   help="all: what the user has now (default); test / valid: as the evaluator ranks that split")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's)")
    p.add_argument("--batch-size", type=int, default=1024, help="users scored at once")
    return p


def _users_file(path: str, rec: RunRecommender) -> list[int]:
    from semrec.common.io import text_lines

    return [rec.ids.user(line.strip()) for _, line in text_lines(path, ValueError) if line.strip()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.k < 1:
        print("semrec-recommend: -k must be at least 1", file=sys.stderr)
        return 2
    if (args.users or args.all) and not args.out:
        print("semrec-recommend: --users / --all write a file: give --out FILE.parquet or FILE.csv", file=sys.stderr)
        return 2
    return _guarded("semrec-recommend", lambda: _recommend(args))


def _recommend(args) -> int:
    rec = RunRecommender.from_run(args.run_dir, args.device, args.batch_size)
    if args.history is not None:
        hist = [rec.ids.item(x.strip()) for x in args.history.split(",") if x.strip()]
        if not hist:
            raise ValueError("--history: give at least one item id")
        items, scores = rec.for_history(hist, args.k)
        rows = [{"rank": r, "item": rec.ids.items[i], "score": float(s),
                 **({"title": rec.titles[i]} if rec.titles else {})}
                for r, (i, s) in enumerate(zip(items, scores), start=1)]
        _print(rows)
        return 0
    if args.user is not None:
        u = rec.ids.user(args.user)
        items, scores = rec.top_k([u], args.k, args.as_of)
        _print(rec.rows([u], items, scores))
        return 0
    users = list(range(rec.data.num_users)) if args.all else _users_file(args.users, rec)
    items, scores = rec.top_k(users, args.k, args.as_of)
    out = Path(args.out)
    write_table(rec.rows(users, items, scores), out)
    print(f"{len(users)} users x top {args.k} -> {out}")
    return 0


def export_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="semrec-export", description="Write a run's final user and item vectors "
                                "(.npy) with their original ids, for an approximate-nearest-neighbour index.")
    p.add_argument("run_dir")
    p.add_argument("--out", help="folder to write (default RUN_DIR/export)")
    p.add_argument("--as-of", choices=AS_OF, default="all", help="sequence models: the histories the user vectors read")
    p.add_argument("--device")
    args = p.parse_args(argv)
    return _guarded("semrec-export", lambda: _export(args))


def _export(args) -> int:
    from semrec.common.io import atomic_write, write_json

    rec = RunRecommender.from_run(args.run_dir, args.device)
    users, items = rec.vectors(args.as_of)
    out = Path(args.out) if args.out else Path(args.run_dir) / "export"
    out.mkdir(parents=True, exist_ok=True)
    import io

    for name, arr in (("user_vectors.npy", users), ("item_vectors.npy", items)):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
        atomic_write(out / name, buf.getvalue())
    atomic_write(out / "user_ids.json", json.dumps(rec.ids.users).encode())
    atomic_write(out / "item_ids.json", json.dumps(rec.ids.items).encode())
    write_json(out / "export.json", {"run": str(Path(args.run_dir).resolve()), "users": users.shape[0],
                                     "items": items.shape[0], "dim": users.shape[1], "score": "inner product",
                                     "as_of": args.as_of,
                                     "seen_items": "not excluded here: drop each user's own items after the search"})
    print(f"{users.shape[0]} user and {items.shape[0]} item vectors of width {users.shape[1]} -> {out}")
    return 0


def _guarded(prog: str, fn) -> int:
    """Run ``fn``; a bad run folder, an unknown id or a file error is exit 2 with one line."""
    from semrec.common.extras import MissingExtra
    from semrec.common.io import DataError
    from semrec.encoder.config import ConfigError

    try:
        return fn()
    except UnknownId as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except (ConfigError, DataError, ValueError, FileNotFoundError, MissingExtra) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{prog}: {e.filename or 'a file'}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
