"""Loading and checking datasets in RLMRec's layout, and pairwise (BPR) training batches.

A dataset folder holds ``trn_mat.pkl``, ``val_mat.pkl`` and ``tst_mat.pkl`` (pickled scipy
sparse ``users × items`` matrices, any sparse format; non-zero means "interacted") and,
optionally, the semantic embeddings ``usr_emb_np.pkl`` / ``itm_emb_np.pkl`` (``users × d``
and ``items × d`` arrays) and the text profiles ``usr_prf.pkl`` / ``itm_prf.pkl``.

Pickles are read with :func:`semrec.common.io.load_pickle`: a downloaded pickle can neither
run code nor crash the process (every sparse matrix in it is checked before use).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from semrec.encoder.attributes import ATTRIBUTE_FILE, ItemAttributes, read_item_attributes, read_s3rec_attributes
from semrec.common.io import DataError, load_pickle
from semrec.encoder.sequences import SequenceData, read_s3rec_sequences, read_sequences_jsonl

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "trn_mat.pkl", "valid": "val_mat.pkl", "test": "tst_mat.pkl"}
EMBEDDING_FILES = {"user": "usr_emb_np.pkl", "item": "itm_emb_np.pkl"}
PROFILE_FILES = {"user": "usr_prf.pkl", "item": "itm_prf.pkl"}


def _binary_csr(obj: Any, path: Path) -> sp.csr_matrix:
    if not sp.issparse(obj):
        raise DataError(f"{path}: expected a scipy sparse users×items matrix, got {type(obj).__name__}")
    m = sp.csr_matrix(obj)
    if m.nnz and not np.all(np.isfinite(m.data)):
        bad = int((~np.isfinite(m.data)).sum())
        raise DataError(f"{path}: {bad} stored values are NaN or infinite")
    m.eliminate_zeros()
    m.sum_duplicates()
    m.data = np.ones_like(m.data, dtype=np.float32)
    m = m.astype(np.float32)
    m.sort_indices()
    return m


@dataclass
class InteractionData:
    """An implicit-feedback dataset split into train / validation / test.

    Attributes:
        train, valid, test: binary ``users × items`` CSR matrices (float32).
        user_emb, item_emb: semantic embeddings ``(users, d)`` / ``(items, d)``, or ``None``.
        user_profiles, item_profiles: text profiles indexed by id, or ``None``.
        name: dataset name; ``path``: the folder it came from.
        sequences: every user's time-ordered items (:class:`SequenceData`), when the source has
            them; the matrices are then its leave-one-out split (see :meth:`require_sequences`).
        attributes: the item–attribute edges (:class:`~semrec.encoder.attributes.ItemAttributes`),
            from ``item_attributes.jsonl`` or an S3-Rec file's ``_item2attributes.json``.
    """

    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    user_emb: np.ndarray | None = None
    item_emb: np.ndarray | None = None
    user_profiles: Any = None
    item_profiles: Any = None
    name: str = ""
    path: Path | None = None
    sequences: SequenceData | None = None
    attributes: ItemAttributes | None = None
    _sequences_checked: bool = field(default=False, repr=False)
    _train_keys: torch.Tensor | None = field(default=None, repr=False)

    @property
    def num_users(self) -> int:
        return self.train.shape[0]

    @property
    def num_items(self) -> int:
        return self.train.shape[1]

    def require_sequences(self, model: str = "this model") -> SequenceData:
        """The sequences, checked to be the split the matrices hold; DataError otherwise."""
        where = self.path or self.name
        if self.sequences is None:
            raise DataError(f"{where}: {model} needs time-ordered sequences, and this dataset has none; use an "
                            "S3-Rec file (--data-dir path/to/Beauty.txt) or a folder with sequences.jsonl "
                            "(data/prepare.py writes it)")
        seq = self.sequences
        if seq.num_users != self.num_users or seq.num_items != self.num_items:
            raise DataError(f"{where}: sequences.jsonl has {seq.num_users} users × {seq.num_items} items, the "
                            f"matrices {self.num_users} × {self.num_items}")
        if not getattr(self, "_sequences_checked", False):
            seq.check(str(where))
            for split in ("valid", "test"):
                m = self.split(split)
                if not (np.array_equal(np.diff(m.indptr), np.ones(self.num_users))
                        and np.array_equal(m.indices, seq.targets(split))):
                    raise DataError(f"{where}: the {split} matrix is not the leave-one-out split of the sequences "
                                    f"(one {'second last' if split == 'valid' else 'last'} item per user); prepare "
                                    "the folder with `data/prepare.py ... --split leave-one-out`, or read the "
                                    "S3-Rec file itself")
            self._sequences_checked = True
        return seq

    def fingerprint(self) -> str:
        """A SHA-256 of what a model reads (splits, sequences, embeddings, attributes): a run keeps
        it, so that resuming or evaluating it on data rewritten in place is refused."""
        import hashlib

        h = hashlib.sha256()
        parts = [np.asarray(self.train.shape)]
        for m in (self.train, self.valid, self.test):
            parts += [m.indptr, m.indices]
        if self.sequences is not None:
            parts += [self.sequences.ptr, self.sequences.items]
            parts += [] if self.sequences.ratings is None else [self.sequences.ratings]
        parts += [e for e in (self.user_emb, self.item_emb) if e is not None]
        if self.attributes is not None:
            parts += [self.attributes.edge_item, self.attributes.edge_attribute, self.attributes.edge_relation]
        for a in parts:
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def split(self, name: str) -> sp.csr_matrix:
        try:
            return {"train": self.train, "valid": self.valid, "test": self.test}[name]
        except KeyError:
            raise ValueError(f"unknown split {name!r}; choose from train, valid, test") from None

    def stats(self) -> dict[str, Any]:
        u, i = self.train.shape
        return {"users": u, "items": i, "train": int(self.train.nnz), "valid": int(self.valid.nnz),
                "test": int(self.test.nnz),
                "density": float((self.train.nnz + self.valid.nnz + self.test.nnz) / (u * i)),
                "semantic_dim": None if self.user_emb is None else int(self.user_emb.shape[1])}

    def overlaps(self) -> dict[str, int]:
        """Number of (user, item) pairs shared by each pair of splits."""
        pairs = {"train&valid": (self.train, self.valid), "train&test": (self.train, self.test),
                 "valid&test": (self.valid, self.test)}
        return {k: int(a.multiply(b).nnz) for k, (a, b) in pairs.items()}

    def check(self, source: str = "") -> None:
        """Validate shapes, emptiness and embeddings; refuse a held-out split that lies inside
        train, warn (with counts) about partially overlapping splits."""
        where = source or str(self.path or self.name)
        for split, fname in SPLIT_FILES.items():
            m = self.split(split)
            if m.shape != self.train.shape:
                shapes = ", ".join(f"{f}={self.split(s).shape}" for s, f in SPLIT_FILES.items())
                raise DataError(f"{where}: split shapes disagree ({shapes})")
            if m.nnz == 0:
                raise DataError(f"{where}/{fname}: the {split} split has no interactions")
        full = np.flatnonzero(np.diff(self.train.indptr) >= self.num_items)
        if len(full):
            raise DataError(f"{where}/{SPLIT_FILES['train']}: {len(full)} user(s) interacted with every "
                            "item, so no negative item can be sampled for them")
        for kind, fname in EMBEDDING_FILES.items():
            emb = getattr(self, f"{kind}_emb")
            if emb is None:
                continue
            n = self.num_users if kind == "user" else self.num_items
            if emb.ndim != 2 or emb.shape[0] != n:
                raise DataError(f"{where}/{fname}: expected {n} rows ({kind}s) × d, got shape {emb.shape}")
            if not np.all(np.isfinite(emb)):
                raise DataError(f"{where}/{fname}: {int((~np.isfinite(emb)).any(axis=1).sum())} rows "
                                "contain NaN or infinite values")
        overlaps = self.overlaps()
        for split in ("valid", "test"):
            n = self.split(split).nnz
            if overlaps[f"train&{split}"] == n:
                raise DataError(f"{where}/{SPLIT_FILES[split]}: all {n} {split} interactions are also in "
                                f"{SPLIT_FILES['train']}, so none can be ranked (training items are excluded); "
                                "the splits must be disjoint")
        over = {k: v for k, v in overlaps.items() if v}
        if over:
            log.warning("%s: splits overlap (%s shared user-item pairs); metrics on overlapping "
                        "pairs are optimistic", where, ", ".join(f"{k}: {v}" for k, v in over.items()))

    # ----- pairwise training data ---------------------------------------------------------
    def train_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All training (user, item) pairs as two int64 tensors, in row-major order."""
        coo = self.train.tocoo()
        return torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))

    def sample_negatives(self, users: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One uniformly drawn item per user that the user has not interacted with in training.

        Vectorised rejection sampling: draw for everyone, redraw only the collisions.
        """
        if self._train_keys is None:
            u, i = self.train_pairs()
            self._train_keys = u * self.num_items + i  # row-major order is already sorted
        keys = self._train_keys
        neg = torch.randint(0, self.num_items, users.shape, generator=generator)
        todo = torch.arange(users.numel())
        while todo.numel():
            k = users[todo] * self.num_items + neg[todo]
            pos = torch.searchsorted(keys, k).clamp_(max=keys.numel() - 1)
            todo = todo[keys[pos] == k]
            neg[todo] = torch.randint(0, self.num_items, todo.shape, generator=generator)
        return neg


def load_embeddings(path: Path) -> np.ndarray:
    emb = load_pickle(path)
    if sp.issparse(emb):
        emb = emb.toarray()
    emb = np.asarray(emb)
    if emb.dtype == object or not np.issubdtype(emb.dtype, np.number) or np.iscomplexobj(emb):
        raise DataError(f"{path}: expected a real-valued numeric array, got dtype {emb.dtype}")
    if emb.ndim != 2 or 0 in emb.shape:
        raise DataError(f"{path}: expected a (rows, width) array with at least one row and column, got shape "
                        f"{emb.shape}")
    return emb.astype(np.float32, copy=False)


def load_dataset(path: str | Path, name: str | None = None, with_profiles: bool = False,
                 allow_sparse_ids: bool = False) -> InteractionData:
    """Load and validate a dataset.

    Args:
        path: a folder in RLMRec's layout (``trn_mat.pkl``, ``val_mat.pkl``, ``tst_mat.pkl`` and
            optional files; with ``sequences.jsonl`` the time-ordered sequences come along, and
            the matrices may then be absent: they are derived leave-one-out), or an S3-Rec
            sequence file ``<name>.txt`` (split leave-one-out as the S3-Rec code does), or a
            folder holding one such file and no matrices (``data/beauty/Beauty.txt``).
        name: dataset name (default: the folder name, or the file's stem in lower case).
        with_profiles: also load ``usr_prf.pkl`` / ``itm_prf.pkl`` when present.
        allow_sparse_ids: keep item ids far sparser than the items that occur (sequences without
            matrices; :func:`~semrec.encoder.sequences.item_count` refuses them by default).

    Raises:
        DataError: a missing or malformed file (the message names it).
    """
    path = Path(path)
    if path.is_dir() and not (path / "sequences.jsonl").exists() \
            and not any((path / n).exists() for n in SPLIT_FILES.values()):
        found = sorted(path.glob("*.txt"))
        if len(found) == 1:  # S3-Rec's files copied into data/<name>/
            return load_dataset(found[0], name=name or path.name, with_profiles=with_profiles,
                                allow_sparse_ids=allow_sparse_ids)
        if len(found) > 1:
            raise DataError(f"{path}: holds {len(found)} .txt files ({', '.join(f.name for f in found[:4])}) and no "
                            f"{SPLIT_FILES['train']}; point --data-dir at the S3-Rec sequence file itself")
    if path.is_file() and path.suffix == ".txt":
        seqs = read_s3rec_sequences(path, allow_sparse_ids)
        seqs.check(str(path))
        train, valid, test = seqs.split_matrices()
        data = InteractionData(train, valid, test, name=name or path.stem.lower(), path=path, sequences=seqs)
        attr_file = path.with_name(path.stem + "_item2attributes.json")
        if attr_file.exists():
            data.attributes = read_s3rec_attributes(attr_file, data.num_items)
        data.check(str(path))
        return data
    if path.is_file():
        raise DataError(f"{path}: is a file; a dataset is a folder in RLMRec's layout or an S3-Rec sequence file "
                        "(.txt); convert other files with `python data/prepare.py` (docs/data.md)")
    if not path.is_dir():
        raise DataError(f"dataset folder {path} does not exist; create it with `python data/prepare.py` "
                        "or fetch RLMRec's data with `python data/download.py NAME`")
    seq_file = path / "sequences.jsonl"
    mats = {}
    for split, fname in SPLIT_FILES.items():
        f = path / fname
        if not f.exists():
            if seq_file.exists() and not any((path / n).exists() for n in SPLIT_FILES.values()):
                break  # derived from the sequences below
            raise DataError(f"{f}: missing (a dataset needs {', '.join(SPLIT_FILES.values())})")
        mats[split] = _binary_csr(load_pickle(f), f)
    sequences = None
    if seq_file.exists():
        if mats:
            sequences = read_sequences_jsonl(seq_file, *mats["train"].shape)
        else:
            sequences = read_sequences_jsonl(seq_file, allow_sparse_ids=allow_sparse_ids)
            sequences.check(str(seq_file))
            mats = dict(zip(SPLIT_FILES, sequences.split_matrices()))
    data = InteractionData(**mats, name=name or path.name, path=path, sequences=sequences)
    for kind, fname in EMBEDDING_FILES.items():
        if (path / fname).exists():
            setattr(data, f"{kind}_emb", load_embeddings(path / fname))
    if (path / ATTRIBUTE_FILE).exists():
        data.attributes = read_item_attributes(path / ATTRIBUTE_FILE, data.num_items)
    if with_profiles:
        for kind, fname in PROFILE_FILES.items():
            if (path / fname).exists():
                setattr(data, f"{kind}_profiles", load_pickle(path / fname))
    data.check(str(path))
    return data
