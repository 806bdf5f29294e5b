"""semrec's own DistributedDataParallel set-up against Hugging Face Accelerate's (issue 39): the same epochs.

    python benchmarks/bench_ddp_wrapper.py --workdir /tmp/bench/wrap             # LightGCN, MovieLens-100K
    python benchmarks/bench_ddp_wrapper.py --workdir /tmp/bench/wrap --model sasrec --epochs 2

The issue asked whether a well-kept wrapper gives distributed training with less code and exact
resume. Both sides here run one training loop, two processes (``torchrun``, gloo, one torch thread
each), on the same data, batches, model and optimiser, differing only in who joins the processes
and wraps the model: ``semrec`` (``semrec.encoder.distributed.setup`` and
``DistributedDataParallel``, as the trainer does) or ``accelerate`` (``Accelerator(cpu=True)``,
``prepare``, ``backward``). Printed: seconds a training epoch (after one warm-up epoch), the last
epoch's mean loss and the largest parameter difference between the two sides (the same function
gives the same weights). Accelerate ships with ``semrec[local-llm]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_baselines import ml100k  # noqa: E402

#: one process's loop; argv: wrapper, data folder, model, dataset name, epochs, where to save the weights
CHILD = """
import json, sys, time, torch
wrapper, folder, model_name, dataset, epochs, out = sys.argv[1:7]
from semrec.encoder.batches import shard
from semrec.encoder.config import resolve_config
from semrec.encoder.dataset import load_dataset
from semrec.encoder.distributed import LossOf
from semrec.encoder.registry import build_model, get_model_class
from semrec.encoder.sampling import make_sampler
if wrapper == "accelerate":
    from accelerate import Accelerator
    acc = Accelerator(cpu=True)
    rank, world = acc.process_index, acc.num_processes
else:
    import torch.distributed as dist
    from semrec.encoder import distributed
    distributed.setup("cpu")
    rank, world = dist.get_rank(), dist.get_world_size()
data = load_dataset(folder)
cfg = resolve_config(model_name, dataset, get_model_class(model_name), [])
torch.manual_seed(cfg.train.seed)
model = build_model(model_name, data, cfg.model, cfg.align)
opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
if wrapper == "accelerate":
    step_loss, opt = acc.prepare(LossOf(model), opt)
    backward = acc.backward
else:
    from torch.nn.parallel import DistributedDataParallel
    step_loss = DistributedDataParallel(LossOf(model), find_unused_parameters=True)
    backward = lambda loss: loss.backward()
batches = make_sampler(model, data, cfg.train.batch_size, torch.Generator().manual_seed(cfg.train.seed))
times, losses = [], []
for epoch in range(int(epochs) + 1):  # the first epoch warms up
    model.train(); model.start_epoch(epoch)
    t0, total, steps = time.perf_counter(), 0.0, 0
    for batch in batches:
        loss, _ = step_loss(shard(batch, rank, world))
        opt.zero_grad(set_to_none=True)
        backward(loss)
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
    times.append(time.perf_counter() - t0)
    losses.append(total / steps)
if rank == 0:
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out)
    print(json.dumps({"epoch_s": sum(times[1:]) / int(epochs), "loss": losses[-1]}))
if wrapper == "accelerate":
    acc.wait_for_everyone()
else:
    distributed.teardown()
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--model", default="lightgcn")
    p.add_argument("--data-dir", help="a dataset folder (default: MovieLens-100K, made in the workdir)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up (default 3)")
    args = p.parse_args(argv)
    try:
        import accelerate
    except ImportError:
        print("skipped: accelerate is not installed (pip install accelerate)", file=sys.stderr)
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data = Path(args.data_dir) if args.data_dir else ml100k(work / "data", env, "--split", "leave-one-out", "--dedup")
    if data is None:
        return 0
    res = {}
    import torch

    for wrapper in ("semrec", "accelerate"):
        weights = work / f"{wrapper}.pt"
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "--no-python", sys.executable, "-c", CHILD, wrapper, str(data), args.model, data.name,
                               str(args.epochs), str(weights)], capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"{wrapper}: failed:\n{done.stderr[-3000:]}")
        res[wrapper] = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("{")))
        res[wrapper]["weights"] = torch.load(weights)
    a, b = res["semrec"]["weights"], res["accelerate"]["weights"]
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(f"{args.model} on {data.name}, 2 processes x 1 thread, {args.epochs} timed epochs after one warm-up, "
          f"accelerate {accelerate.__version__}")
    print("| wrapper | s per epoch | last epoch's loss |\n|---|---|---|")
    for w in ("semrec", "accelerate"):
        print(f"| {w} | {res[w]['epoch_s']:.2f} | {res[w]['loss']:.6f} |")
    print(f"accelerate / semrec epoch time: {res['accelerate']['epoch_s'] / res['semrec']['epoch_s']:.2f}x; "
          f"largest parameter difference: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
