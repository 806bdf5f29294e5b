"""Benchmark the sequential recommenders on the S3-Rec files: accuracy, speed against RecBole, memory.

    python benchmarks/bench_seq.py accuracy --models sasrec gru4rec --datasets beauty --seeds 2023 2024 2025
    python benchmarks/bench_seq.py recbole --recbole-python /tmp/recbole_env/bin/python --dataset beauty
    python benchmarks/bench_seq.py memory --dataset beauty
    python benchmarks/bench_seq.py negatives --dataset beauty --epochs 3
    python benchmarks/bench_seq.py batches --model sasrec --dataset beauty --epochs 3

``accuracy``: each (model, dataset, seed) is a full CLI run to early stopping in its own
process, on one torch thread (``--threads``). Printed per model and dataset: test HR@10 and
NDCG@10 (mean ± std over seeds; full ranking, history excluded: the S3-Rec protocol) beside the
published numbers for the same files and protocol, seconds per epoch and per evaluation
(medians), epochs, wall time and peak resident memory. ``--workdir`` keeps the run folders so
the same command run again reads finished runs back and resumes a killed one. ``--jobs N`` runs N at
a time; ``--device cuda`` trains them on a GPU (the timings in the docs are CPU unless they say).

``recbole``: RecBole 1.2.1's SASRec (run by ``benchmarks/recbole_sasrec.py`` in RecBole's own
environment, ``--recbole-python``) and semrec's SASRec of the same size (2 layers, 2 heads,
d 64, FFN 256 as RecBole's default, max_len 50) and loss (CE), side by side in one run: the two
trainings run at the same time, each on one torch thread (one core each of a 2-core machine).
Printed: seconds per training epoch, per full-ranking validation, and the wall time each takes
to reach RecBole's best validation NDCG@10, with the ratios. ``--recbole-epochs N`` caps
RecBole's run (its best is then its best within N epochs, and the table says so). RecBole's
full run takes hours: stopped, the same command continues it from its last epoch (seconds count
training and validation, so the pause does not); a run already going in the workdir is waited for.

``negatives``: gSASRec (or ``--model``) trained in one process with ``train.negatives_per``
``position`` and ``sequence`` side by side, from the same seed, alternating epoch by epoch so that
both see the same machine load: seconds per training epoch (median), the ratio, and validation
NDCG@10 after every epoch (does sharing the negatives of a sequence change the learning curve?).

``batches``: SASRec (or ``--model``) the same way, with plain random batches encoded in one call
(``model.length_groups=1``), plain random batches encoded in groups of similar length (the
default, ``model.length_groups``) and batches sorted by length (``train.length_buckets=32``): what
each costs an epoch, and that the first two learn alike (the same loss; only dropout draws differ).

``memory``: peak resident memory of a process that loads the dataset and runs one full-ranking
validation of a freshly built SASRec (the evaluator's share; the training run's peak is in the
``accuracy`` table).
"""
from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import RunFailed, add_device_arguments, fmt, machine, run_all, run_dirs, run_one  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
S3REC = REPO.parent / "shared" / "data" / "s3rec"
DATASETS = {"beauty": "Beauty.txt", "yelp": "Yelp.txt", "lastfm": "LastFM.txt"}
# test HR@10 / NDCG@10 on the S3-Rec files under the S3-Rec protocol: the S3-Rec repository's
# published baselines (RUCAIBox/CIKM2020-S3Rec), and for gSASRec the strongest published SASRec
# on these Beauty files (eSASRec's SASRec with sampled softmax, Recall@10 / NDCG@10)
PUBLISHED = {("sasrec", "beauty"): (0.0605, 0.0318), ("sasrec", "yelp"): (0.0274, 0.0136),
             ("sasrec", "lastfm"): (0.0688, 0.0390), ("gru4rec", "beauty"): (0.0283, 0.0137),
             ("bert4rec", "beauty"): (0.0347, 0.0170), ("gsasrec", "beauty"): (0.0921, 0.0531)}
