"""Hyperparameter search with Optuna: each trial a training run, pruned at the validations it runs.

    semrec-tune --model lightgcn --dataset yelp --space space.yaml --trials 30 --study-dir tune/lightgcn-yelp
    semrec-tune --model sasrec --dataset beauty --space space.yaml --trials 20 --jobs 2 --set train.epochs=100

The space is a YAML mapping of ``section.key`` to a distribution::

    train.lr: {float: [1.0e-4, 1.0e-2], log: true}
    model.layers: {int: [1, 4]}
    model.dropout: {choice: [0.1, 0.2, 0.5]}

Optuna's TPE sampler proposes settings; each trial is ``semrec-train`` in its own process, in
``STUDY_DIR/trials/<number>``, and its validation ``stop_metric`` is reported to Optuna after every
validation the trainer runs, so the median pruner can stop a poor trial early (the process is
ended; never before epoch ``--prune-after``). The study lives in ``STUDY_DIR/study.db`` (SQLite): the same command after a kill resumes
it, finishing the trials left (a trial the kill interrupted is marked failed and not counted).
``--jobs N`` runs N trials at once. At the end: every trial as a table, and the best trial's
settings in ``STUDY_DIR/best.yaml`` (``semrec-train --config``-ready ``--set`` lines as comments).

``--sampler grid`` runs every combination of a space of ``choice`` lists once (Optuna's grid
sampler; ``--trials`` defaults to the grid's size; a point a kill cut short runs again).
``--seeds S1 S2 ...`` makes each trial one run per seed (``trials/<number>/seed-<S>``), scored by
their mean validation metric; pruning watches the first seed's run. Needs Optuna
(``pip install "semrec[tune]"``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

KINDS = ("float", "int", "choice")


def read_space(path: Path) -> dict[str, dict[str, Any]]:
    """The search space, checked: every key ``section.name``, every value one distribution."""
    import yaml

    from semrec.common.io import read_text
    from semrec.encoder.config import SECTIONS

    try:
        space = yaml.safe_load(read_text(path, ValueError))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{path}: expected a mapping of section.key to a distribution")
    for key, dist in space.items():
        section = str(key).split(".")[0]
        if "." not in str(key) or section not in SECTIONS:
            raise ValueError(f"{path}: {key!r}: keys are section.name, sections {', '.join(SECTIONS)}")
        kinds = [k for k in KINDS if isinstance(dist, dict) and k in dist]
        if len(kinds) != 1:
            raise ValueError(f"{path}: {key}: give one of {', '.join(KINDS)} (e.g. {{float: [0.0001, 0.01], log: true}})")
        kind, arg = kinds[0], dist[kinds[0]]
        if kind in ("float", "int") and not (isinstance(arg, list) and len(arg) == 2 and arg[0] < arg[1]):
            raise ValueError(f"{path}: {key}: {kind} needs [low, high] with low < high, got {arg!r}")
        if kind == "choice" and not (isinstance(arg, list) and arg):
            raise ValueError(f"{path}: {key}: choice needs a non-empty list, got {arg!r}")
        extra = set(dist) - {kind, "log", "step"}
        if extra:
            raise ValueError(f"{path}: {key}: unknown option(s) {', '.join(sorted(extra))}; valid: log, step")
    return space


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    values = {}
    for key, dist in space.items():
        if "float" in dist:
            lo, hi = dist["float"]
            values[key] = trial.suggest_float(key, float(lo), float(hi), log=bool(dist.get("log")),
                                              step=dist.get("step"))
        elif "int" in dist:
            lo, hi = dist["int"]
            values[key] = trial.suggest_int(key, int(lo), int(hi), log=bool(dist.get("log")), step=dist.get("step", 1))
        else:
            values[key] = trial.suggest_categorical(key, dist["choice"])
    return values


class Objective:
    """One trial: a training run watched through its ``history.jsonl``."""

    def __init__(self, args: argparse.Namespace, space: dict, study_dir: Path, stop_metric: str):
        self.args, self.space, self.study_dir, self.stop = args, space, study_dir, stop_metric

    def __call__(self, trial) -> float:
        values = suggest(trial, self.space)
        out = self.study_dir / "trials" / f"{trial.number:04d}"
        if out.exists():
            import shutil

            shutil.rmtree(out)  # a number reused after a failed attempt: start clean
        trial.set_user_attr("run_dir", str(out))
        seeds = self.args.seeds or [self.args.seed]
        runs = [self._run(trial, values, out if len(seeds) == 1 else out / f"seed-{seed}", seed, watch=i == 0)
                for i, seed in enumerate(seeds)]
        tests = [r["test"].get(self.stop) for r in runs]
        trial.set_user_attr("test", None if None in tests else sum(tests) / len(tests))
        trial.set_user_attr("epochs", "/".join(str(r["last_epoch"] + 1) for r in runs))
        trial.set_user_attr("seconds", sum(sum(r["timing"]["train_epoch_seconds"]) + sum(r["timing"]["eval_seconds"])
                                           for r in runs))
        return sum(r["valid"][self.stop] for r in runs) / len(runs)

    def _run(self, trial, values: dict[str, Any], out: Path, seed: int, watch: bool) -> dict:
        """One training run of the trial; its validations go to the pruner when ``watch``."""
        import optuna

        sets = [*self.args.overrides, *(f"{k}={json.dumps(v)}" for k, v in values.items())]
        cmd = [sys.executable, "-c", TRIAL, str(os.getpid()), "--model", self.args.model, "--dataset",
               self.args.dataset, "--out", str(out), "--quiet", "--seed", str(seed),
               *(["--data-dir", self.args.data_dir] if self.args.data_dir else []),
               *(x for s in sets for x in ("--set", s))]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.args.threads)}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        seen = 0
        try:
            while True:
                done = proc.poll() is not None
                for record in _history(out)[seen:]:
                    seen += 1
                    if watch and "valid" in record and self.stop in record["valid"]:
                        trial.report(record["valid"][self.stop], record["epoch"])
                        if trial.should_prune():
                            _end(proc)
                            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")
                if done:
                    break
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                _end(proc)
        if proc.returncode != 0:
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise RuntimeError(f"trial {trial.number} (seed {seed}) failed: "
                               f"{err[-1] if err else f'exit {proc.returncode}'}")
        return json.loads((out / "results.json").read_text())


def _history(run: Path) -> list[dict]:
    try:
        lines = (run / "history.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            break
    return out


def _end(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


#: a trial's process: ``semrec-train`` that ends when semrec-tune dies, even by SIGKILL (Linux's
#: ``PR_SET_PDEATHSIG``, set in the child itself: ``preexec_fn`` is unsafe with the threads of
#: ``--jobs``; elsewhere a killed study leaves its running trial to finish alone)
TRIAL = """
import os, signal, sys
try:
    import ctypes
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):  # the study died before the line above
    sys.exit(1)
