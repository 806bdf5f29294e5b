"""Shared fixtures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import write_dataset


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """30 users, 40 items, disjoint splits, and 16-d semantic embeddings."""
    rng = np.random.default_rng(0)
    return write_dataset(tmp_path / "tiny", user_emb=rng.standard_normal((30, 16)),
                         item_emb=rng.standard_normal((40, 16)))


@pytest.fixture
def tiny_data(tiny_dir):
    from semrec.encoder.dataset import load_dataset

    return load_dataset(tiny_dir)
