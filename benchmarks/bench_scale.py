"""How cost grows with the data (issue 39): one epoch and one evaluation at growing sizes, one and two processes.

    python benchmarks/bench_scale.py --workdir /tmp/bench/scale --sizes 2.5e5 5e5 1e6 2e6 5e6 --several-up-to 2e6 \
        --model-up-to sasrec=2e6 llmesr=1e6 --plot docs/img/scale.png      # docs/benchmarks.md, a 2-core machine
    python benchmarks/bench_scale.py --workdir /tmp/bench/scale --sizes 1e6 5e6 2e7   # a larger machine
    python benchmarks/bench_scale.py --workdir /tmp/bench/scale --sizes 2e4 --models lightgcn   # the CI size

Synthetic data with power-law degrees, like real catalogues: ``N`` interactions, ``N / 20`` users
whose sequence lengths follow a power law (at least 5, mean about 20), items drawn with Zipf-like
popularity (rank ** -0.8) from ``N / 50`` items, each user's items in time order (an S3-Rec file,
split leave-one-out; repeats dropped), and random 64-d text embeddings for LLM-ESR. Each model (``--models``:
LightGCN, SASRec, LLM-ESR) trains one epoch and evaluates once, in its own process(es), with one process of two torch
threads and with two processes of one thread each (``torchrun --nproc_per_node 2``, gloo): the
machine's cores shared out the same way (``--threads`` fixes it instead). Printed per
model, size and process count: seconds of the training epoch, seconds of the full evaluation,
peak resident memory per process; then each measure's log–log slope against the interactions
(1: linear), and the two processes' epoch time against one's. Finished measurements are read back,
so the same command run again after a kill, or with more sizes, makes only what is missing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import finish  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = {"lightgcn": [], "sasrec": [], "llmesr": []}
#: a process that trains, then prints its own peak resident memory (KiB)
CHILD = ("import resource, sys\nfrom semrec.encoder.train_encoder import main\nrc = main(sys.argv[1:])\n"
         "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\nsys.exit(rc)")


def make_data(folder: Path, n: int, seed: int = 0) -> Path:
    """The synthetic dataset folder of about ``n`` interactions (made once)."""
    if (folder / "itm_emb_np.pkl").exists():
        return folder
    rng = np.random.default_rng(seed)
    users, items = max(n // 20, 10), max(n // 50, 20)
    lengths = np.minimum(np.maximum((rng.pareto(2.0, users) + 1) * 10, 5), 2000).astype(int)
    lengths = np.maximum((lengths * n / lengths.sum()).astype(int), 5)
    share = 1.0 / np.arange(1, items + 1) ** 0.8
    share /= share.sum()
    folder.parent.mkdir(parents=True, exist_ok=True)
    raw = folder.parent / f"{folder.name}.txt"
    with open(raw, "w") as f:
        for u, length in enumerate(lengths):
            seq = rng.choice(items, size=int(length), p=share) + 1
            f.write(f"{u + 1} " + " ".join(map(str, seq)) + "\n")
    subprocess.run([sys.executable, str(REPO / "data" / "prepare.py"), "s3rec", str(raw), "--name", folder.name,
                    "--out-dir", str(folder.parent), "--split", "leave-one-out", "--dedup", "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    with open(folder / "trn_mat.pkl", "rb") as fh:
        shape = pickle.load(fh).shape
    for name, rows in (("usr_emb_np.pkl", shape[0]), ("itm_emb_np.pkl", shape[1])):
        with open(folder / name, "wb") as fh:
            pickle.dump(rng.standard_normal((rows, 64)).astype(np.float32), fh, protocol=4)
    return folder


def measure(model: str, data: Path, out: Path, procs: int, threads: int) -> dict:
    """One epoch and one evaluation of ``model`` on ``data`` with ``procs`` processes."""
    if (out / "results.json").exists() and (out / "peak.json").exists():
        res = json.loads((out / "results.json").read_text())
        return {**json.loads((out / "peak.json").read_text()), "res": res}
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    args = ["--model", model, "--dataset", data.name, "--data-dir", str(data), "--out", str(out), "--quiet",
            "--set", "train.epochs=1", "--set", "train.test_step=1", "--set", "eval.beyond=false"]
    launcher = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(procs)]
    done = subprocess.run([*launcher, "-c", CHILD, *args] if procs == 1 else [*launcher, "--no-python", sys.executable,
                                                                             "-c", CHILD, *args],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{model} on {data.name} with {procs} process(es) failed:\n{done.stderr[-2000:]}")
    peaks = [int(m) for m in re.findall(r"MAXRSS (\d+)", done.stdout)]  # one a rank (lines may interleave)
    record = {"peak_mb": max(peaks) / 1024 if peaks else float("nan")}
    (out / "peak.json").write_text(json.dumps(record))
    return {**record, "res": json.loads((out / "results.json").read_text())}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def plot(curves: dict[tuple[str, int], list[tuple[int, float, float, float]]], path: Path) -> None:
    """Seconds of the epoch and of the evaluation against the interactions, one line per model and
    process count, on log-log axes (a straight line of slope 1 is linear growth)."""
    from semrec.common.extras import require

    require("matplotlib", "report", "bench_scale.py --plot").use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = {m: f"C{i}" for i, m in enumerate(sorted({m for m, _ in curves}))}  # one colour a model
    for (model, procs), pts in sorted(curves.items()):
        xs = [x[0] for x in pts]
        for ax, col in zip(axes, (1, 2)):
            ax.plot(xs, [x[col] for x in pts], marker="o", color=colours[model], linestyle="-" if procs == 1 else "--",
                    label=f"{model}, {procs} process{'es' if procs > 1 else ''}")
    for ax, title in zip(axes, ("training epoch", "full evaluation")):
        ax.set(xscale="log", yscale="log", xlabel="interactions", ylabel="seconds", title=title)
        ax.xaxis.set_minor_formatter(NullFormatter())  # labels at the powers of ten only (they overlap otherwise)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--sizes", nargs="+", type=float, default=[1e6, 5e6, 2e7], help="interactions")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    p.add_argument("--model-up-to", nargs="+", default=[], metavar="MODEL=N",
                   help="measure MODEL only up to N interactions (e.g. sasrec=2e6: its epoch grows as the square)")
    p.add_argument("--several-up-to", type=float, metavar="N",
                   help="more than one process only up to N interactions (larger sizes: one process)")
    p.add_argument("--threads", type=int, help="torch threads a process (default: the cores shared by the processes)")
    p.add_argument("--markdown")
    p.add_argument("--plot", metavar="PNG", help="also draw epoch and evaluation seconds against the interactions "
                                                 "(log-log; needs matplotlib: semrec[report])")
    args = p.parse_args(argv)
    limit = {}
    for spec in args.model_up_to:
        model, sep, n = spec.partition("=")
        try:
            limit[model] = float(n)
        except ValueError:
            sep = ""
        if not sep or model not in MODELS:
            p.error(f"--model-up-to {spec!r}: expected MODEL=N with MODEL one of {', '.join(MODELS)}")
    work = Path(args.workdir)
    rows = ["| model | interactions | users | items | processes x threads | train epoch s | evaluation s "
            "| peak MiB a process |", "|---|---|---|---|---|---|---|---|"]
    curves: dict[tuple[str, int], list[tuple[int, float, float, float]]] = {}
    for size in sorted(int(s) for s in args.sizes):
        data = make_data(work / "data" / f"synth{size}", size)
        with open(data / "trn_mat.pkl", "rb") as fh:
            users, items = pickle.load(fh).shape
        actual = int(json.loads((data / "stats.json").read_text())["interactions"])
        for model in args.models:
            if size > limit.get(model, math.inf):
                continue
            for procs in args.procs:
                if procs > 1 and args.several_up_to and size > args.several_up_to:
                    continue
                threads = args.threads or max(1, (os.cpu_count() or 1) // procs)
                r = measure(model, data, work / "runs" / f"{model}-{size}-{procs}p", procs, threads)
                epoch, ev = r["res"]["timing"]["train_epoch_seconds"][0], r["res"]["timing"]["eval_seconds"][0]
                curves.setdefault((model, procs), []).append((actual, epoch, ev, r["peak_mb"]))
                rows.append(f"| {model} | {actual:,} | {users:,} | {items:,} | {procs} x {threads} | {epoch:.1f} | {ev:.1f} "
                            f"| {r['peak_mb']:.0f} |")
                print(rows[-1], file=sys.stderr, flush=True)
    lines = ["", "| model | processes | slope of epoch s | slope of evaluation s | slope of peak memory |",
             "|---|---|---|---|---|"]
    for (model, procs), pts in curves.items():
        xs = [x[0] for x in pts]
        lines.append(f"| {model} | {procs} | {slope(xs, [x[1] for x in pts]):.2f} | {slope(xs, [x[2] for x in pts]):.2f} "
                     f"| {slope(xs, [x[3] for x in pts]):.2f} |")
    ratios = []
    for model in args.models:
        one, two = curves.get((model, 1)), curves.get((model, 2))
        if one and two:
            by_size = {a[0]: a for a in one}
            ratios.append(f"{model}: " + ", ".join(f"{b[0]:,}: {b[1] / by_size[b[0]][1]:.2f}x" for b in two
                                                   if b[0] in by_size))
    text = ("One training epoch and one full evaluation each.\n\n"
            + "\n".join(rows + lines)
            + ("\n\nTwo processes' epoch time against one's: " + "; ".join(ratios) if ratios else ""))
    if args.plot:
        plot(curves, Path(args.plot))
    if any(math.isnan(x[3]) for pts in curves.values() for x in pts):
        text += "\n\n(peak memory not reported by a run: NaN)"
    return finish(args, argv, "bench_scale.py", "How cost grows with the data", text, [])


if __name__ == "__main__":
    raise SystemExit(main())
