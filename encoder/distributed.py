"""Several processes on torch.distributed, launched by ``torchrun``: who is who, and the few collectives used.

    torchrun --nproc_per_node 2 encoder/train_encoder.py --model lightgcn --dataset yelp
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 --nproc_per_node 4 \\
        encoder/train_encoder.py --model sasrec --dataset beauty          # and node_rank 1 on the other

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` joins the process
group (gloo on CPU, NCCL on CUDA, each process on ``cuda:LOCAL_RANK``). Outside ``torchrun`` (no
``WORLD_SIZE`` or 1) nothing here does anything and every helper is the one-process identity, so
the trainer calls them unconditionally. What is sharded and what is not: docs/distributed.md.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

import torch
import torch.distributed as dist

#: how long a collective waits for the other ranks before the job fails (a dead rank, not a hang)
TIMEOUT_S = int(os.environ.get("SEMREC_DIST_TIMEOUT", "600"))


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run folder (rank 0, or the only process)."""
    return rank() == 0


def is_main_env() -> bool:
    """Whether this process will be rank 0 (from ``torchrun``'s ``RANK``; before the group is joined)."""
    return int(os.environ.get("RANK", "0")) == 0


def launched() -> bool:
    """Whether ``torchrun`` started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> str:
    """Join the process group when launched by ``torchrun``; returns the device this rank uses
    (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    if not launched() or dist.is_initialized():
        return device
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=dt.timedelta(seconds=TIMEOUT_S))
    return device


def lost_rank(e: BaseException) -> str | None:
    """One line saying why, when ``e`` is a collective that failed because another rank died or
    stopped answering (the job then ends; torchrun's summary names the rank); None otherwise."""
    text = str(e).strip()
    comms = isinstance(e, getattr(dist, "DistError", ())) or any(
        s in text for s in ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out", "Timed out"))
    if not (launched() and comms):
        return None
    # gloo's reads start with the source line in brackets: the reason is the first sentence after it
    first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]).split(". ")[0][:160] if text else type(e).__name__
    return (f"rank {rank()}: a collective failed ({first}): another rank died or stopped answering; the run "
            "folder keeps the last checkpoint (--resume it)")


def teardown() -> None:
    """Leave the group once every rank is done: a rank that left while another still received the
    last collective's data would close the connection under it (gloo then aborts that rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if world() == 1:
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def sum_(t: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over the ranks (in place, and returned). Used on tensors where each
    entry is filled by one rank and zero on the others, so the sum is exact."""
    if world() > 1:
        if dist.get_backend() == "nccl" and t.device.type != "cuda":  # NCCL reduces GPU tensors only
            on_gpu = t.to(f"cuda:{torch.cuda.current_device()}")
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            t.copy_(on_gpu.cpu())
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def mine(n: int) -> range:
    """The items of ``range(n)`` this rank handles (every ``world``-th, from its rank)."""
    return range(rank(), n, world())


class LossOf(torch.nn.Module):
    """A model as DistributedDataParallel sees it: its forward is the model's training loss."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)
