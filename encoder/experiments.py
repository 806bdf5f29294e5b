"""Full training runs as separate processes, and their records: the machinery behind
``semrec-align-check`` and the scripts in ``benchmarks/``.

A run is ``semrec-train`` in its own process (so a crash or a leak ends with it), in
``workdir/<model>-<seed>``; its record (test and validation metrics, seconds per epoch and per
evaluation, epochs, peak memory, wall time) is kept beside it, so the same command run again reads
finished runs back and resumes killed ones (:func:`run_one`). :func:`run_all` runs several at once.
"""
from __future__ import annotations

import argparse
import contextlib
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

from semrec.encoder.run_files import PER_USER

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


def significance(runs: dict[str, list[dict]], against: dict[str, str], metric: str,
                 file: str = PER_USER) -> str:
    """Each variant against the one it is compared with (``against[name]``), paired over users
    (``semrec-compare``'s table, Holm over the variants that share a base), from the runs'
    ``per_user.npz`` (or ``file``); the pairs whose runs lack it are named, not tested."""
    from semrec.encoder.compare import compare, table

    def saved(name: str) -> bool:
        return all(r.get("run_dir") and (Path(r["run_dir"]) / file).exists() for r in runs[name])

    groups: dict[str, list[str]] = {}
    for name, base in against.items():
        if name in runs and base in runs:
            groups.setdefault(base, []).append(name)
    parts, missing = [], []
    for base, names in groups.items():
        have = [n for n in names if saved(n)]
        missing += [f"{n} against {base}" for n in names if n not in have]
        if not have or not saved(base):
            missing += [f"{n} against {base}" for n in have]
            continue
        paths = {n: [Path(r["run_dir"]) for r in runs[n]] for n in [base, *have]}
        results = compare(paths[base], {n: paths[n] for n in have}, metric, file=file)
        parts.append(f"Against `{base}` (test {metric}, paired over users):\n\n"
                     + table(results, metric, results[0].base_runs))
    if missing:
        parts.append(f"Not tested (a run folder without `{file}`: gone, or made before runs saved it): " + ", ".join(missing) + ".")
    return "\n\n".join(parts)


def report(args, argv, runs: dict, rows: list[str], script: str, title: str, note: str) -> None:
    """Print the table; with ``--json`` / ``--markdown`` also save the runs / append the table,
    headed by the machine, the date and the command."""
    table = "\n".join(rows)
    print(table)
    save_runs(args, runs)
    if args.markdown:
        cmd = _command(script, argv)
        with open(args.markdown, "a") as f:
            f.write(f"\n### {title} ({time.strftime('%Y-%m-%d')})\n\n"
                    f"Machine: {machine(args.device)}.  \nCommand: `{cmd.strip()}`  \n"
                    f"Seeds: {args.seeds}; {note}\n\n{table}\n")


def append_markdown(path: str, script: str, argv: list[str] | None, title: str, text: str,
                    device: str = "cpu") -> None:
    """Append ``text`` to the file ``path`` under a dated heading with the machine and the command."""
    cmd = _command(script, argv)
    with open(path, "a") as f:
        f.write(f"\n### {title} ({time.strftime('%Y-%m-%d')})\n\nMachine: {machine(device)}.  \n"
                f"Command: `{cmd.strip()}`\n\n"
                f"{text}\n")


def _command(script: str, argv: list[str] | None) -> str:
    """The command line that made a table: a script in ``benchmarks/`` or an installed command."""
    prog = f"python benchmarks/{script}" if script.endswith(".py") else script
    return f"{prog} " + " ".join(argv if argv is not None else sys.argv[1:])
