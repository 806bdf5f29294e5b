"""Benchmark the graph backbones on RLMRec's Yelp split: accuracy, speed, memory.

    python benchmarks/bench_graph_cf.py                          # lightgcn + gccf, 3 seeds
    python benchmarks/bench_graph_cf.py --models lightgcn --seeds 2023 --markdown docs/benchmarks.md

Each (model, seed) is a full CLI run to early stopping in its own process. Printed per
model: seconds per training epoch and per full evaluation (median over the run), peak
resident memory, epochs to early stop, wall time, and test Recall/NDCG@5/10/20 (mean ± std
over seeds), next to the RLMRec paper's numbers. With ``--markdown FILE`` the table is
appended to FILE with the machine, date and command. With ``--workdir DIR`` the run folders
are kept in DIR, and the same command run again after a kill reads back the finished runs and
resumes the killed one from its checkpoint. The speed ratio against a naive reference of the
same epoch is measured by ``benchmarks/bench_speed.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rlmrec_yelp"
# RLMRec paper (WWW 2024), Table 1, Yelp, base models: Recall@20, NDCG@20
PAPER = {"lightgcn": (0.1157, 0.0733), "gccf": (0.1084, 0.0680), "sgl": (0.1197, 0.0753),
         "simgcl": (0.1254, 0.0801), "dccf": (0.1249, 0.0800), "autocf": (0.1280, 0.0813)}

CHILD = ("import resource, sys; from semrec.encoder.train_encoder import main; rc = main(sys.argv[1:]); "
         "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")


class RunFailed(RuntimeError):
    """A training run exited with an error (its stderr's tail is the message)."""


def machine(device: str = "cpu") -> str:
    """The CPU, cores, Python and torch, the torch threads and, for a CUDA ``device``, the GPU."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads"
            + (f", GPU {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""))


def run_one(model: str, seed: int, data: Path, extra: list[str], workdir: Path, dataset: str | None = None,
            device: str = "cpu") -> dict:
    """One full CLI run in ``workdir/<model>-<seed>`` (``dataset``: the name its config section is
    looked up by, default the folder's name; ``device``: where it trains), or what is left of it.

    Beside the run directory, ``<model>-<seed>.spec.json`` keeps the run's model, seed, data and
    settings and, once done, ``<model>-<seed>.record.json`` the returned record (beside it, not in
    it: a run folder holds a run's files only). Found again by the same command, a
    finished run is read back, a killed one continues from its checkpoint (``--resume``; its
    ``wall_s`` and ``peak_rss_mb`` then cover the resumed part only and it is marked
    ``"resumed": true``), and one killed before its first checkpoint starts over. A directory
    made with other settings stops the run rather than being mixed in, and so does a run that
    another command is making at the same time.
    """
    out = workdir / f"{model}-{seed}"
    from semrec.common.io import BusyError, exclusive

    try:
        with exclusive(workdir / f"{out.name}.lock", f"{model} seed {seed}: {out} is in use by another process"):
            return _run_in(out, model, seed, data, extra, dataset or data.name, device)
    except BusyError as e:
        raise RunFailed(str(e)) from None


def _run_in(out: Path, model: str, seed: int, data: Path, extra: list[str], dataset: str, device: str) -> dict:
    from semrec.encoder.trainer import CHECKPOINT

    spec = {"model": model, "seed": seed, "data": str(data), "settings": extra}
    spec_file, record_file = out.with_name(out.name + ".spec.json"), out.with_name(out.name + ".record.json")
    if out.exists() or spec_file.exists():
        if not spec_file.exists() or json.loads(spec_file.read_text()) != spec:
            raise RunFailed(f"{model} seed {seed}: {out} holds a run made with other settings, or not by this "
                            f"benchmark ({spec_file.name} differs or is missing); give another --workdir")
        if record_file.exists():
            return json.loads(record_file.read_text())
    resume = (out / CHECKPOINT).exists()
    if not resume:  # nothing finished in it (no checkpoint before the first validation)
        shutil.rmtree(out, ignore_errors=True)
    spec_file.write_text(json.dumps(spec))
    how = (["--resume", str(out)] if resume else
           ["--model", model, "--dataset", dataset, "--data-dir", str(data), "--seed", str(seed), "--out", str(out),
            *extra])
    cmd = [sys.executable, "-c", CHILD, *how, "--device", device, "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RunFailed(f"{model} seed {seed} failed:\n{proc.stderr[-2000:]}")
    peak_kb = int(next(ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("PEAK_RSS_KB")))
    res = json.loads((out / "results.json").read_text())
    t = res["timing"]
    record = {"seed": seed, "valid": res["valid"], "test": res["test"], "best_epoch": res["best_epoch"],
              "epochs": res["last_epoch"] + 1, "train_epoch_s": statistics.median(t["train_epoch_seconds"]),
              "eval_s": statistics.median(t["eval_seconds"]), "peak_rss_mb": peak_kb / 1024, "wall_s": wall,
              "run_dir": str(out), "device": res.get("device", device),
              **({"resumed": True} if resume else {})}
    record_file.write_text(json.dumps(record))
    return record


@contextlib.contextmanager
def run_dirs(workdir: str | None) -> Iterator[Path]:
    """Where the runs go: ``workdir`` if given (kept, so the same command run again picks up
    finished and killed runs), else a temporary directory removed at the end."""
    if workdir:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)


def run_all(tasks: list[tuple[Hashable, Callable[[], dict]]], jobs: int = 1
            ) -> Iterator[tuple[Hashable, dict | RunFailed]]:
    """Run the tasks (``label``, a function making one run), ``jobs`` at a time, and yield
    ``(label, its record)``, or ``(label, the RunFailed)``, as each one ends. With one job they run
    and end in order. Each run is its own process, so threads that wait on them are enough: on a
    GPU machine several trainings share the device (they are small), one per CPU core at most."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(fn): label for label, fn in tasks}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except RunFailed as e:
                yield futures[future], e


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--jobs``, for the benchmarks that make full runs."""
    p.add_argument("--device", default="cpu", help="where every run trains: cpu (the default; the docs' timings), "
                                                   "cuda or cuda:N")
    p.add_argument("--jobs", type=_positive, default=1, help="runs at a time, each its own process (default 1; on a "
                                                      "GPU machine, up to one per CPU core share the GPU)")


def save_runs(args, runs: dict) -> None:
    """With ``--json FILE``, write the runs so far. Called after every run, so a kill or a later
    failure loses nothing."""
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


def load_runs(files: list[str]) -> dict:
    """Runs saved by ``--json`` in several files (e.g. one per seed or per machine), pooled: the
    lists under the same keys are joined, at any depth, and sorted by seed."""
    def merge(into: dict, part: dict) -> None:
        for key, value in part.items():
            if isinstance(value, list):
                into.setdefault(key, []).extend(value)
                into[key].sort(key=lambda r: r["seed"])
            else:
                merge(into.setdefault(key, {}), value)

    pooled: dict = {}
    for f in files:
        merge(pooled, json.loads(Path(f).read_text()))
    return pooled


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Seeds, overrides and outputs, shared by the benchmarks that make full runs."""
    p.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024, 2025])
    p.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every run")
    p.add_argument("--markdown", help="append the table to this file")
    p.add_argument("--json", help="write all per-run numbers to this file")
    p.add_argument("--workdir", help="keep the run directories here (default: a temporary directory); the same "
                                     "command run again reads back finished runs and resumes killed ones")
    add_device_arguments(p)


def fmt(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["lightgcn", "gccf"])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--from-json", nargs="+", metavar="FILE",
                   help="no runs: rebuild the table from the --json files of earlier runs (e.g. one per seed "
                        "or per machine); runs of the same model are pooled")
    add_run_arguments(p)
    args = p.parse_args(argv)
    runs: dict[str, list[dict]] = {}
    failed: list[str] = []
    if args.from_json:
        runs = load_runs(args.from_json)
        args.seeds = sorted({r["seed"] for rs in runs.values() for r in rs})
    else:
        data = Path(args.data_dir)
        if not (data / "trn_mat.pkl").exists():
            print(f"skipped: {data} not found (the benchmark reads ../shared/data/rlmrec_yelp)", file=sys.stderr)
            return 0
        extra = [x for o in args.overrides for x in ("--set", o)]
        with run_dirs(args.workdir) as work:
            tasks = [((model, s), functools.partial(run_one, model, s, data, extra, work, device=args.device))
                     for model in args.models for s in args.seeds]
            for (model, s), r in run_all(tasks, args.jobs):
                if isinstance(r, RunFailed):  # keep going: the other runs' results still count
                    print(r, file=sys.stderr, flush=True)
                    failed.append(f"{model} seed {s}")
                    continue
                runs.setdefault(model, []).append(r)
                runs[model].sort(key=lambda x: x["seed"])
                save_runs(args, runs)
                print(f"{model} seed {r['seed']}: recall@20 {r['test']['recall@20']:.4f} ndcg@20 "
                      f"{r['test']['ndcg@20']:.4f}, {r['epochs']} epochs, {r['wall_s']:.0f}s",
                      file=sys.stderr, flush=True)
        runs = {m: runs[m] for m in args.models if m in runs}  # the order asked for
    if runs:
        report(args, argv, runs, table(runs), "bench_graph_cf.py", "Graph backbones on RLMRec Yelp",
               "mean ± std of test metrics at the best validation epoch; times are medians.")
    if failed:
        print("failed runs: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def table(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: per model, mean ± std over its runs, the paper's numbers, times and memory."""
    header = ("| model | R@5 | R@10 | R@20 | N@5 | N@10 | N@20 | paper R@20 / N@20 | vs paper R@20 / N@20 "
              "| s/epoch | s/eval | epochs (best) | wall s | peak RSS MB |")
    rows = [header, "|" + "---|" * 14]
    for model, rs in runs.items():
        m = lambda key: fmt([r["test"][key] for r in rs])
        mean = lambda key: statistics.fmean(r["test"][key] for r in rs)
        paper = PAPER.get(model)
        vs = (f"{100 * (mean('recall@20') / paper[0] - 1):+.1f}% / {100 * (mean('ndcg@20') / paper[1] - 1):+.1f}%"
              if paper else "-")
        med = lambda key: statistics.median(r[key] for r in rs)
        rows.append(
            f"| {model} | {m('recall@5')} | {m('recall@10')} | {m('recall@20')} | {m('ndcg@5')} | {m('ndcg@10')} "
            f"| {m('ndcg@20')} | {'%.4f / %.4f' % paper if paper else '-'} | {vs} | {med('train_epoch_s'):.2f} "
            f"| {med('eval_s'):.2f} | {'/'.join(str(r['epochs']) for r in rs)} "
            f"({'/'.join(str(r['best_epoch']) for r in rs)}) | {med('wall_s'):.0f} | {max(r['peak_rss_mb'] for r in rs):.0f} |")
    return rows


def report(args, argv, runs: dict, rows: list[str], script: str, title: str, note: str) -> None:
    """Print the table; with ``--json`` / ``--markdown`` also save the runs / append the table,
    headed by the machine, the date and the command."""
    table = "\n".join(rows)
    print(table)
    save_runs(args, runs)
    if args.markdown:
        cmd = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.markdown, "a") as f:
            f.write(f"\n### {title} ({time.strftime('%Y-%m-%d')})\n\n"
                    f"Machine: {machine(args.device)}.  \nCommand: `{cmd.strip()}`  \n"
                    f"Seeds: {args.seeds}; {note}\n\n{table}\n")


