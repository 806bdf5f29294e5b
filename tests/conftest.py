"""Shared fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_dataset


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    return write_dataset(tmp_path / "tiny")


@pytest.fixture
def tiny_data(tiny_dir):
    from semrec.encoder.dataset import load_dataset

    return load_dataset(tiny_dir)
