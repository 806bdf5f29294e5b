"""Grid search on the validation split: one model, every combination of the given settings.

    python benchmarks/grid.py --model lightgcn_gene --data-dir data/ml100k_text \
        --grid align.recon_weight=0.01,0.1,1 align.mask_ratio=0.05,0.1,0.2

Each combination is a full CLI run to early stopping (its own process, ``--seeds`` each);
runs are ranked by mean *validation* Recall@20 at the best epoch, the test split is only
printed beside it. This is how the per-dataset sections of ``configs/`` for the text
benchmark datasets were chosen (RLMRec grid-searched its own the same way).
"""
from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import (RunFailed, add_run_arguments, fmt, report, run_all, run_dirs, run_one,  # noqa: E402
                            save_runs)


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["a.b=1,2", "c.d=x"]`` -> ``[("a.b", ["1", "2"]), ("c.d", ["x"])]``."""
    axes = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid expects key=v1,v2,...; got {spec!r}")
        axes.append((key.strip(), [v.strip() for v in values.split(",")]))
    return axes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2", help="settings to combine")
    p.add_argument("--metric", default="recall@20", help="validation metric to rank by")
    add_run_arguments(p)
    p.set_defaults(seeds=[2023])
    args = p.parse_args(argv)
    data = Path(args.data_dir)
    if not data.exists():
        print(f"skipped: {data} not found", file=sys.stderr)
        return 0
    axes = parse_grid(args.grid)
    extra = [x for o in args.overrides for x in ("--set", o)]
    runs: dict[str, list[dict]] = {}
    combos = [(" ".join(f"{k}={v}" for (k, _), v in zip(axes, values)),
               [x for (k, _), v in zip(axes, values) for x in ("--set", f"{k}={v}")])
              for values in itertools.product(*(v for _, v in axes))]
    done: dict[str, list[dict | None]] = {label: [] for label, _ in combos}
    with run_dirs(args.workdir) as root:
        tasks = []
        for n, (label, sets) in enumerate(combos):
            work = root / str(n)  # one folder per grid point, failed ones included
            work.mkdir(exist_ok=True)
            tasks += [(label, functools.partial(run_one, args.model, s, data, extra + sets, work, device=args.device))
                      for s in args.seeds]
        for label, r in run_all(tasks, args.jobs):
            if isinstance(r, RunFailed):  # e.g. a setting that diverges: reported, the grid goes on
                print(r, file=sys.stderr, flush=True)
                r = None
            done[label].append(r)
            if len(done[label]) < len(args.seeds) or None in done[label]:
                continue
            runs[label] = sorted(done[label], key=lambda x: x["seed"])
            save_runs(args, runs)
            print(f"{label}: valid {args.metric} {fmt([r['valid'][args.metric] for r in runs[label]])}",
                  file=sys.stderr, flush=True)
    ranked = sorted(runs, key=lambda k: -statistics.fmean(r["valid"][args.metric] for r in runs[k]))
    shown = [args.metric] + [f"{m}@{args.metric.rsplit('@', 1)[-1]}" for m in ("recall", "ndcg")
                             if not args.metric.startswith(m + "@")]  # the test split beside, at the same k
    rows = [f"| {args.model} settings | valid {args.metric} | " + " | ".join(f"test {m}" for m in shown) + " | epochs |",
            "|" + "---|" * (3 + len(shown))]
    for label in ranked:
        rs = runs[label]
        rows.append(f"| {label} | {fmt([r['valid'][args.metric] for r in rs])} | "
                    + " | ".join(fmt([r["test"][m] for r in rs]) for m in shown) + " | "
                    f"{'/'.join(str(r['epochs']) for r in rs)} |")
    report(args, argv, runs, rows, "grid.py", f"Grid search: {args.model} on {data.name}",
           f"ranked by validation {args.metric}; the first row is the setting chosen.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
