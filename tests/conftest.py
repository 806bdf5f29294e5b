"""Shared fixtures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import random_sequences, write_attributes, write_dataset, write_sequences


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """30 users, 40 items, time-ordered sequences of 8 to 10 distinct items split leave-one-out
    (so graph and sequential models both train on it), 16-d semantic embeddings, and item
    attributes (:data:`helpers.TINY_ATTRIBUTES`: items 20-39 have none)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiny"
    write_sequences(folder, random_sequences())
    write_attributes(folder)
    return write_dataset(folder, mats=[], user_emb=rng.standard_normal((30, 16)), item_emb=rng.standard_normal((40, 16)))


@pytest.fixture
def tiny_data(tiny_dir):
    from semrec.encoder.dataset import load_dataset

    return load_dataset(tiny_dir)
