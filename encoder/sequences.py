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

from semrec.encoder.io import DataError, json_lines

SPLITS = ("train", "valid", "test")


@dataclass
class SequenceData:
    """Every user's time-ordered items, split leave-one-out.

    Attributes:
        ptr: ``(U+1,)`` row pointers into ``items``.
        items: ``(N,)`` item ids (0-based), users' sequences one after another.
        num_items: size of the item vocabulary.
    """

    ptr: np.ndarray
    items: np.ndarray
    num_items: int

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
        the second last); ``test``: all but the last.
        """
        back = {"train": 2, "valid": 2, "test": 1}[split]
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
    def from_lists(cls, seqs: list[list[int]], num_items: int | None = None) -> "SequenceData":
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        ptr = np.concatenate([[0], np.cumsum(lengths)])
        items = np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(ptr[-1]))
        n = int(num_items) if num_items else (int(items.max()) + 1 if len(items) else 0)
        return cls(ptr, items, n)

    def histories(self, users: np.ndarray, split: str, max_len: int, pad: int) -> np.ndarray:
        """``(len(users), max_len)``: each user's last ``max_len`` history items for ``split``
        (see :meth:`history_end`), oldest first, left-padded with ``pad``."""
        ends = self.history_end(split)[users]
        starts = np.maximum(self.ptr[users], ends - max_len)
        return _left_pad(self.items, starts, ends, max_len, pad)


def _left_pad(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, pad: int) -> np.ndarray:
    """Rows ``items[starts[r]:ends[r]]`` (each at most ``width`` long) right-aligned in a
    ``(rows, width)`` array filled with ``pad``."""
    n = len(starts)
    out = np.full((n, width), pad, dtype=np.int64)
    lengths = ends - starts
    rows = np.repeat(np.arange(n), lengths)
    offs = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = width - np.repeat(lengths, lengths) + offs
    out[rows, cols] = items[np.repeat(starts, lengths) + offs]
    return out


def read_s3rec_sequences(path: str | Path) -> SequenceData:
    """S3-Rec's ``<name>.txt`` (``user item item ...``, item ids from 1) in file order.

    Raises:
        DataError: a malformed line (named with its number) or an empty file.
    """
    path = Path(path)
    seqs = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            cells = line.split()
            if not cells:
                continue
            try:
                ids = [int(c) for c in cells]
            except ValueError:
                raise DataError(f"{path}:{no}: expected 'user item item ...' with integer ids") from None
            if len(ids) < 2 or min(ids[1:]) < 1:
                raise DataError(f"{path}:{no}: expected a user id and at least one item id >= 1")
            seqs.append([i - 1 for i in ids[1:]])
    if not seqs:
        raise DataError(f"{path}: no sequences")
    return SequenceData.from_lists(seqs)


def read_sequences_jsonl(path: str | Path, num_users: int, num_items: int) -> SequenceData:
    """``sequences.jsonl`` of ``data/prepare.py``: ``{"uid", "items"}`` per line, ids from 0."""
    path = Path(path)
    seqs: list[list[int]] = [[] for _ in range(num_users)]
    for no, row in json_lines(path):
        try:
            u, items = int(row["uid"]), [int(i) for i in row["items"]]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path}:{no}: expected {{\"uid\": int, \"items\": [int, ...]}}") from None
        if not 0 <= u < num_users:
            raise DataError(f"{path}:{no}: uid {u} outside 0..{num_users - 1}")
        seqs[u] = items
    return SequenceData.from_lists(seqs, num_items)
