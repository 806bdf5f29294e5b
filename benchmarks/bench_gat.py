"""Benchmark the GAT item–attribute graph against LightGCN (issue 20).

    python benchmarks/bench_gat.py prepare  --workdir /tmp/bench/gat
    python benchmarks/bench_gat.py accuracy --workdir /tmp/bench/gat --datasets yelp_text ml100k_text --seeds 2023 2024 2025
    python benchmarks/bench_gat.py cost     --workdir /tmp/bench/gat --dataset yelp_text

``prepare``: ``<workdir>/yelp_text`` (S3-Rec's Yelp interactions; attributes: the businesses'
Yelp categories) and ``<workdir>/ml100k_text`` (MovieLens-100K; attributes: genres and the
Freebase facts of ``ml-100k.kg``), both by ``data/text_benchmark.py --no-text`` (random 3:1:1
split, seed 2023; the same interactions as the text datasets of the alignment benchmarks).

``accuracy``: ``lightgcn`` and ``gat`` (defaults of their configs; ``--set`` adds settings to the
gat runs) for each dataset and seed, each a full CLI run to early stopping in its own process on
one torch thread (``bench_graph_cf.run_one``: the same command again reads finished runs back
and resumes killed ones). Printed: test Recall@20 / NDCG@20 (mean ± std over seeds) overall and
by the attribute coverage of the held-out item (items with 0, 1–2, 3+ attributes, counted after
the model's ``min_attribute_items`` pruning): a user's relevant items are then their test items
in the bucket, ranked among all items as usual; with the gain of gat over LightGCN.

``cost``: seconds per training epoch of LightGCN and GAT side by side in one process on one
thread (mean of ``--epochs`` after one warm-up epoch), the ratio, and the attribute graph's size
(edges, attributes, parameters, bytes of its edge tensors).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import RunFailed, append_markdown, finish, fmt, run_one, subcommand_parser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATASETS = ("yelp_text", "ml100k_text")
BUCKETS = ("0", "1-2", "3+")


def prepare(args) -> int:
    for name in DATASETS:
        folder = Path(args.workdir) / name
        if (folder / "item_attributes.jsonl").exists():
            print(f"{folder}: ready")
            continue
        if not SHARED.is_dir():
            print(f"skipped: {SHARED} not found (the benchmark reads ../shared/data)", file=sys.stderr)
            return 0
        subprocess.run([sys.executable, str(REPO / "data" / "text_benchmark.py"), name, "--no-text",
                        "--out-dir", str(args.workdir)], check=True)
    return 0


BUCKET_CHILD = """
import json, sys
import numpy as np
import torch
torch.set_num_threads(1)
from semrec.encoder.train_encoder import load_run
data, trainer = load_run(sys.argv[1], device="cpu")
attrs = data.attributes.prune(int(sys.argv[2]))
coverage = attrs.coverage()
out = {}
for bucket in json.loads(sys.argv[3]):
    mask = coverage == bucket
    test_pairs = int(data.test[:, mask].nnz)
    res = trainer.evaluate("test", items=mask) if test_pairs else {}
    out[bucket] = {"items": int(mask.sum()), "test_pairs": test_pairs, "recall@20": res.get("recall@20"),
                   "ndcg@20": res.get("ndcg@20")}
