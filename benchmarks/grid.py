"""Grid search on the validation split: every combination of the given settings, by ``semrec-tune``.

    python benchmarks/grid.py --model lightgcn_gene --data-dir data/ml100k_text \
        --grid align.recon_weight=0.01,0.1,1 align.mask_ratio=0.05,0.1,0.2 --seeds 2023 2024 2025

The grid is written as a space of choice lists (``WORKDIR/space.yaml``) and run by
``semrec-tune --sampler grid``: each combination once, ``--seeds`` runs each, scored by their mean
*validation* ``--metric`` (default Recall@20) at the best epoch, no pruning; the test split is only
shown beside it. The study lives in ``--workdir``, so the same command after a kill runs only what is
missing. This is how the per-dataset sections of ``configs/`` for the text benchmark datasets were
chosen (RLMRec grid-searched its own the same way).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["a.b=1,2", "c.d=x"]`` -> ``{"a.b": [1, 2], "c.d": ["x"]}`` (numbers and booleans as such)."""
    def value(text: str):
        try:
            return json.loads(text)
        except ValueError:
            return text

    axes = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid expects key=v1,v2,...; got {spec!r}")
        axes[key.strip()] = [value(v.strip()) for v in values.split(",")]
    return axes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2", help="settings to combine")
    p.add_argument("--metric", default="recall@20", help="validation metric to rank by")
    p.add_argument("--seeds", nargs="+", type=int, default=[2023])
    p.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every run")
    p.add_argument("--workdir", help="the study and its runs (default runs/grid/<model>-<dataset>)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, each its own process")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = p.parse_args(argv)
    data = Path(args.data_dir)
    if not data.exists():
        print(f"skipped: {data} not found", file=sys.stderr)
        return 0
    import yaml

    from semrec.encoder.tune import main as tune

    work = Path(args.workdir or f"runs/grid/{args.model}-{data.name}")
    work.mkdir(parents=True, exist_ok=True)
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump({k: {"choice": v} for k, v in parse_grid(args.grid).items()}, sort_keys=False))
    return tune(["--model", args.model, "--dataset", data.name, "--data-dir", str(data), "--space", str(space),
                 "--sampler", "grid", "--no-prune", "--metric", args.metric, "--seeds", *map(str, args.seeds),
                 "--study-dir", str(work), "--jobs", str(args.jobs), "--threads", str(args.threads),
                 *(x for o in args.overrides for x in ("--set", o))])


if __name__ == "__main__":
    raise SystemExit(main())