from semrec.encoder.train_encoder import main
sys.exit(main(sys.argv[2:]))
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semrec-tune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--space", required=True, help="the search space (YAML; module docstring)")
    p.add_argument("--trials", type=int, help="trials in all, counting those of a resumed study (required with "
                                              "tpe; with grid, default: every combination)")
    p.add_argument("--sampler", choices=["tpe", "grid"], default="tpe",
                   help="tpe (default) or grid: every combination of a space of choice lists, once")
    p.add_argument("--seeds", nargs="+", type=int, help="one run per seed in each trial, scored by their mean")
    p.add_argument("--metric", help="the validation metric a trial is scored by (default: the config's stop_metric)")
    p.add_argument("--study-dir", help="where the study and its runs live (default runs/tune/<model>-<dataset>)")
    p.add_argument("--jobs", type=int, default=1, help="trials at once, each its own process")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    p.add_argument("--seed", type=int, default=2023, help="the sampler's and every run's seed")
    p.add_argument("--no-prune", action="store_true", help="run every trial to its end")
    p.add_argument("--prune-after", type=int, default=10,
                   help="no trial is pruned before this epoch (early validations rarely rank the final ones)")
    p.add_argument("--startup-trials", type=int, default=10,
                   help="trials drawn at random before TPE models the space (Optuna's default 10; fewer for small budgets)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed settings for every trial")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semrec.common.extras import MissingExtra, require
    from semrec.common.io import runs_root, write_text
    from semrec.encoder.config import ConfigError, resolve_config
    from semrec.encoder.registry import get_model_class

    try:
        optuna = require("optuna", "tune", "semrec-tune")
        space = read_space(Path(args.space))
        grid = {}
        if args.sampler == "grid":
            if not all("choice" in d for d in space.values()):
                raise ValueError(f"{args.space}: --sampler grid needs every setting as a choice list; "
                                 f"not: {', '.join(k for k, d in space.items() if 'choice' not in d)}")
            grid = {k: d["choice"] for k, d in space.items()}
            size = 1
            for values in grid.values():
                size *= len(values)
            args.trials = args.trials or size
        elif args.trials is None:
            raise ValueError("--trials is required with the tpe sampler")
        if args.trials < 1 or args.jobs < 1 or args.startup_trials < 0:
            raise ValueError("--trials and --jobs must be at least 1, --startup-trials at least 0")
        # every setting checked once before any trial: a bad key or range fails here, not 30 times
        cfg = resolve_config(args.model, args.dataset, get_model_class(args.model), args.overrides)
        metric = args.metric or cfg.train.stop_metric
        computed = {f"{m}@{k}" for m in cfg.eval.metrics for k in cfg.eval.ks}
        if metric not in computed:
            raise ValueError(f"--metric {metric!r} is not computed; it must be one of {', '.join(sorted(computed))}")
        for key, dist in space.items():
            probe = dist.get("choice", dist.get("float", dist.get("int")))[0]
            resolve_config(args.model, args.dataset, get_model_class(args.model),
                           [*args.overrides, f"{key}={json.dumps(probe)}"])
    except (MissingExtra, ValueError, KeyError, ConfigError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"semrec-tune: {msg}", file=sys.stderr)
        return 2
    study_dir = Path(args.study_dir) if args.study_dir else runs_root() / "tune" / f"{args.model}-{args.dataset}"
    study_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(study_dir / 'study.db').resolve()}")
    pruner = optuna.pruners.NopPruner() if args.no_prune else \
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=args.prune_after)
    sampler = optuna.samplers.GridSampler(grid, seed=args.seed) if grid else \
        optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=args.startup_trials)
    study = optuna.create_study(study_name="semrec", storage=storage, direction="maximize", load_if_exists=True,
                                sampler=sampler, pruner=pruner)
    from optuna.trial import TrialState

    # a trial left running by a killed command is failed, and another takes its place (Optuna's
    # storage API; the trial's id is only exposed as _trial_id)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        if grid:  # the grid sampler counts a failed point as visited: queue it again
            study.enqueue_trial(t.params)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    left = args.trials - len(study.get_trials(deepcopy=False, states=finished))
    if grid:  # a point that failed on its own (e.g. diverged) is not run again; one queued again is
        tried = len(study.get_trials(deepcopy=False, states=finished + (TrialState.FAIL,)))
        left = min(left, size - tried + len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))))
    if left > 0:
        print(f"study {study_dir}: {left} trial(s) to run, {args.jobs} at a time", flush=True)
        study.optimize(Objective(args, space, study_dir, metric), n_trials=left, n_jobs=args.jobs,
                       catch=(RuntimeError,))
    trials = study.get_trials(deepcopy=False, states=finished + (TrialState.FAIL,))
    rows = [f"| trial | state | valid {metric} | test | epochs | seconds | "
            + " | ".join(space) + " |", "|" + "---|" * (6 + len(space))]
    for t in sorted(trials, key=lambda t: t.number):
        v = f"{t.value:.4f}" if t.value is not None else "-"
        test = t.user_attrs.get("test")
        rows.append(f"| {t.number} | {t.state.name.lower()} | {v} | {f'{test:.4f}' if test is not None else '-'} "
                    f"| {t.user_attrs.get('epochs', '-')} | {t.user_attrs.get('seconds', 0):.0f} | "
                    + " | ".join(str(t.params.get(k, "-")) for k in space) + " |")
    print("\n".join(rows))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        print("semrec-tune: no trial finished", file=sys.stderr)
        return 3
    best = study.best_trial
    lines = [f"# best of {len(complete)} finished trials: trial {best.number}, valid {metric} "
             f"{best.value:.4f} ({best.user_attrs.get('run_dir')})",
             "# train with: semrec-train --model " + args.model + " --dataset " + args.dataset + " "
             + " ".join(f"--set {k}={json.dumps(v)}" for k, v in {**_pairs(args.overrides), **best.params}.items())]
    nested: dict[str, dict[str, Any]] = {}
    for key, value in {**_pairs(args.overrides), **best.params}.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    import yaml

    write_text(study_dir / "best.yaml", "\n".join(lines) + "\n" + yaml.safe_dump(nested, sort_keys=False))
    print(f"best: trial {best.number}, valid {metric} {best.value:.4f} -> {study_dir / 'best.yaml'}")
    return 0


def _pairs(overrides: list[str]) -> dict[str, Any]:
    from semrec.encoder.config import parse_overrides

    return {f"{section}.{key}": value for section, key, value in parse_overrides(overrides)}


if __name__ == "__main__":
    raise SystemExit(main())
