"""Checks of a loaded ``checkpoint.pt``, field by field, before any of it is used.

A checkpoint is a file anyone may have edited: a field of the wrong type or range (an epoch
``"x"`` or ``-1000000``, best weights of the wrong shape) would otherwise crash a resume half-way
or train from a nonsense state, after the history had been rewritten. The trainer reads nothing
and writes nothing until these say the checkpoint is this run's.
"""
from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import torch

from semrec.common.io import DataError, atomic_write, is_int


def write_checkpoint(path: Path, ckpt: dict) -> None:
    """``ckpt`` to ``path``, whole or not at all."""
    buffer = io.BytesIO()  # serialised first: a failed write (full disk) is then an OSError that names the file
    torch.save(ckpt, buffer)
    atomic_write(path, buffer.getbuffer())


def read_checkpoint(path: Path, device: torch.device, reference: dict[str, torch.Tensor], epochs: int,
                    what: str = "resumed") -> dict:
    """The checkpoint at ``path``, checked against the model's state dict ``reference`` and the
    run's ``epochs`` (:func:`checkpoint_problem`); DataError naming the file otherwise."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint (a run writes one after its first validation); "
                                f"nothing was {what}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or crafted file; torch's advice to unpickle it is wrong here
        kind = "it holds objects a checkpoint never does (refused, nothing was run)" \
            if isinstance(e, pickle.UnpicklingError) else f"{type(e).__name__}"
        raise DataError(f"{path}: not a readable semrec checkpoint ({kind}); nothing was {what}") from None
    problem = checkpoint_problem(ckpt, reference, epochs, full=what == "resumed")
    if problem:
        raise DataError(f"{path}: does not match this run's model and config ({problem}); nothing was {what}")
    return ckpt


def _weights_problem(weights: Any, reference: dict[str, torch.Tensor]) -> str | None:
    """What keeps ``weights`` from loading into a model whose state dict is ``reference``."""
    if not isinstance(weights, dict):
        return f"a {type(weights).__name__}, not a dict of tensors"
    missing, extra = sorted(set(reference) - set(weights)), sorted(set(weights) - set(reference))
    if missing or extra:
        return f"other tensors than the model's (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, ref in reference.items():
        w = weights[name]
        if not isinstance(w, torch.Tensor) or w.shape != ref.shape:
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            return f"{name} has shape {shape}, the model's {tuple(ref.shape)}"
    return None


def checkpoint_problem(ckpt: Any, reference: dict[str, torch.Tensor], epochs: int, full: bool) -> str | None:
    """What is wrong with a loaded checkpoint's fields (types, ranges, tensor shapes) for a model
    whose state dict is ``reference`` and a run of ``epochs`` epochs, or ``None``. ``full``: every
    field a resume reads; otherwise those ``--evaluate`` reads (the best weights and their epoch)."""
    if not isinstance(ckpt, dict):
        return f"a {type(ckpt).__name__}, not a dict of fields"
    ints = {"best_epoch": (-1, epochs - 1)}
    if full:
        ints.update(epoch=(-1, epochs - 1), bad_evals=(0, None))
    for name, (low, high) in ints.items():
        value = ckpt.get(name)
        if not is_int(value) or value < low or (high is not None and value > high):
            return f"{name} is {value!r}; expected an integer in [{low}, {'inf' if high is None else high}]"
    if full and ckpt["best_epoch"] > ckpt["epoch"]:
        return f"best_epoch {ckpt['best_epoch']} is after the last epoch {ckpt['epoch']}"
    for name in ("best_weights", "model") if full else ("best_weights",):
        weights = ckpt.get(name)
        if weights is None and name == "best_weights":
            continue
        problem = _weights_problem(weights, reference)
        if problem:
            return f"{name}: {problem}"
    if not full:
        return None
    score = ckpt.get("best_score")
    if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score):
        return f"best_score is {score!r}; expected a number"
    best_valid = ckpt.get("best_valid")
    if not isinstance(best_valid, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in best_valid.items()):
        return "best_valid is not a dict of metric values"
    for name in ("train_seconds", "eval_seconds"):
        values = ckpt.get(name)
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            return f"{name} is not a list of numbers"
    for name in ("optimizer", "scheduler"):
        if not isinstance(ckpt.get(name), dict):
            return f"no {name} state"
    for name in ("rng_torch", "rng_batches"):
        state = ckpt.get(name)
        if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
            return f"{name} is not a random generator's state"
    if not isinstance(ckpt.get("rng_cuda"), list):
        return "rng_cuda is not a list"
    ranks = ckpt.get("rng_torch_ranks")  # a run of several processes: each rank's own stream
    if ranks is not None and not (isinstance(ranks, list) and all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in ranks)):
        return "rng_torch_ranks is not a list of random generator states"
    return None