print(json.dumps(out))
"""


def by_bucket(run_dir: str, min_items: int, threads: int) -> dict:
    """Test Recall/NDCG@20 of a finished run by the attribute coverage of the held-out items
    (kept in the run folder once computed)."""
    cache = Path(run_dir) / "bench_buckets.json"
    if cache.exists():
        return json.loads(cache.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", BUCKET_CHILD, run_dir, str(min_items), json.dumps(BUCKETS)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RunFailed(f"{run_dir}: per-bucket evaluation failed:\n{proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    cache.write_text(json.dumps(res))
    return res


def _min_items(overrides: list[str]) -> int:
    for o in overrides:
        if o.startswith("model.min_attribute_items="):
            return int(o.split("=", 1)[1])
    import yaml

    return int(yaml.safe_load((REPO / "configs" / "gat.yaml").read_text())["model"]["min_attribute_items"])


def accuracy(args, argv) -> int:
    work = Path(args.workdir)
    min_items = _min_items(args.overrides)
    failed, sections = [], []
    for ds in args.datasets:
        folder = work / ds
        if not (folder / "item_attributes.jsonl").exists():
            raise SystemExit(f"{folder}: not prepared; run `python benchmarks/bench_gat.py prepare --workdir {work}`")
        runs: dict[str, list[dict]] = {}
        (work / "runs" / ds).mkdir(parents=True, exist_ok=True)
        for model in ("lightgcn", "gat"):
            extra = [x for o in args.overrides for x in ("--set", o)] if model == "gat" else []
            for seed in args.seeds:
                try:
                    r = run_one(model, seed, folder, extra, work / "runs" / ds, dataset=ds)
                    r["buckets"] = by_bucket(r["run_dir"], min_items, args.threads)
                except RunFailed as e:
                    print(e, file=sys.stderr, flush=True)
                    failed.append(f"{ds} {model} {seed}")
                    continue
                runs.setdefault(model, []).append(r)
                print(f"{ds} {model} seed {seed}: Recall@20 {r['test']['recall@20']:.4f} NDCG@20 "
                      f"{r['test']['ndcg@20']:.4f}, {r['epochs']} epochs, {r['train_epoch_s']:.1f} s/epoch", flush=True)
        if args.json:
            Path(args.json).with_suffix(f".{ds}.json").write_text(json.dumps(runs, indent=2))
        if "lightgcn" not in runs or "gat" not in runs:
            continue
        buckets = runs["gat"][0]["buckets"]
        head = ("| model | Recall@20 | NDCG@20 | " + " | ".join(
            f"Recall@20, {b} attr. ({buckets[b]['items']} items, {buckets[b]['test_pairs']} test pairs)" for b in BUCKETS)
            + " | s/epoch | epochs | peak RSS MB |")
        rows = [head, "|" + "---|" * (len(BUCKETS) + 6)]
        mean = {m: {} for m in runs}
        for model, rs in runs.items():
            cells = []
            for key in ("recall@20", "ndcg@20"):
                vals = [r["test"][key] for r in rs]
                mean[model][key] = statistics.fmean(vals)
                cells.append(fmt(vals))
            for b in BUCKETS:
                vals = [r["buckets"][b]["recall@20"] for r in rs if r["buckets"][b]["recall@20"] is not None]
                mean[model][b] = statistics.fmean(vals) if vals else None
                cells.append(fmt(vals) if vals else "-")
            rows.append(f"| {model} | " + " | ".join(cells) + f" | {statistics.median(r['train_epoch_s'] for r in rs):.1f} "
                        f"| {'/'.join(str(r['epochs']) for r in rs)} | {max(r['peak_rss_mb'] for r in rs):.0f} |")
        gains = [f"{100 * (mean['gat'][k] / mean['lightgcn'][k] - 1):+.1f}%"
                 if mean["gat"].get(k) and mean["lightgcn"].get(k) else "-" for k in ("recall@20", "ndcg@20", *BUCKETS)]
        rows.append("| gain of gat | " + " | ".join(gains) + " | | | |")
        sections.append(f"**{ds}** ({min_items=} for the buckets; seeds {args.seeds}; test metrics at the best "
                        "validation epoch, mean ± std)\n\n" + "\n".join(rows))
    return finish(args, argv, "bench_gat.py", "GAT item–attribute graph against LightGCN", "\n\n".join(sections),
                  failed, any_runs=bool(sections))


COST_CHILD = """
import json, sys, time, torch
from semrec.encoder.config import resolve_config
from semrec.encoder.dataset import load_dataset
from semrec.encoder.registry import build_model, get_model_class
from semrec.encoder.sampling import make_sampler
folder, epochs = sys.argv[1], int(sys.argv[2])
data = load_dataset(folder)
out = {"epoch_s": {}}
models = {}
for name in ("lightgcn", "gat"):
    cfg = resolve_config(name, data.name, get_model_class(name), [])
    torch.manual_seed(0)
    model = build_model(name, data, cfg.model, cfg.align)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    sampler = make_sampler(model, data, cfg.train.batch_size, torch.Generator().manual_seed(0))
    models[name] = (model, opt, sampler)
for rep in range(epochs + 1):  # alternate the models epoch by epoch: the same machine state for both
    for name, (model, opt, sampler) in models.items():
        model.train()
        t0 = time.process_time()
        model.start_epoch(rep)
        for batch in sampler:
            loss, _ = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if rep:  # the first epoch warms up
            out["epoch_s"].setdefault(name, []).append(time.process_time() - t0)
gat = models["gat"][0]
graph = gat.attr_view
out["graph"] = {"attributes": gat.num_attributes, "edges": int(graph.edges.shape[1]),
                "edge_bytes": int(graph.edges.numel() * graph.edges.element_size()
                                  + graph.edge_relation.numel() * graph.edge_relation.element_size()),
                "params": sum(p.numel() for p in graph.parameters()),
                "extra_params_vs_lightgcn": sum(p.numel() for p in gat.parameters())
                - sum(p.numel() for p in models["lightgcn"][0].parameters())}
print(json.dumps(out))
"""


def cost(args, argv) -> int:
    folder = Path(args.workdir) / args.dataset
    if not (folder / "item_attributes.jsonl").exists():
        raise SystemExit(f"{folder}: not prepared; run `python benchmarks/bench_gat.py prepare`")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([sys.executable, "-c", COST_CHILD, str(folder), str(args.epochs)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    s = {k: statistics.fmean(v) for k, v in res["epoch_s"].items()}
    g = res["graph"]
    text = (f"{args.dataset}: CPU seconds per training epoch, mean of {args.epochs} after a warm-up, the two models "
            f"alternating epoch by epoch in one process on {args.threads} thread(s): LightGCN {s['lightgcn']:.1f} s, "
            f"GAT {s['gat']:.1f} s, ratio **{s['gat'] / s['lightgcn']:.2f}x**. Attribute graph: {g['attributes']} "
            f"attributes, {g['edges']} item–attribute edges ({g['edge_bytes'] / 2**20:.1f} MiB of edge tensors), "
            f"{g['params']} parameters in the attribute view ({g['extra_params_vs_lightgcn']} more than LightGCN).")
    print(text)
    if args.markdown:
        append_markdown(args.markdown, "bench_gat.py", argv, "Cost of the GAT item–attribute graph", text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p, subs = subcommand_parser(__doc__, ("prepare", "accuracy", "cost"),
                                "datasets and run folders go here (kept: runs resume)")
    for name, s in subs.items():
        if name != "prepare":
            s.add_argument("--markdown", help="append the table to this file")
        if name == "accuracy":
            s.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
            s.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024, 2025])
            s.add_argument("--set", dest="overrides", action="append", default=[], help="passed to the gat runs")
            s.add_argument("--json", help="write the per-run numbers to FILE.<dataset>.json")
        if name == "cost":
            s.add_argument("--dataset", choices=DATASETS, default="yelp_text")
            s.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    return {"prepare": lambda a, _: prepare(a), "accuracy": accuracy, "cost": cost}[args.what](args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
