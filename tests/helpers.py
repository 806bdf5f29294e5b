"""Helpers for the tests: tiny datasets in RLMRec's layout, and the shared real data."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# for child processes whose numbers are compared across runs: a multi-threaded reduction may
# sum in another order from run to run (a 1e-7 difference in a loss)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with a clear message."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (tests expect ../shared beside the repo)")
    return path


def wait_for_lines(proc: subprocess.Popen, path: Path, lines: int, timeout: float = 120.0) -> None:
    """Wait until the text file ``path`` has ``lines`` lines while ``proc`` still runs (a point
    to kill it at); fail if ``proc`` ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the process finished before {path} had {lines} lines, so it could not be killed"


def random_splits(num_users=30, num_items=40, per_user=8, seed=0):
    """Disjoint train/valid/test matrices with every user in every split."""
    rng = np.random.default_rng(seed)
    parts = [([], []), ([], []), ([], [])]
    for u in range(num_users):
        items = rng.choice(num_items, size=per_user, replace=False)
        for s, chunk in enumerate(np.split(items, [per_user - 4, per_user - 2])):
            parts[s][0].extend([u] * len(chunk))
            parts[s][1].extend(chunk)
    return [sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(num_users, num_items)) for r, c in parts]


def random_sequences(num_users=30, num_items=40, length=8, seed=0, repeats=False):
    """Time-ordered item lists, one per user (items drawn without repeats unless ``repeats``)."""
    rng = np.random.default_rng(seed)
    return [rng.choice(num_items, size=length + int(u % 3), replace=repeats).tolist() for u in range(num_users)]


def write_sequences(folder: Path, seqs, num_items=40) -> None:
    """``sequences.jsonl`` and the leave-one-out matrices that go with it."""
    from semrec.encoder.sequences import SequenceData

    folder.mkdir(parents=True, exist_ok=True)
    mats = SequenceData.from_lists(seqs, num_items).split_matrices()
    for name, m in zip(["trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl"], mats):
        with open(folder / name, "wb") as f:
            pickle.dump(m.tocoo(), f)
    (folder / "sequences.jsonl").write_text("".join(json.dumps({"uid": u, "items": s}) + "\n" for u, s in enumerate(seqs)))


def write_dataset(folder: Path, mats=None, user_emb=None, item_emb=None, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    mats = mats if mats is not None else random_splits()
    files = dict(zip(["trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl"], mats))
    if user_emb is not None:
        files["usr_emb_np.pkl"] = user_emb
    if item_emb is not None:
        files["itm_emb_np.pkl"] = item_emb
    files.update(extra)
    for name, obj in files.items():
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)
    return folder


# items 0-9: a brand and two categories; 10-19: one category; 20-39: none (isolated in the attribute graph)
TINY_ATTRIBUTES = ([{"iid": i, "attributes": {"brand": [f"b{i % 3}"], "category": ["c0", f"c{1 + i % 2}"]}}
                    for i in range(10)]
                   + [{"iid": i, "attributes": {"category": [f"c{i % 2}"]}} for i in range(10, 20)])


def write_attributes(folder: Path, rows=TINY_ATTRIBUTES) -> Path:
    """``item_attributes.jsonl`` with ``rows``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "item_attributes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
