"""What a training run will need in memory, estimated before anything large is allocated.

A model's big tensors follow from its settings and the data's size: the item (and user) tables
with their gradients and Adam's two moments, one step's activations, the loss's scores (a full
softmax scores every item at every trained position) and the evaluator's score matrix. Summed
here from the resolved configuration, they let the trainer refuse a run that cannot fit with a
message naming the part and the settings that size it, instead of growing until the kernel kills
it (and, on a shared machine, everything else with it). The estimate counts only those terms, so
it stays below the real peak: it refuses what cannot fit, not what might.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

FLOAT = 4  # bytes of a float32
#: a trained tensor costs itself, its gradient and Adam's two moments
TRAINED = 4
GiB = 2**30


def available_bytes(device_type: str = "cpu") -> int | None:
    """Memory a new allocation may still take: on CUDA the device's free memory; on the CPU the
    smaller of the system's available memory and what this process's address-space limit
    (``RLIMIT_AS``) leaves; ``None`` where neither can be read."""
    if device_type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    limits = []
    try:
        with open("/proc/meminfo") as f:
            found = re.search(r"MemAvailable:\s+(\d+) kB", f.read())
        if found:
            limits.append(int(found.group(1)) * 1024)
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/status") as f:
                found = re.search(r"VmSize:\s+(\d+) kB", f.read())
            if found:
                used = int(found.group(1)) * 1024
            limits.append(max(soft - used, 0))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def _table(rows: int, width: int) -> int:
    return rows * width * FLOAT * TRAINED


def sequential_parts(model: dict[str, Any], data, batch_size: int, eval_batch: int, backbone: type) -> dict[str, int]:
    """The large terms of a sequence model's run (bytes by part)."""
    items, dim = data.num_items, int(model.get("dim", 64))
    max_len = int(model.get("max_len", 50))
    seq = data.sequences
    lengths = np.minimum(np.maximum(seq.lengths - 2, 0), max_len) if seq is not None else np.array([max_len])
    width = int(lengths.max(initial=1))  # the longest training window: a batch's padded width at most
    trained = float(lengths.mean()) if len(lengths) else 1.0  # targets per training sequence
    views = 2 if model.get("views", "both") == "both" and getattr(backbone, "registered_name", "") == "llmesr" else 1
    layers, heads = int(model.get("layers", 2)), int(model.get("heads", 2))
    ffn = int(model.get("ffn_dim", 4 * dim))
    rows = min(batch_size, max(data.num_users, 1))
    positions = rows * trained
    parts = {
        f"item table ({items:,} rows x {dim} x {views} view(s), with gradients and Adam's moments)":
            _table(items + 2, dim * views),
        f"positions table ({max_len:,} x {dim})": _table(max_len, dim),
        f"one step's activations ({rows} sequences x {width} positions x {layers} layers)":
            rows * width * views * layers * (8 * dim + 2 * ffn + 3 * heads * width) * FLOAT,
    }
    text = getattr(data, "item_emb", None)
    if text is not None and (model.get("item_text", "none") != "none" or views == 2):
        parts[f"item text embeddings ({text.shape[0]:,} x {text.shape[1]})"] = text.nbytes
    loss, k = model.get("loss", "ce"), int(model.get("negatives", 0) or 0)
    if loss == "ce":
        parts[f"full-softmax scores ({positions:,.0f} trained positions a batch x {items:,} items)"] = \
            int(positions * items * FLOAT * 3)
    else:
        parts[f"sampled negatives ({positions:,.0f} positions a batch x {k:,} negatives x {dim})"] = \
            int(positions * k * (dim * views + 3) * FLOAT * 2)
    parts[f"evaluation scores ({min(eval_batch, data.num_users)} users x {items:,} items)"] = \
        min(eval_batch, data.num_users) * items * FLOAT * 3
    return parts


def graph_parts(model: dict[str, Any], data, eval_batch: int) -> dict[str, int]:
    """The large terms of a graph model's run (bytes by part)."""
    users, items, dim = data.num_users, data.num_items, int(model.get("dim", 32))
    layers = int(model.get("layers", model.get("gcn_layers", 3)) or 0)
    edges = int(data.train.nnz)
    return {
        f"user and item tables ({users + items:,} rows x {dim}, with gradients and Adam's moments)":
            _table(users + items, dim),
        f"propagated embeddings ({layers + 1} layers x {users + items:,} x {dim})":
            (layers + 1) * (users + items) * dim * FLOAT * 2,
        f"normalised graph ({2 * edges:,} edges)": 2 * edges * 20,
        f"evaluation scores ({min(eval_batch, users)} users x {items:,} items)":
            min(eval_batch, users) * items * FLOAT * 3,
    }


def estimate(model_cls: type, model: dict[str, Any], data, batch_size: int, eval_batch: int) -> dict[str, int]:
    """Bytes by part of a run of ``model_cls`` with hyperparameters ``model`` on ``data``."""
    from semrec.encoder.models.sequential.base import SequentialRecommender

    backbone = getattr(model_cls, "backbone_cls", model_cls)
    if issubclass(backbone, SequentialRecommender):
        return sequential_parts(model, data, batch_size, eval_batch, backbone)
    return graph_parts(model, data, eval_batch)


def check_fits(model_cls: type, model: dict[str, Any], data, batch_size: int, eval_batch: int,
               device_type: str = "cpu", available: int | None = None) -> None:
    """Raise ``ValueError`` naming the largest parts when the estimate exceeds the memory
    available (:func:`available_bytes`); nothing when it fits or cannot be read."""
    parts = estimate(model_cls, model, data, batch_size, eval_batch)
    available = available_bytes(device_type) if available is None else available
    total = sum(parts.values())
    if available is None or total <= available:
        return
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:2]
    detail = "; ".join(f"{name}: {size / GiB:.1f} GiB" for name, size in top)
    where = "on the GPU" if device_type == "cuda" else "in memory"
    raise ValueError(f"this run needs at least {total / GiB:.1f} GiB {where} and {available / GiB:.1f} GiB is "
                     f"available ({detail}); lower model.dim, model.max_len, train.batch_size or eval.batch_size "
                     f"(or model.negatives), or check the item count ({data.num_items:,})")


def describe_oom(error: BaseException) -> str | None:
    """A one-line message when ``error`` is an allocation failure (Python's MemoryError, or
    PyTorch's CPU or CUDA allocator), else ``None``."""
    if isinstance(error, MemoryError):
        return "out of memory" + (f" ({error})" if str(error) else "")
    text = str(error)
    if isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text):
        found = re.search(r"allocate (\d+) bytes", text) or re.search(r"allocate ([\d.]+ [KMGT]iB)", text)
        size = found.group(1) if found else None
        if size and size.isdigit():
            size = f"{int(size) / GiB:.1f} GiB"
        return "out of memory" + (f" (an allocation of {size} failed)" if size else "")
    return None