def append_markdown(path: str, script: str, argv: list[str] | None, title: str, text: str,
                    device: str = "cpu") -> None:
    """Append ``text`` to the file ``path`` under a dated heading with the machine and the command."""
    cmd = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    with open(path, "a") as f:
        f.write(f"\n### {title} ({time.strftime('%Y-%m-%d')})\n\nMachine: {machine(device)}.  \n"
                f"Command: `{cmd.strip()}`\n\n"
                f"{text}\n")


def finish(args, argv: list[str] | None, script: str, title: str, text: str, failed: list[str],
           any_runs: bool = True) -> int:
    """Print ``text``, append it to ``--markdown`` (with the threads per process) when there were
    runs, report failed runs; the exit status (1 if any run failed)."""
    print(text)
    if args.markdown and any_runs:
        append_markdown(args.markdown, script, argv, title, f"{args.threads} torch thread(s) per process.\n\n{text}",
                        device=getattr(args, "device", "cpu"))
    if failed:
        print("failed runs: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def subcommand_parser(doc: str, names: tuple[str, ...], workdir_help: str
                      ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """A parser with one subcommand per name, each taking ``--workdir`` and ``--threads``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    subs = {}
    for name in names:
        s = subs[name] = sub.add_parser(name)
        s.add_argument("--workdir", required=True, help=workdir_help)
        s.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    return p, subs


if __name__ == "__main__":
    raise SystemExit(main())
