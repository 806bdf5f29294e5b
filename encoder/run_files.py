"""What the trainer writes into a run folder besides checkpoints: the history's upkeep, the
per-user metrics, the TensorBoard log, and what the history says was minimised."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from semrec.common.io import atomic_write, is_int


def trim_history(hist: Path, last_epoch: int) -> None:
    """Drop the history lines of epochs after ``last_epoch`` (a resumed run redoes them) and a last
    line cut short by a kill; every other line is kept as it is, bytes and all."""
    if not hist.exists():
        return
    lines = [ln for ln in hist.read_bytes().split(b"\n") if ln.strip()]
    kept = []
    for no, ln in enumerate(lines):
        try:
            epoch = json.loads(ln).get("epoch")
        except (ValueError, AttributeError):  # not JSON (or not UTF-8): cut short if last, else kept
            epoch = None
        if epoch is None or not is_int(epoch):
            if no < len(lines) - 1:
                kept.append(ln)
        elif epoch <= last_epoch:
            kept.append(ln)
    atomic_write(hist, b"".join(ln + b"\n" for ln in kept))


def loss_terms(hist: Path) -> str:
    """What was minimised, by the names of the loss terms the history's last line records."""
    skip = {"epoch", "train_seconds", "train_cpu_seconds", "eval_seconds", "eval_cpu_seconds", "valid", "loss"}
    try:
        last = json.loads(hist.read_text().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        return "loss"
    terms = [k for k in last if k not in skip]
    return " + ".join(terms) if terms else "loss"


#: each user's final metrics in a run folder (``semrec-compare``'s input); ``--evaluate`` under other
#: settings writes ``per_user-PROTOCOL-EXCLUDE.npz`` beside it
PER_USER = "per_user.npz"


def evaluated_results(protocol: str, exclude: str) -> str:
    """The results file ``--evaluate`` writes for a run scored with ``protocol`` and ``exclude``."""
    return f"eval-{protocol}-{exclude}.json"


def evaluated_per_user(protocol: str, exclude: str) -> str:
    """The per-user file ``--evaluate`` writes for a run scored with ``protocol`` and ``exclude``."""
    return f"per_user-{protocol}-{exclude}.npz"


#: what a run folder holds besides :func:`evaluated_results` and :func:`evaluated_per_user` (and
#: the unfinished ``.tmp`` of each file): a folder with anything else is not a run
RUN_FILES = {"config.yaml", "log.txt", ".lock", ".semrec-write-check", "history.jsonl", "checkpoint.pt",
             "results.json", PER_USER, "tensorboard"}


def is_run_file(name: str) -> bool:
    """Whether ``name`` in a folder is one a semrec run (or ``--evaluate`` of it) writes."""
    name = name.removesuffix(".tmp")
    return name in RUN_FILES or (name.startswith("eval-") and name.endswith(".json")) or \
        (name.startswith("per_user-") and name.endswith(".npz"))


def save_per_user(path: Path, per_user: dict[str, dict[str, np.ndarray]]) -> None:
    """Each user's final metrics by split, compressed (``semrec-compare`` reads them)."""
    arrays = {f"{split}/{key}": value for split, d in per_user.items() for key, value in d.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def tensorboard(run_dir: Path):
    """A TensorBoard writer into ``RUN_DIR/tensorboard`` (``train.log=tensorboard``)."""
    from semrec.common.extras import require

    require("tensorboard", "report", "train.log=tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))


def log_scalars(board, epoch: int, losses: dict[str, float], valid: dict[str, float]) -> None:
    """One epoch's loss terms (``train/...``) and validation metrics (``valid/...``, groups left out)."""
    for key, value in losses.items():
        board.add_scalar(f"train/{key}", value, epoch)
    for key, value in valid.items():
        if "/" not in key:
            board.add_scalar(f"valid/{key}", value, epoch)
    board.flush()
