"""Your own data, timed (issue 37): from a CSV to one user's top-10, and top-k for every user.

    python benchmarks/bench_own_data.py quickstart --workdir /tmp/bench/own
    python benchmarks/bench_own_data.py recommend-all --workdir /tmp/bench/own [--beauty DIR]

``quickstart``: MovieLens-100K from ``../shared/data/ml-100k`` written as a plain CSV
(``user_id,item_id,rating,timestamp,title``), then the three commands a new user types, each its
own process, timed end to end: ``data/prepare.py csv``, ``semrec-train`` (``--model``, default
LightGCN for ``--epochs`` 20) and ``semrec-recommend --user 196``. Target: under a minute.

``recommend-all``: ``semrec-recommend --all`` for every user of MovieLens-100K (leave-one-out) and,
with ``--beauty`` (a prepared S3-Rec Beauty folder), of Beauty, from a SASRec run of a few epochs
(the cost does not depend on how well it trained): seconds and peak memory of the command, and
whether its ``--as-of test`` lists give the NDCG@10 of the run's ``results.json`` (the evaluator's
rankings, list for list).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import finish, subcommand_parser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "data" / "ml-100k"


def write_csv(out: Path) -> Path:
    """ML-100K's ratings as a CSV with each film's title."""
    titles = {}
    lines = (ML100K / "ml-100k.item").read_text(encoding="latin-1").splitlines()
    head = [h.split(":")[0] for h in lines[0].split("\t")]
    for line in lines[1:]:
        row = dict(zip(head, line.split("\t")))
        titles[row["item_id"]] = row.get("movie_title", "").replace('"', "'")
    rows = ["user_id,item_id,rating,timestamp,title"]
    inter = (ML100K / "ml-100k.inter").read_text().splitlines()
    head = [h.split(":")[0] for h in inter[0].split("\t")]
    for line in inter[1:]:
        r = dict(zip(head, line.split("\t")))
        rows.append(f'{r["user_id"]},{r["item_id"]},{r["rating"]},{r["timestamp"]},"{titles.get(r["item_id"], "")}"')
    out.write_text("\n".join(rows) + "\n")
    return out


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0, proc.stdout + proc.stderr


#: semrec-recommend in a process that prints its own peak resident memory (KiB) last
RECOMMEND_MEASURED = ("import resource, sys\nfrom semrec.encoder.recommend import main\nrc = main(sys.argv[1:])\n"
                      "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)")


def quickstart(args, argv) -> int:
    if not ML100K.exists():
        print(f"skipped: {ML100K} not found (the benchmark reads ../shared/data)", file=sys.stderr)
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    csv = write_csv(work / "ratings.csv")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "SEMREC_HOME": str(work)}
    run_dir = work / "runs" / f"quickstart-{args.model}"
    steps = [
        ("prepare", [sys.executable, str(REPO / "data" / "prepare.py"), "csv", str(csv), "--name", "ml100k_csv",
                     "--user", "user_id", "--item", "item_id", "--time", "timestamp", "--rating", "rating",
                     "--item-text", "title", "--force"]),
        ("train", [sys.executable, "-m", "semrec.encoder.train_encoder", "--model", args.model, "--dataset",
                   "ml100k_csv", "--set", f"train.epochs={args.epochs}", "--out", str(run_dir), "--quiet"]),
        ("recommend", [sys.executable, "-m", "semrec.encoder.recommend", str(run_dir), "--user", "196", "-k", "10"]),
    ]
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    seconds, top = {}, ""
    for name, cmd in steps:
        seconds[name], top = timed(cmd, env)
    total = sum(seconds.values())
    res = json.loads((run_dir / "results.json").read_text())
    text = (f"MovieLens-100K as a CSV ({csv.stat().st_size / 1e6:.1f} MB), {args.model} for {args.epochs} epochs, "
            f"{args.threads} torch thread(s): " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) +
            f"; total {total:.1f} s (target < 60 s: ratio {60 / total:.2f}x); test recall@20 "
            f"{res['test']['recall@20']:.4f}. User 196's top-10:\n\n```\n{top.rstrip()}\n```")
    return finish(args, argv, "bench_own_data.py", "From a CSV to one user's top-10", text, [])


def _ndcg_from_lists(top: Path, data_dir: Path) -> float:
    """NDCG@10 of the written lists against each user's test item (the last of their sequence)."""
    import csv

    from semrec.common.io import load_pickle
    from semrec.encoder.recommend import IdMap

    ids = IdMap.of(data_dir, *load_pickle(data_dir / "trn_mat.pkl").shape)  # the original ids semrec-recommend wrote
    last = {}
    for line in (data_dir / "sequences.jsonl").read_text().splitlines():
        r = json.loads(line)
        last[r["uid"]] = r["items"][-1]
    ranked: dict[int, list[int]] = {}
    with top.open() as f:
        for row in csv.DictReader(f):
            ranked.setdefault(ids.user(row["user"]), []).append(ids.item(row["item"]))
    gains = [1 / math.log2(lst.index(last[u]) + 2) if last[u] in lst[:10] else 0.0 for u, lst in ranked.items()]
    return sum(gains) / len(gains)


