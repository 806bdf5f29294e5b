"""Baselines beside RecBole's (issue 38): EASE and ItemKNN on the same split, and the graph models.

    python benchmarks/bench_baselines.py --workdir /tmp/bench/base --recbole-python /tmp/recbole_env/bin/python
    python benchmarks/bench_baselines.py --workdir /tmp/bench/base_yelp --data-dir ../shared/data/rlmrec_yelp \\
        --exclude train

MovieLens-100K (``data/prepare.py recbole``, random 3:1:1 split per user, seed 2023) unless
``--data-dir`` names another dataset folder. Each semrec model is one CLI run (one thread) with the
history excluded at test as RecBole masks it (``eval.exclude=history``), EASE and ItemKNN at
RecBole's default settings (``reg`` 250; ``k`` 100, ``shrink`` 0) and EASE also with λ chosen on
validation (``--exclude``: what is removed from the ranking at test; ``train`` is RLMRec's protocol,
the graph models' table in docs/benchmarks.md). With ``--recbole-python``, RecBole 1.2.1's EASE and ItemKNN run on the very same split
(``benchmarks/recbole_general.py``, in RecBole's environment) and stand beside them. Printed: test
Recall@20 / NDCG@20 and the seconds to fit (or train); then each model against LightGCN, paired over
users (``semrec-compare``'s tests on per-user Recall@20).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import RunFailed, finish, run_one  # noqa: E402
from semrec.encoder.experiments import significance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "data" / "ml-100k"
#: name -> (model, settings, RecBole's model it stands beside)
VARIANTS = {
    "pop": ("pop", [], None),
    "itemknn": ("itemknn", ["model.k=100", "model.shrink=0"], "ItemKNN"),
    "ease": ("ease", ["model.reg=250"], "EASE"),
    "ease_tuned": ("ease", [], None),
    "bpr": ("bpr", [], None),
    "lightgcn": ("lightgcn", [], None),
}
KS = "eval.ks=[10, 20]"


def ml100k(folder: Path, env: dict, *split: str) -> Path | None:
    """MovieLens-100K from ``../shared/data`` made once in ``folder`` (``split``: ``prepare.py``'s split
    options; its default: a random 3:1:1 split per user); None, said on stderr, where it is absent."""
    if not ML100K.exists():
        print(f"skipped: {ML100K} not found (the benchmark reads ../shared/data)", file=sys.stderr)
        return None
    data = folder / "ml100k"
    if not (data / "trn_mat.pkl").exists():
        subprocess.run([sys.executable, str(REPO / "data" / "prepare.py"), "recbole", str(ML100K), "--name", "ml100k",
                        "--out-dir", str(folder), *split], check=True, env=env, stdout=subprocess.DEVNULL)
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="the dataset, the runs and RecBole's files go here")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--data-dir", help="a dataset folder (default: MovieLens-100K, made in the workdir)")
    p.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--recbole-python", help="RecBole's interpreter (benchmarks/recbole_general.py's environment)")
    p.add_argument("--exclude", choices=["history", "train"], default="history",
                   help="removed from the ranking at test (default history: RecBole's masking)")
    p.add_argument("--markdown", help="append the table to this file")
    args = p.parse_args(argv)
    work = Path(args.workdir)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    data = Path(args.data_dir) if args.data_dir else ml100k(work / "data", env)
    if data is None:
        return 0
    common = [f"eval.exclude={args.exclude}", KS]
    runs, failed = {}, []
    for name in args.models:
        model, settings, _ = VARIANTS[name]
        where = work / "runs" / name
        where.mkdir(parents=True, exist_ok=True)
        try:
            runs[name] = run_one(model, 2023, data, [x for s_ in settings + common for x in ("--set", s_)], where,
                                 dataset=data.name)
        except RunFailed as e:
            print(e, file=sys.stderr)
            failed.append(name)
            continue
        r = runs[name]
        print(f"{name}: recall@20 {r['test']['recall@20']:.4f} ndcg@20 {r['test']['ndcg@20']:.4f}", file=sys.stderr)
    recbole = {}
    if args.recbole_python:
        out = work / "recbole.json"
        if not out.exists():
            subprocess.run([args.recbole_python, str(REPO / "benchmarks" / "recbole_general.py"), "--data", str(data),
                            "--work", str(work / "recbole"), "--out", str(out), "--threads", str(args.threads)],
                           check=True, env=env, stdout=subprocess.DEVNULL)
        recbole = json.loads(out.read_text())
    rows = ["| model | semrec R@20 | semrec N@20 | RecBole R@20 | RecBole N@20 | semrec / RecBole R@20 "
            "| fit or train s (semrec / RecBole) |", "|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        rb = recbole.get(VARIANTS[name][2] or "")
        t = r["train_epoch_s"] * r["epochs"]
        cells = (f"{rb['test']['recall@20']:.4f} | {rb['test']['ndcg@20']:.4f} | "
                 f"{r['test']['recall@20'] / rb['test']['recall@20']:.3f} | {t:.1f} / {rb['fit_s']:.1f}"
                 if rb else f"- | - | - | {t:.1f}")
        rows.append(f"| {name} | {r['test']['recall@20']:.4f} | {r['test']['ndcg@20']:.4f} | {cells} |")
    text = (f"{data.name}: {', '.join(common)}; one run each (seed 2023), {args.threads} torch thread(s). "
            "EASE tuned: λ chosen on validation from the default grid.\n\n" + "\n".join(rows))
    tested = significance({n: [r] for n, r in runs.items()}, {n: "lightgcn" for n in runs if n != "lightgcn"},
                          "recall@20")
    if tested:
        text += "\n\n" + tested
    return finish(args, argv, "bench_baselines.py", "Baselines beside RecBole", text, failed, any_runs=bool(runs))


if __name__ == "__main__":
    raise SystemExit(main())
