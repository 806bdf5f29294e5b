"""Your own interactions as a table: CSV (any delimiter, gzipped or not), Parquet, or a DataFrame.

The columns are named by the caller (``user``, ``item``, and optionally ``time``, ``rating`` and
item-text columns), so any header works. Times are numbers (Unix seconds, or any increasing
number) or ISO 8601 dates; ratings are numbers; an item's text columns are taken from its first
row that has them. A missing column, a bad cell or an empty table is a :class:`PrepareError`
naming the column (and the line).
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from semrec.data.readers import PrepareError, RawInteractions


@dataclass(frozen=True)
class Columns:
    """Which column holds what.

    Args:
        user, item: the ids' columns (required).
        time: the interaction's time (numbers or ISO 8601 dates); None: source order.
        rating: the interaction's rating (numbers); None: no ratings.
        item_text: columns describing the item (title, genres, ...), kept as item metadata.
    """

    user: str
    item: str
    time: str | None = None
    rating: str | None = None
    item_text: tuple[str, ...] = ()

    @property
    def wanted(self) -> list[str]:
        return [c for c in (self.user, self.item, self.time, self.rating, *self.item_text) if c]


def _time(value: Any, where: str, column: str) -> float:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return float("nan")
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).timestamp()
    if hasattr(value, "timestamp") and not isinstance(value, (int, float, str)):  # pandas / numpy datetimes
        return float(value.timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        parsed = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise PrepareError(f"{where}: column {column!r}: {value!r} is neither a number nor an ISO 8601 date") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()


def _rating(value: Any, where: str, column: str) -> float:
    if value is None or value == "":
        return float("nan")
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise PrepareError(f"{where}: column {column!r}: {value!r} is not a number") from None
    if math.isinf(r):
        raise PrepareError(f"{where}: column {column!r}: {value!r} is not a finite number")
    return r


def _id(value: Any, where: str, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        raise PrepareError(f"{where}: column {column!r} is empty")
    if isinstance(value, float) and value.is_integer():  # 12.0 from a float column is the id 12
        value = int(value)
    return str(value).strip()


def from_rows(rows: Iterable[tuple[str, dict[str, Any]]], cols: Columns, source: str) -> RawInteractions:
    """``(where, row)`` pairs (``where`` names the row in messages) -> :class:`RawInteractions`."""
    users, items, ratings, times = [], [], [], []
    meta: dict[str, dict[str, Any]] = {}
    for where, row in rows:
        u, i = _id(row.get(cols.user), where, cols.user), _id(row.get(cols.item), where, cols.item)
        users.append(u)
        items.append(i)
        times.append(_time(row.get(cols.time), where, cols.time) if cols.time else float("nan"))
        ratings.append(_rating(row.get(cols.rating), where, cols.rating) if cols.rating else float("nan"))
        if cols.item_text:
            m = meta.setdefault(i, {})
            for c in cols.item_text:
                v = row.get(c)
                if c not in m and v is not None and str(v).strip() and not (isinstance(v, float) and math.isnan(v)):
                    m[c] = v if isinstance(v, (int, float, bool)) else str(v).strip()
    if not users:
        raise PrepareError(f"{source}: no rows (the table is empty)")
    t = np.asarray(times, dtype=np.float64)
    if cols.time and np.isnan(t).any():
        raise PrepareError(f"{source}: column {cols.time!r} is empty in {int(np.isnan(t).sum())} row(s)")
    return RawInteractions(users, items, np.asarray(ratings, dtype=np.float64), t,
                           item_meta={k: v for k, v in meta.items() if v},
                           time_kind="unix" if cols.time else "none")


def _check_columns(have: Sequence[str], cols: Columns, source: str) -> None:
    missing = [c for c in cols.wanted if c not in have]
    if missing:
        raise PrepareError(f"{source}: no column(s) {', '.join(map(repr, missing))}; the columns are "
                           f"{', '.join(map(repr, have)) or '(none)'}")


def _open_text(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return (gzip.open(path, "rt", encoding="utf-8-sig", newline="") if gz
            else open(path, encoding="utf-8-sig", newline=""))


def read_csv(path: Path, cols: Columns, delimiter: str | None = None) -> RawInteractions:
    """A delimited text file with a header row (the delimiter sniffed from it unless given)."""
    if path.is_dir():
        raise PrepareError(f"{path}: a folder; give the CSV file itself")
    try:
        with _open_text(path) as f:
            header = f.readline()
            if not header.strip():
                raise PrepareError(f"{path}: empty (no header row)")
            if delimiter is None:
                try:
                    delimiter = csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
                except csv.Error:
                    delimiter = ","
            names = [h.strip() for h in next(csv.reader([header], delimiter=delimiter))]
            _check_columns(names, cols, str(path))

            def rows():
                for no, cells in enumerate(csv.reader(f, delimiter=delimiter), start=2):
                    if not cells or not any(c.strip() for c in cells):
                        continue
                    if len(cells) != len(names):
                        raise PrepareError(f"{path}:{no}: {len(cells)} field(s), the header has {len(names)} "
                                           f"(delimiter {delimiter!r})")
                    yield f"{path}:{no}", dict(zip(names, cells))

            return from_rows(rows(), cols, str(path))
    except UnicodeDecodeError as e:
        raise PrepareError(f"{path}: not UTF-8 text (byte {e.start} of a block: {e.reason})") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise PrepareError(f"{path}: cannot be read: {e}") from None


def read_parquet(path: Path, cols: Columns) -> RawInteractions:
    """A Parquet file (through pyarrow: ``pip install 'semrec[tables]'``)."""
    from semrec.common.extras import MissingExtra, require

    try:
        pq = require("pyarrow.parquet", "tables", "reading Parquet")
    except MissingExtra as e:
        raise PrepareError(str(e)) from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        raise PrepareError(f"{path}: not a readable Parquet file ({e})") from None
    _check_columns(pf.schema_arrow.names, cols, str(path))
    table = pf.read(columns=cols.wanted)
    data = {c: table.column(c).to_pylist() for c in cols.wanted}
    n = table.num_rows
    return from_rows(((f"{path}: row {r + 1}", {c: data[c][r] for c in cols.wanted}) for r in range(n)),
                     cols, str(path))


def read_dataframe(df: Any, cols: Columns) -> RawInteractions:
    """A pandas or polars DataFrame."""
    names = [str(c) for c in df.columns]
    _check_columns(names, cols, "DataFrame")
    data = {}
    for c in cols.wanted:
        column = df[c]
        data[c] = column.to_list() if hasattr(column, "to_list") else column.tolist()
    n = len(data[cols.user])
    return from_rows(((f"DataFrame row {r}", {c: data[c][r] for c in cols.wanted}) for r in range(n)),
                     cols, "DataFrame")
