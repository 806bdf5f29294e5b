"""Benchmark RERec (issue 36): the cost of choosing review sentences, and what the sentences are worth.

    python benchmarks/bench_rerec.py mmr --workdir /tmp/bench/rerec [--reviews 100000]
    python benchmarks/bench_rerec.py accuracy --workdir /tmp/bench/rerec --seeds 2023 2024 2025 2026 2027

``mmr``: a synthetic review file of ``--reviews`` reviews (items by a power law, as real catalogues:
a few items hold thousands of reviews; each review three to eight sentences drawn from a pool,
so repeats occur as in real reviews), timed through the pipeline's own steps on one thread:
sentence splitting and de-duplication (``item_sentences``), then MMR for every item (``choose``,
K 5, recency weights) over random unit vectors standing in for the sentence embeddings (their
values do not change the work; embedding itself is the encoder's cost, printed by the pipeline).
Target: under a minute for 100k reviews.

``accuracy``: the Amazon 2018 review files with metadata in ``../shared/data`` (Magazine
Subscriptions, Gift Cards), each made twice by ``generation/rerec.py``: item text = metadata plus
five MMR sentences (RERec), and metadata only (LLM-ESR's text); then LLM-ESR trained on each, one
full CLI run per seed (leave-one-out, full ranking, history excluded). Printed: test NDCG@10 and
HR@10, mean ± std over seeds, and RERec's change against metadata only.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import RunFailed, finish, fmt, run_all, run_one, subcommand_parser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATASETS = {"magazine": SHARED / "amazon2018_magazine", "gift_cards": SHARED / "amazon2018_gift_cards"}
TEXTS = {"rerec": ["--sentences", "5"], "metadata": ["--sentences", "0"]}


def mmr(args, argv) -> int:
    import numpy as np

    from semrec.generation.rerec import ReviewSelection, choose, item_sentences

    rng = np.random.default_rng(0)
    words = ["fast", "shipping", "quality", "price", "colour", "size", "smell", "texture", "battery", "gift",
             "packaging", "value", "design", "comfort", "daily", "skin", "hair", "magazine", "issue", "card"]
    pool = [" ".join(rng.choice(words, size=int(rng.integers(4, 12)))).capitalize() + "."
            for _ in range(args.pool)]
    n_items = max(1, args.reviews // 20)
    share = 1.0 / np.arange(1, n_items + 1) ** 0.9  # power-law item popularity (rank ** -0.9)
    item_of = rng.choice(n_items, size=args.reviews, p=share / share.sum())
    reviews: list[list[tuple[str, float]]] = [[] for _ in range(n_items)]
    for r in range(args.reviews):
        text = " ".join(pool[j] for j in rng.integers(0, len(pool), size=int(rng.integers(3, 9))))
        reviews[item_of[r]].append((text, float(rng.integers(1_300_000_000, 1_600_000_000))))
    t0 = time.perf_counter()
    sentences, rows, times = item_sentences(reviews, min_chars=12)
    t_split = time.perf_counter() - t0
    emb = rng.standard_normal((len(sentences), 384)).astype(np.float32)
    t1 = time.perf_counter()
    chosen = choose(emb, rows, times, ReviewSelection(sentences=5), progress_every=30)
    t_mmr = time.perf_counter() - t1
    total = t_split + t_mmr
    largest = max(len(r) for r in rows)
    text = (f"{args.reviews} reviews over {n_items} items (largest {largest} sentence occurrences), "
            f"{len(sentences)} distinct sentences, one thread: splitting {t_split:.1f} s, MMR for every item "
            f"{t_mmr:.1f} s, total {total:.1f} s (target < 60 s: ratio {60 / total:.1f}x); "
            f"{sum(map(len, chosen))} sentences chosen")
    return finish(args, argv, "bench_rerec.py", "RERec: sentence selection cost", text, [])


def prepare_text(workdir: Path, dataset: str, text: str, threads: int) -> Path:
    """The dataset folder of ``dataset`` with ``text`` (rerec or metadata), made once."""
    out = workdir / "data" / f"{dataset}_{text}"
    if not (out / "rerec.json").exists():
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, str(REPO / "generation" / "rerec.py"), str(DATASETS[dataset]), "--name",
                        out.name, "--out-dir", str(out.parent), *TEXTS[text]], check=True, env=env)
    return out


def accuracy(args, argv) -> int:
    workdir = Path(args.workdir)
    missing = [str(p) for p in DATASETS.values() if not p.exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not found (the benchmark reads ../shared/data)", file=sys.stderr)
        return 0
    folders = {(d, t): prepare_text(workdir, d, t, args.threads) for d in args.datasets for t in TEXTS}
    for d in args.datasets:
        for t in TEXTS:
            (workdir / "runs" / f"{d}_{t}").mkdir(parents=True, exist_ok=True)
    tasks = [((d, t, seed), functools.partial(run_one, "llmesr", seed, folders[d, t], args.overrides,
                                               workdir / "runs" / f"{d}_{t}", dataset=d))
             for d in args.datasets for t in TEXTS for seed in args.seeds]
    runs: dict[tuple[str, str], list[dict]] = {}
    failed = []
    for (d, t, seed), r in run_all(tasks, args.jobs):
        if isinstance(r, RunFailed):
            print(r, file=sys.stderr, flush=True)
            failed.append(f"{d}/{t}/{seed}")
            continue
        runs.setdefault((d, t), []).append(r)
        print(f"{d} {t} seed {seed}: NDCG@10 {r['test']['ndcg@10']:.4f}, {r['epochs']} epochs", file=sys.stderr,
              flush=True)
    rows = ["| dataset | item text | test NDCG@10 | test HR@10 | change of NDCG@10 | epochs |",
            "|---|---|---|---|---|---|"]
    for d in args.datasets:
        for t in TEXTS:
            rs = runs.get((d, t))
            if not rs:
                continue
            nd = [r["test"]["ndcg@10"] for r in rs]
            change = "-"
            if t == "rerec" and runs.get((d, "metadata")):
                base = [r["test"]["ndcg@10"] for r in runs[(d, "metadata")]]
                change = f"{100 * (sum(nd) / len(nd) / (sum(base) / len(base)) - 1):+.1f}%"
            rows.append(f"| {d} | {t} | {fmt(nd)} | {fmt([r['test']['hit@10'] for r in rs])} | {change} "
                        f"| {'/'.join(str(r['epochs']) for r in rs)} |")
    text = (f"LLM-ESR on each item text; seeds {args.seeds}; test metrics at the best validation epoch, "
            "mean ± std.\n\n" + "\n".join(rows))
    return finish(args, argv, "bench_rerec.py", "RERec against metadata-only LLM-ESR", text, failed,
                  any_runs=bool(runs))


def main(argv: list[str] | None = None) -> int:
    p, subs = subcommand_parser(__doc__, ("mmr", "accuracy"), "the datasets and the run folders go here")
    for s in subs.values():
        s.add_argument("--markdown", help="append the result to this file")
    subs["mmr"].add_argument("--reviews", type=int, default=100_000)
    subs["mmr"].add_argument("--pool", type=int, default=200_000, help="distinct sentences to draw from")
    a = subs["accuracy"]
    a.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    a.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024, 2025, 2026, 2027])
    a.add_argument("--jobs", type=int, default=1, help="runs at a time")
    a.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every run (--set k=v)")
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    a_overrides = getattr(args, "overrides", [])
    args.overrides = [x for s in a_overrides for x in ("--set", s)]
    return {"mmr": mmr, "accuracy": accuracy}[args.what](args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