SAME_AS_RECBOLE = ["train.stop_metric=ndcg@10", "model.layers=2", "model.heads=2", "model.dim=64", "model.ffn_dim=256",
                   "model.max_len=50", "model.loss=ce", "model.dropout=0.5"]


def data_file(name: str) -> Path:
    if name not in DATASETS:
        raise SystemExit(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return S3REC / DATASETS[name]


def header(args, argv, title: str) -> str:
    cmd = "python benchmarks/bench_seq.py " + " ".join(argv if argv is not None else sys.argv[1:])
    where = machine(getattr(args, "device", "cpu"))
    return (f"\n### {title} ({time.strftime('%Y-%m-%d')})\n\nMachine: {where}; {args.threads} torch thread(s) "
            f"per process.  \nCommand: `{cmd.strip()}`\n\n")


def emit(args, argv, title: str, text: str) -> None:
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(header(args, argv, title) + text + "\n")


# ----- accuracy --------------------------------------------------------------------------------
def accuracy(args, argv) -> int:
    runs: dict[tuple[str, str], list[dict]] = {}
    failed = []
    extra = [x for o in args.overrides for x in ("--set", o)]
    with run_dirs(args.workdir) as work:
        tasks = []
        for ds in args.datasets:
            path = data_file(ds)
            if not path.exists():
                print(f"skipped {ds}: {path} not found (the benchmark reads ../shared/data/s3rec)", file=sys.stderr)
                continue
            (work / ds).mkdir(parents=True, exist_ok=True)
            tasks += [((model, ds, seed), functools.partial(run_one, model, seed, path, extra, work / ds, dataset=ds,
                                                             device=args.device))
                      for model in args.models for seed in args.seeds]
        for (model, ds, seed), r in run_all(tasks, args.jobs):
            if isinstance(r, RunFailed):
                print(r, file=sys.stderr, flush=True)
                failed.append(f"{model}/{ds}/{seed}")
                continue
            runs.setdefault((model, ds), []).append(r)
            runs[(model, ds)].sort(key=lambda x: x["seed"])
            print(f"{model} {ds} seed {seed}: HR@10 {r['test']['hit@10']:.4f} NDCG@10 "
                  f"{r['test']['ndcg@10']:.4f}, {r['epochs']} epochs, {r['wall_s']:.0f}s", file=sys.stderr,
                  flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({f"{m}/{d}": rs for (m, d), rs in runs.items()}, indent=2))
    runs = {(m, d): runs[(m, d)] for d in args.datasets for m in args.models if (m, d) in runs}
    rows = ["| model | dataset | HR@10 | NDCG@10 | published HR@10 / NDCG@10 | vs published | HR@20 | NDCG@20 "
            "| s/epoch | s/eval | epochs (best) | wall s | peak RSS MB |", "|" + "---|" * 13]
    for (model, ds), rs in runs.items():
        mean = lambda key: statistics.fmean(r["test"][key] for r in rs)  # noqa: E731
        pub = PUBLISHED.get((model, ds))
        vs = (f"{100 * (mean('hit@10') / pub[0] - 1):+.1f}% / {100 * (mean('ndcg@10') / pub[1] - 1):+.1f}%"
              if pub else "-")
        m = lambda key: fmt([r["test"][key] for r in rs])  # noqa: E731
        med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
        rows.append(f"| {model} | {ds} | {m('hit@10')} | {m('ndcg@10')} | {'%.4f / %.4f' % pub if pub else '-'} "
                    f"| {vs} | {m('hit@20')} | {m('ndcg@20')} | {med('train_epoch_s'):.2f} | {med('eval_s'):.2f} "
                    f"| {'/'.join(str(r['epochs']) for r in rs)} ({'/'.join(str(r['best_epoch']) for r in rs)}) "
                    f"| {med('wall_s'):.0f} | {max(r['peak_rss_mb'] for r in rs):.0f} |")
    if runs:
        emit(args, argv, "Sequential models on the S3-Rec files", f"Seeds: {args.seeds}; mean ± std of test "
             "metrics at the best validation epoch (full ranking, history excluded); times are medians.\n\n"
             + "\n".join(rows))
    if failed:
        print("failed runs: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


# ----- side by side with RecBole -----------------------------------------------------------------
def _curve_semrec(run_dir: Path) -> list[dict]:
    """Per epoch: training and validation seconds, validation NDCG@10, and cumulative seconds,
    wall (``cum_s``) and counted with training's process CPU time where the run has it
    (``cum_cpu_s``: on one thread, wall time less what other processes took from it)."""
    out, total, total_cpu = [], 0.0, 0.0
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        h = json.loads(line)
        total += h["train_seconds"] + h.get("eval_seconds", 0.0)
        total_cpu += h.get("train_cpu_seconds", h["train_seconds"]) + h.get("eval_cpu_seconds", h.get("eval_seconds", 0.0))
        out.append({"epoch": h["epoch"], "train_s": h["train_seconds"], "valid_s": h.get("eval_seconds"),
                    "ndcg": (h.get("valid") or {}).get("ndcg@10"), "cum_s": total, "cum_cpu_s": total_cpu})
    return out


def _curve_recbole(path: Path) -> tuple[list[dict], dict]:
    out, final, total, total_cpu = [], {}, 0.0, 0.0
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("final"):
            final = r
            continue
        total += r["train_s"] + r["valid_s"]
        total_cpu += r.get("cpu_s", r["train_s"]) + r.get("valid_cpu_s", r["valid_s"])
        out.append({"epoch": r["epoch"], "train_s": r["train_s"], "valid_s": r["valid_s"], "ndcg": r["valid_ndcg@10"],
                    "cum_s": total, "cum_cpu_s": total_cpu})
    return out, final


def _time_to(curve: list[dict], target: float, key: str = "cum_s") -> tuple[float | None, int | None]:
    """Cumulative training + validation seconds (``key``) until the validation NDCG@10 first
    reaches ``target``."""
    for c in curve:
        if c["ndcg"] is not None and c["ndcg"] >= target - 1e-12:
            return c[key], c["epoch"]
    return None, None


def _recbole_busy(folder: Path) -> bool:
    """Whether a RecBole run (``recbole_sasrec.py`` holds the lock) is running in ``folder``."""
    if not (folder / ".lock").exists():
        return False
    with open(folder / ".lock") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def recbole(args, argv) -> int:
    path = data_file(args.dataset)
    if not path.exists():
        print(f"skipped: {path} not found (the benchmark reads ../shared/data/s3rec)", file=sys.stderr)
        return 0
    if not Path(args.recbole_python).exists():
        raise SystemExit(f"{args.recbole_python}: no such interpreter; make RecBole's environment first (see "
                         "benchmarks/recbole_sasrec.py)")
    extra = [x for o in SAME_AS_RECBOLE + args.overrides for x in ("--set", o)]
    with run_dirs(args.workdir) as work:
        rb_out = work / f"recbole-{args.dataset}-{args.seeds[0]}.jsonl"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        rb, busy = None, _recbole_busy(work / "recbole")
        if busy:
            print(f"RecBole's run in {work / 'recbole'} is running in another process: this run waits for it",
                  file=sys.stderr, flush=True)
        elif not (rb_out.exists() and any('"final"' in ln for ln in rb_out.read_text().splitlines())):
            rb = subprocess.Popen([args.recbole_python, str(REPO / "benchmarks" / "recbole_sasrec.py"), "--s3rec", str(path),
                                   "--work", str(work / "recbole"), "--out", str(rb_out), "--epochs",
                                   str(args.recbole_epochs), "--seed", str(args.seeds[0]), "--threads", str(args.threads)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=open(work / "recbole.log", "w"))
        (work / "semrec").mkdir(parents=True, exist_ok=True)
        ours = run_one("sasrec", args.seeds[0], path, extra, work / "semrec", dataset=args.dataset)
        if rb is not None and rb.wait() != 0:
            raise SystemExit(f"RecBole's run failed; see {work / 'recbole.log'}")
        if busy:
            with open(work / "recbole" / ".lock") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # until the other process's run ends
        theirs, final = _curve_recbole(rb_out)
        mine = _curve_semrec(Path(ours["run_dir"]))
    best = max(c["ndcg"] for c in theirs)
    best_epoch = next(c["epoch"] for c in theirs if c["ndcg"] == best)
    t_rb, _ = _time_to(theirs, best)
    t_us, ep_us = _time_to(mine, best)
    med = lambda curve, key: statistics.median(c[key] for c in curve if c[key] is not None)  # noqa: E731
    capped = "" if final else f" (capped at {len(theirs)} epochs: its best within them)"
    rows = ["| | RecBole 1.2.1 SASRec | semrec SASRec | RecBole / semrec |", "|---|---|---|---|"]
    for label, key in (("s per training epoch (median)", "train_s"), ("s per full-ranking validation (median)", "valid_s")):
        a, b = med(theirs, key), med(mine, key)
        rows.append(f"| {label} | {a:.1f} | {b:.1f} | {a / b:.1f}x |")
    rows.append(f"| best validation NDCG@10 | {best:.4f} (epoch {best_epoch}){capped} | "
                f"{max(c['ndcg'] for c in mine if c['ndcg'] is not None):.4f} | |")
    to_us = f"{t_us:.0f} (epoch {ep_us})" if t_us is not None else "not reached"
    ratio = f"{t_rb / t_us:.1f}x" if t_us else "-"
    rows.append(f"| s to reach RecBole's best validation NDCG@10 ({best:.4f}) | {t_rb:.0f} | {to_us} | {ratio} |")
    c_rb, _ = _time_to(theirs, best, "cum_cpu_s")
    c_us, _ = _time_to(mine, best, "cum_cpu_s")
    if c_us:
        rows.append(f"| the same, training counted in process CPU seconds | {c_rb:.0f} | {c_us:.0f} | {c_rb / c_us:.1f}x |")
    if final:
        rows.append(f"| test NDCG@10 / HR@10 at the best epoch | {final['test'].get('ndcg@10', 0):.4f} / "
                    f"{final['test'].get('hit@10', 0):.4f} | {ours['test']['ndcg@10']:.4f} / {ours['test']['hit@10']:.4f} | |")
    emit(args, argv, f"SASRec against RecBole on {args.dataset}",
         f"Seed {args.seeds[0]}; the two trainings ran at the same time, one process and one torch thread each. "
         "Seconds count training and validation, not data loading.\n\n" + "\n".join(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"recbole": theirs, "recbole_final": final, "semrec": mine,
                                               "semrec_record": ours}, indent=2))
    return 0


# ----- memory ----------------------------------------------------------------------------------
MEMORY_CHILD = """
import resource, sys, time, torch
from semrec.encoder.dataset import load_dataset
from semrec.encoder.evaluator import Evaluator
from semrec.encoder.registry import build_model
path = sys.argv[1]
data = load_dataset(path)
after_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = build_model("sasrec", data, {"dropout": 0.5}).eval()
ev = Evaluator(data, ks=[5, 10, 20], metrics=["hit", "ndcg"], exclude="history", groups=True)
t0 = time.perf_counter()
with torch.no_grad():
    ev.evaluate(model.scorer(), "test", model.history_len)
print(after_data, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
"""


def memory(args, argv) -> int:
    path = data_file(args.dataset)
    if not path.exists():
        print(f"skipped: {path} not found", file=sys.stderr)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    data_kb, peak_kb, secs = out.stdout.split()
    emit(args, argv, f"Evaluator memory on {args.dataset}",
         f"| peak RSS after loading the data | peak RSS after one full-ranking test evaluation of SASRec | evaluation s |\n"
         f"|---|---|---|\n| {int(data_kb) / 1024:.0f} MB | {int(peak_kb) / 1024:.0f} MB | {float(secs):.1f} |")
    return 0


def side_by_side(args, argv, title: str, settings: dict[str, list[str]], model: str) -> int:
    """``model`` trained in one process under each of ``settings`` (name -> ``--set`` overrides),
    from the same seed, taking turns epoch by epoch so that all see the same machine load: seconds
    per training epoch (median), the speed-up over the first setting, validation NDCG@10 after each epoch."""
    from bench_speed import _trainer

    from semrec.encoder.dataset import load_dataset

    path = data_file(args.dataset)
    if not path.exists():
        print(f"skipped: {path} not found (the benchmark reads ../shared/data/s3rec)", file=sys.stderr)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    data = load_dataset(path, name=args.dataset)
    trainers = {n: _trainer(model, data, [*args.overrides, *extra], 0, args.dataset) for n, extra in settings.items()}
    secs: dict[str, list[float]] = {n: [] for n in settings}
    curve: dict[str, list[float]] = {n: [] for n in settings}
    for epoch in range(args.epochs):
        for n, trainer in trainers.items():
            t0 = time.perf_counter()
            trainer.train_epoch(epoch)
            secs[n].append(time.perf_counter() - t0)
            curve[n].append(trainer.evaluate("valid")["ndcg@10"])
            print(f"epoch {epoch} {n}: {secs[n][-1]:.1f} s, valid ndcg@10 {curve[n][-1]:.4f}", file=sys.stderr,
                  flush=True)
    med = {n: statistics.median(secs[n]) for n in settings}
    first = next(iter(settings))
    rows = [f"| setting | s/epoch (median) | speed-up over {first} | validation NDCG@10 after each epoch |",
            "|---|---|---|---|"]
    rows += [f"| {n} (`{' '.join(settings[n]) or 'defaults'}`) | {med[n]:.1f} | {med[first] / med[n]:.2f}x | "
             f"{' '.join(f'{x:.4f}' for x in curve[n])} |" for n in settings]
    emit(args, argv, title, "\n".join(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({n: {"epoch_s": secs[n], "valid_ndcg@10": curve[n]} for n in settings},
                                              indent=2))
    return 0


def negatives(args, argv) -> int:
    settings = {f"per {m}": [f"train.negatives_per={m}"] for m in ("position", "sequence")}
    return side_by_side(args, argv, f"{args.model}: negatives per position or per sequence on {args.dataset}",
                        settings, args.model)


def batches(args, argv) -> int:
    settings = {"plain, one call": ["model.length_groups=1"], "plain, encoded by length": [],
                "sorted by length": ["train.length_buckets=32"]}
    return side_by_side(args, argv, f"{args.model}: batches and their encoding on {args.dataset}", settings,
                        args.model)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("accuracy", "recbole", "memory", "negatives", "batches"):
        s = sub.add_parser(name)
        s.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
        s.add_argument("--markdown", help="append the table to this file")
        s.add_argument("--json", help="write the per-run numbers to this file")
        s.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024, 2025])
        s.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every semrec run")
        s.add_argument("--workdir", help="keep run folders here; the same command run again resumes")
        if name == "accuracy":
            add_device_arguments(s)
            s.add_argument("--models", nargs="+", default=["sasrec", "gsasrec", "bert4rec", "gru4rec"])
            s.add_argument("--datasets", nargs="+", default=["beauty"])
        else:
            s.add_argument("--dataset", default="beauty")
        if name == "negatives":
            s.add_argument("--model", default="gsasrec", help="a sequential model with sampled negatives")
        if name == "batches":
            s.add_argument("--model", default="sasrec", help="a sequential model with a Transformer encoder")
        if name in ("negatives", "batches"):
            s.add_argument("--epochs", type=int, default=3)
        if name == "recbole":
            s.add_argument("--recbole-python", default="/tmp/recbole_env/bin/python")
            s.add_argument("--recbole-epochs", type=int, default=300)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every child run
    commands = {"accuracy": accuracy, "recbole": recbole, "memory": memory, "negatives": negatives, "batches": batches}
    return commands[args.what](args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
