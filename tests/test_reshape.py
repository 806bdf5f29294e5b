"""Issue 35's reshape of the sequential family moved no number.

``fixtures/reference_epochs.json`` was written by this file (``python tests/test_reshape.py``) at
the commit before the reshape: for every registered model and a few item-table variants, the
losses and validation metrics of the first three epochs on the tiny dataset, one thread, seed
2023. The test trains the same runs and asks for the same numbers, bit for bit.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import random_sequences, write_attributes, write_dataset, write_sequences  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference_epochs.json"
#: settings the tiny data needs (as test_cli's), and the item-table variants checked beside the models
SETTINGS = {"gsasrec": ["model.negatives=8"], "llmesr": ["model.dim=16"]}
VARIANTS = {
    "sasrec+frozen": ("sasrec", ["model.item_text=frozen"]),
    "sasrec+trainable": ("sasrec", ["model.item_text=trainable"]),
    "sasrec+pca+shuffle": ("sasrec", ["model.item_text=pca", "model.dim=16", "model.text_shuffle=true"]),
    "sasrec+gate": ("sasrec", ["model.item_graph=gate"]),
    "gru4rec+concat+frozen": ("gru4rec", ["model.item_text=frozen", "model.item_graph=concat"]),
    "bert4rec+bce": ("bert4rec", ["model.loss=bce", "model.negatives=3"]),
    "gsasrec+per_sequence": ("gsasrec", ["model.negatives=8", "train.negatives_per=sequence", "train.batch_size=8"]),
    "llmesr+heads+gate": ("llmesr", ["model.dim=16", "model.user_heads=true", "model.item_graph=gate"]),
    "llmesr+bert4rec+step": ("llmesr", ["model.dim=16", "model.encoder=bert4rec", "model.teacher=step"]),
}
SKIP_KEYS = ("seconds",)


def tiny_folder(root: Path) -> Path:
    """The tests' tiny dataset (conftest's ``tiny_dir``)."""
    rng = np.random.default_rng(0)
    folder = root / "tiny"
    write_sequences(folder, random_sequences())
    write_attributes(folder)
    return write_dataset(folder, mats=[], user_emb=rng.standard_normal((30, 16)),
                         item_emb=rng.standard_normal((40, 16)))


#: the models registered at the commit the reference was written at (later models have no reference)
MODELS = ("autocf", "bert4rec", "dccf", "gat", "gccf", "gru4rec", "gsasrec", "lightgcn", "llmesr", "sasrec", "sgl",
          "simgcl")


def runs() -> dict[str, tuple[str, list[str]]]:
    from semrec.encoder.registry import available_models

    out = {name: (name, SETTINGS.get(name.split("_")[0], [])) for name in available_models()
           if name.split("_")[0] in MODELS}
    return {**out, **VARIANTS}


def epochs(model: str, settings: list[str], data: Path, out: Path) -> list[dict]:
    """The history of a three-epoch run, timings left out, on one thread."""
    from semrec.encoder.train_encoder import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = ["--model", model, "--dataset", "tiny", "--data-dir", str(data), "--out", str(out), "--device", "cpu",
                "--set", "train.epochs=3", "--set", "train.test_step=1", "--set", "train.patience=5", "--quiet"]
        assert main(argv + [a for s in settings for a in ("--set", s)]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = [json.loads(ln) for ln in (out / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in ln.items() if not any(s in k for s in SKIP_KEYS)} for ln in lines]


@pytest.mark.parametrize("label", sorted(runs()))
def test_the_first_three_epochs_are_those_before_the_reshape(label, tmp_path):
    reference = json.loads(REFERENCE.read_text())
    assert label in reference, f"{label} has no reference numbers"
    model, settings = runs()[label]
    got = epochs(model, settings, tiny_folder(tmp_path), tmp_path / "run")
    assert len(got) == len(reference[label]) and all(_same(a, b) for a, b in zip(got, reference[label])), \
        (got, reference[label])


def _same(a, b) -> bool:
    """Equal, floats to rounding (1e-6 relative): another numpy or scipy moves the last bits of a
    sum; a change to a model moves far more."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


if __name__ == "__main__":  # write the reference (at the commit before the reshape)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = tiny_folder(Path(tmp))
        result = {label: epochs(model, settings, data, Path(tmp) / label) for label, (model, settings) in runs().items()}
    REFERENCE.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}: {len(result)} runs")
