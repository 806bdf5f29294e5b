"""Time-ordered interaction sequences and their leave-one-out split.

Each user's items are kept in time order, repeats included. The split follows the S3-Rec code
(Zhou et al., CIKM 2020, https://github.com/RUCAIBox/CIKM2020-S3Rec): the last item of every
sequence is the test target, the second last the validation target, the rest is training.
The history a model sees when it ranks is everything before the target: the training part
for validation, training plus the validation item for test.

Two sources are read:

* S3-Rec's ``<name>.txt``: one user per line, ``user item item ...``, item ids from 1;
* ``sequences.jsonl`` written by ``data/prepare.py``: ``{"uid": u, "items": [i, ...]}`` per
  line, ids from 0.

Stored as one flat array with row pointers (like a CSR matrix), so a million interactions
cost a few megabytes and slicing a user's history is a view.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from semrec.common.io import DataError, int_cell, is_int, json_lines, text_lines

SPLITS = ("train", "valid", "test")


@dataclass
class SequenceData:
    """Every user's time-ordered items, split leave-one-out.

    Attributes:
        ptr: ``(U+1,)`` row pointers into ``items``.
        items: ``(N,)`` item ids (0-based), users' sequences one after another.
        num_items: size of the item vocabulary.
        ratings: ``(N,)`` float32, the rating of each interaction, where the source has them.
    """

    ptr: np.ndarray
    items: np.ndarray
    num_items: int
    ratings: np.ndarray | None = None

    @property
    def num_users(self) -> int:
        return len(self.ptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Whole-sequence length of every user."""
        return np.diff(self.ptr)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.ptr[user]:self.ptr[user + 1]]

    def history_end(self, split: str) -> np.ndarray:
        """``(U,)`` index into ``items`` where each user's history for ``split`` ends (exclusive).

        ``train``: the training part (all but the last two); ``valid``: the same (its target is
        the second last); ``test``: all but the last; ``all``: the whole sequence (what a
        recommendation made today reads).
        """
        back = {"train": 2, "valid": 2, "test": 1, "all": 0}[split]
        return self.ptr[1:] - back

    def targets(self, split: str) -> np.ndarray:
        """``(U,)`` the held-out item of every user for ``valid`` or ``test``."""
        if split not in ("valid", "test"):
            raise ValueError(f"sequences hold one target per user for 'valid' and 'test', not {split!r}")
        return self.items[self.history_end(split)]

    def split_matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
        """Binary ``users × items`` train / valid / test matrices of the leave-one-out split."""
        n, m = self.num_users, self.num_items
        users = np.repeat(np.arange(n), self.lengths)
        pos = np.arange(len(self.items)) - self.ptr[users]  # position within the user's sequence
        back = self.lengths[users] - pos  # 1 for the last item, 2 for the second last
        out = []
        for keep in (back > 2, back == 2, back == 1):
            mat = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (users[keep], self.items[keep])),
                                shape=(n, m))
            mat.sum_duplicates()
            mat.data[:] = 1.0
            out.append(mat)
        return out[0], out[1], out[2]

    def check(self, where: str) -> None:
        short = np.flatnonzero(self.lengths < 3)
        if len(short):
            raise DataError(f"{where}: {len(short)} user(s) have fewer than 3 items "
                            f"(first: user index {short[0]}, 0-based in file order); "
                            "leave-one-out needs at least one training, one validation and one test item")
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= self.num_items):
            raise DataError(f"{where}: item ids must lie in 0..{self.num_items - 1}")

    @classmethod
    def from_lists(cls, seqs: list[list[int]], num_items: int | None = None,
                   ratings: list[list[float]] | None = None) -> "SequenceData":
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        ptr = np.concatenate([[0], np.cumsum(lengths)])
        items = np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(ptr[-1]))
        n = int(num_items) if num_items else (int(items.max()) + 1 if len(items) else 0)
        flat = None if ratings is None else \
            np.fromiter((r for s in ratings for r in s), dtype=np.float32, count=int(ptr[-1]))
        return cls(ptr, items, n, flat)

    def histories(self, users: np.ndarray, split: str, max_len: int, pad: int) -> np.ndarray:
        """``(len(users), width)``: each user's last ``max_len`` history items for ``split``
        (see :meth:`history_end`), oldest first, left-padded with ``pad``; ``width`` is
        ``max_len``, or the longest of these histories where that is shorter (the columns cut are
        padding in every row: a huge ``max_len`` costs no memory here)."""
        return self._windows(self.items, users, split, max_len, pad)

    def rating_histories(self, users: np.ndarray, split: str, max_len: int) -> np.ndarray:
        """The ratings of :meth:`histories`' items, in the same places, 0 at padding."""
        if self.ratings is None:
            raise ValueError("these sequences carry no ratings")
        return self._windows(self.ratings, users, split, max_len, 0.0)

    def _windows(self, values: np.ndarray, users: np.ndarray, split: str, max_len: int, pad) -> np.ndarray:
        ends = self.history_end(split)[users]
        starts = np.maximum(self.ptr[users], ends - max_len)
        width = min(max_len, max(int((ends - starts).max(initial=0)), 1))
        return _left_pad(values, starts, ends, width, pad)