def recommend_all(args, argv) -> int:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "SEMREC_HOME": str(work)}
    folders = {}
    if ML100K.exists():
        folders["ml100k"] = work / "data" / "ml100k_loo"
        if not (folders["ml100k"] / "trn_mat.pkl").exists():
            timed([sys.executable, str(REPO / "data" / "prepare.py"), "recbole", str(ML100K), "--name", "ml100k_loo",
                   "--split", "leave-one-out", "--dedup"], env)
    if args.beauty:
        folders["beauty"] = Path(args.beauty)
    rows = ["| dataset | users | items | `--all` seconds | peak memory | lists give results.json's NDCG@10 |",
            "|---|---|---|---|---|---|"]
    for name, folder in folders.items():
        run_dir = work / "runs" / f"{name}-sasrec"
        if not (run_dir / "results.json").exists():
            timed([sys.executable, "-m", "semrec.encoder.train_encoder", "--model", "sasrec", "--dataset", name,
                   "--data-dir", str(folder), "--set", f"train.epochs={args.epochs}", "--out", str(run_dir),
                   "--quiet"], env)
        res = json.loads((run_dir / "results.json").read_text())
        out = work / f"{name}-top10.csv"
        seconds, printed = timed([sys.executable, "-c", RECOMMEND_MEASURED, str(run_dir), "--all", "-k", "10",
                                  "--out", str(out)], env)
        peak = int(printed.rsplit("MAXRSS", 1)[1].split()[0])
        timed([sys.executable, "-m", "semrec.encoder.recommend", str(run_dir), "--all", "-k", "10", "--as-of", "test",
               "--out", str(work / f"{name}-asof-test.csv")], env)
        ndcg = _ndcg_from_lists(work / f"{name}-asof-test.csv", folder)
        same = abs(ndcg - res["test"]["ndcg@10"]) < 1e-9
        from semrec.common.io import load_pickle

        n_users, n_items = load_pickle(folder / "trn_mat.pkl").shape
        rows.append(f"| {name} | {n_users} | {n_items} | {seconds:.1f} | {peak / 1024:.0f} MiB | "
                    f"{'yes' if same else 'NO'} ({ndcg:.4f} vs {res['test']['ndcg@10']:.4f}) |")
    text = (f"`semrec-recommend RUN --all -k 10 --out FILE.csv` (a process each, {args.threads} torch thread(s)); "
            "peak memory is the process's maximum resident size.\n\n" + "\n".join(rows))
    return finish(args, argv, "bench_own_data.py", "Top-k for every user", text, [])


def main(argv: list[str] | None = None) -> int:
    p, subs = subcommand_parser(__doc__, ("quickstart", "recommend-all"), "the data and the runs go here")
    for s in subs.values():
        s.add_argument("--markdown", help="append the result to this file")
        s.add_argument("--epochs", type=int, default=20, help="training epochs")
    subs["quickstart"].add_argument("--model", default="lightgcn")
    subs["recommend-all"].add_argument("--beauty", help="a prepared S3-Rec Beauty folder (leave-one-out sequences)")
    args = p.parse_args(argv)
    return {"quickstart": quickstart, "recommend-all": recommend_all}[args.what](args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
