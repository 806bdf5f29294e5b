"""semrec-tune against the shipped config (issue 38): does a fixed budget of trials reach it?

    python benchmarks/bench_tune.py --workdir /tmp/bench/tune --trials 8

LightGCN on RLMRec's Yelp split (``../shared/data/rlmrec_yelp``), both sides choosing epochs by
validation NDCG@20 (``train.stop_metric=ndcg@20``): one run of the shipped config
(``configs/lightgcn.yaml``), then ``semrec-tune`` over ``benchmarks/spaces/lightgcn.yaml`` for
``--trials`` trials (TPE after ``--startup-trials`` random ones, median pruning from epoch
``--prune-after``, one thread each, ``--jobs`` at a time). Printed: the
shipped run's validation and test NDCG@20, the best trial's, their ratio, and the seconds per
trial (pruned trials included). The study resumes after a kill (the same command again).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import finish, run_one  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
YELP = REPO.parent / "shared" / "data" / "rlmrec_yelp"
STOP = ["train.stop_metric=ndcg@20"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--startup-trials", type=int, default=3, help="random trials before TPE (semrec-tune's flag)")
    p.add_argument("--prune-after", type=int, default=30, help="no pruning before this epoch (semrec-tune's flag)")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    if not YELP.exists():
        print(f"skipped: {YELP} not found (the benchmark reads ../shared/data)", file=sys.stderr)
        return 0
    work = Path(args.workdir)
    (work / "shipped").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    shipped = run_one("lightgcn", 2023, YELP, [x for s in STOP for x in ("--set", s)], work / "shipped", dataset="yelp")
    study_dir = work / "study"
    subprocess.run([sys.executable, "-m", "semrec.encoder.tune", "--model", "lightgcn", "--dataset", "yelp",
                    "--data-dir", str(YELP), "--space", str(REPO / "benchmarks" / "spaces" / "lightgcn.yaml"),
                    "--trials", str(args.trials), "--jobs", str(args.jobs), "--threads", str(args.threads),
                    "--study-dir", str(study_dir), "--startup-trials", str(args.startup_trials), "--prune-after",
                    str(args.prune_after), *(x for s in STOP for x in ("--set", s))], check=True, env=env)
    study = optuna.load_study(study_name="semrec", storage=f"sqlite:///{(study_dir / 'study.db').resolve()}")
    trials = [t for t in study.get_trials() if t.state.is_finished() and t.state.name in ("COMPLETE", "PRUNED")]
    best = study.best_trial
    per_trial = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    ratio = best.value / shipped["valid"]["ndcg@20"]
    text = (f"LightGCN, RLMRec Yelp, epochs chosen by validation NDCG@20, {args.threads} torch thread(s) per run.\n\n"
            f"| | valid NDCG@20 | test NDCG@20 | test Recall@20 |\n|---|---|---|---|\n"
            f"| shipped config | {shipped['valid']['ndcg@20']:.4f} | {shipped['test']['ndcg@20']:.4f} "
            f"| {shipped['test']['recall@20']:.4f} |\n"
            f"| best of {len(trials)} trials (trial {best.number}: {best.params}) | {best.value:.4f} "
            f"| {best.user_attrs.get('test', float('nan')):.4f} | - |\n\n"
            f"Best trial / shipped, validation NDCG@20: {ratio:.3f}x (target ≥ 1: {'met' if ratio >= 1 else 'not met'}). "
            f"Seconds per trial: median {sorted(per_trial)[len(per_trial) // 2]:.0f}, "
            f"{sum(t.state.name == 'PRUNED' for t in trials)} of {len(trials)} pruned; the shipped run "
            f"{shipped['wall_s']:.0f} s.")
    return finish(args, argv, "bench_tune.py", "Tuning LightGCN on Yelp", text, [])


if __name__ == "__main__":
    raise SystemExit(main())