def _left_pad(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, pad: int) -> np.ndarray:
    """Rows ``items[starts[r]:ends[r]]`` (each at most ``width`` long) right-aligned in a
    ``(rows, width)`` array filled with ``pad``."""
    n = len(starts)
    out = np.full((n, width), pad, dtype=items.dtype)
    lengths = ends - starts
    rows = np.repeat(np.arange(n), lengths)
    offs = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = width - np.repeat(lengths, lengths) + offs
    out[rows, cols] = items[np.repeat(starts, lengths) + offs]
    return out


#: item ids are refused from here on (no item table of 2**31 rows fits anywhere)
MAX_ITEM_ID = 2**31 - 1
#: an id range over this many times the distinct items (and :data:`SPARSE_SLACK` more) is refused
SPARSE_FACTOR = 2
SPARSE_SLACK = 1000


def item_count(seqs: list[list[int]], where: str, allow_sparse_ids: bool = False) -> int:
    """The item vocabulary that ids ``0..max`` imply, checked against the distinct ids before
    anything is allocated: one stray id of 10,000,000 among a few hundred items would otherwise
    size every item table (and the model's memory) by it.

    Raises:
        DataError: an id of :data:`MAX_ITEM_ID` or more, or (unless ``allow_sparse_ids``) an id
            range over ``SPARSE_FACTOR`` times the distinct ids plus ``SPARSE_SLACK``.
    """
    top = max((max(s) for s in seqs if s), default=-1)
    if top >= MAX_ITEM_ID:
        raise DataError(f"{where}: item id {top} is too large (ids must stay below {MAX_ITEM_ID}); number the "
                        "items densely, e.g. with `python data/prepare.py s3rec FILE --name NAME`")
    distinct = len({i for s in seqs for i in s})
    if not allow_sparse_ids and top + 1 > SPARSE_FACTOR * distinct + SPARSE_SLACK:
        raise DataError(f"{where}: item ids run up to {top} but only {distinct} distinct items occur, so the item "
                        f"table would have {top + 1:,} rows; a stray id? Number the items densely (`python "
                        "data/prepare.py s3rec FILE --name NAME` does), or pass --allow-sparse-ids to keep the ids")
    return top + 1


def read_s3rec_sequences(path: str | Path, allow_sparse_ids: bool = False) -> SequenceData:
    """S3-Rec's ``<name>.txt`` (``user item item ...``, item ids from 1) in file order.

    Raises:
        DataError: a malformed line (named with its number: ids must be ASCII digits), a user on
            two lines (named with both), an empty file, or ids far sparser than the items
            (:func:`item_count`).
    """
    path = Path(path)
    seqs, line_of = [], {}
    for no, line in text_lines(path):
        cells = line.split()
        if not cells:
            continue
        ids = [int_cell(c) for c in cells]
        if None in ids:
            raise DataError(f"{path}:{no}: {cells[ids.index(None)]!r} is not an id; expected 'user item item ...' "
                            "with integer ids (ASCII digits)")
        if len(ids) < 2 or min(ids[1:]) < 1:
            raise DataError(f"{path}:{no}: expected a user id and at least one item id >= 1 (S3-Rec numbers "
                            "items from 1)")
        if ids[0] in line_of:
            raise DataError(f"{path}:{no}: user {ids[0]} already has a sequence on line {line_of[ids[0]]}; an "
                            "S3-Rec file holds one line per user (join the two in time order)")
        line_of[ids[0]] = no
        seqs.append([i - 1 for i in ids[1:]])
    if not seqs:
        raise DataError(f"{path}: no sequences")
    return SequenceData.from_lists(seqs, item_count(seqs, str(path), allow_sparse_ids))


def read_sequences_jsonl(path: str | Path, num_users: int | None = None, num_items: int | None = None,
                         allow_sparse_ids: bool = False) -> SequenceData:
    """``sequences.jsonl`` of ``data/prepare.py``: ``{"uid", "items"}`` per line, ids from 0.

    ``num_users`` / ``num_items``: the matrices' shape, when the folder has them; without them
    the uids must run ``0..n-1`` and the item count comes from the ids (:func:`item_count`).

    Raises:
        DataError: a line without integer ``uid`` and ``items`` (strings, floats and booleans
            are refused, not converted), a uid twice, ids out of range, or no line at all.
    """
    path = Path(path)
    rows: dict[int, tuple[int, list[int]]] = {}
    rated: dict[int, list[float]] = {}
    with_ratings = None  # whether the lines carry ratings: as the first says
    for no, row in json_lines(path):
        u, items = row.get("uid"), row.get("items")
        if not is_int(u) or not isinstance(items, list) or not all(is_int(i) for i in items):
            raise DataError(f'{path}:{no}: expected {{"uid": int, "items": [int, ...]}} with integer ids, got uid '
                            f"{u!r} and items {str(items)[:60]}")
        if u in rows:
            raise DataError(f"{path}:{no}: uid {u} already has a sequence on line {rows[u][0]}; one line per user")
        if u < 0 or any(i < 0 for i in items):
            raise DataError(f"{path}:{no}: ids start at 0; found a negative id")
        with_ratings = "ratings" in row if with_ratings is None else with_ratings
        if ("ratings" in row) != with_ratings:
            raise DataError(f"{path}:{no}: {'has' if 'ratings' in row else 'lacks'} \"ratings\", unlike the lines "
                            "before it: give every line ratings, or none")
        if with_ratings:
            r = row["ratings"]
            if not isinstance(r, list) or len(r) != len(items) or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in r):
                raise DataError(f"{path}:{no}: \"ratings\" must be finite numbers, one per item")
            rated[u] = r
        rows[u] = (no, items)
    if not rows:
        raise DataError(f"{path}: no sequences (the file has no lines)")
    if num_users is None:
        num_users = len(rows)
    for u, (no, _) in rows.items():
        if u >= num_users:
            raise DataError(f"{path}:{no}: uid {u} outside 0..{num_users - 1}"
                            + ("" if len(rows) < num_users else " (uids must run from 0 with no gaps)"))
    seqs: list[list[int]] = [[] for _ in range(num_users)]
    for u, (_, items) in rows.items():
        seqs[u] = items
    ratings = None
    if rated:
        ratings = [[] for _ in range(num_users)]
        for u, r in rated.items():
            ratings[u] = r
    if num_items is None:
        num_items = item_count(seqs, str(path), allow_sparse_ids)
    return SequenceData.from_lists(seqs, num_items, ratings)
