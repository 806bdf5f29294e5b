"""Does alignment with semantic embeddings help? Base vs ``_plus`` vs ``_gene`` vs shuffled control.

    python data/text_benchmark.py ml100k_text          # once: the dataset with MiniLM embeddings
    semrec-align-check --dataset ml100k_text --backbones lightgcn --seeds 2023 2024 2025 --workdir runs/align
    python benchmarks/bench_align.py --data-dir data/ml100k_text --markdown docs/benchmarks.md   # the same

For every backbone (default LightGCN, GCCF, SGL) and seed, five full CLI runs to early stopping,
each in its own process: the base model, ``<backbone>_plus`` (contrastive alignment),
``<backbone>_gene`` (generative alignment), and both aligned models with the semantic tables
row-shuffled (``--set align.shuffle=true``: same vectors, wrong owners), the control that shows
whether a gain comes from the semantics. Printed: test Recall@20 / NDCG@20 (mean ± std over
seeds), the relative change against the base model, validation Recall@20, and seconds per
epoch, next to RLMRec's reported gains (Yelp, paper Table 1); under the table, each aligned
model's test change against its own shuffled control, and each change tested over users
(``semrec-compare``'s paired tests on the runs' per-user Recall@20).

``--plus-set KEY=VALUE`` / ``--gene-set KEY=VALUE`` go to the ``_plus`` / ``_gene`` runs only
(e.g. the faster variants ``align.sem_dim=64``, ``align.user_negatives=batch``); ``--set`` goes
to every run; ``--variants`` picks which of the five runs to make. With ``--json FILE`` the
runs are saved after each one, so runs split over processes (``--seeds 2023`` in one,
``--seeds 2024`` in another) are pooled into one table with ``--from-json a.json b.json``; with
``--workdir DIR`` as well, the same command run again after a kill resumes where it stopped.
Before training, and alone with ``--references-only``, it prints how the teacher ranks on its
own (each user's items by the cosine of their semantic embeddings) beside popularity.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

from semrec.encoder.experiments import (RunFailed, add_run_arguments, fmt, load_runs, report, run_all, run_dirs,
                                        run_one, save_runs, significance)

# RLMRec paper (WWW 2024), Table 1, Yelp: relative Recall@20 gain of Con / Gen over LightGCN
# (as quoted in the alignment issue; the other backbones' gains are not quoted here)
PAPER_GAIN = {"lightgcn": (0.063, 0.045)}
VARIANTS = [("base", "", []), ("plus", "_plus", []), ("gene", "_gene", []),
            ("plus shuffled", "_plus", ["--set", "align.shuffle=true"]),
            ("gene shuffled", "_gene", ["--set", "align.shuffle=true"])]
METRICS = ("recall@20", "ndcg@20")
#: what each run is tested against, over users: the aligned models against the base, each control against its model
AGAINST = {"plus": "base", "gene": "base", "plus shuffled": "plus", "gene shuffled": "gene"}


def main(argv: list[str] | None = None, prog: str = "semrec-align-check") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="a dataset with usr_emb_np.pkl / itm_emb_np.pkl")
    p.add_argument("--dataset", help="a dataset name under $SEMREC_HOME/data or ./data (instead of --data-dir)")
    p.add_argument("--backbones", nargs="+", default=["lightgcn", "gccf", "sgl"])
    labels = [label for label, _, _ in VARIANTS]
    p.add_argument("--variants", nargs="+", default=labels, choices=labels, metavar="VARIANT",
                   help=f"which runs to make (default all: {', '.join(repr(x) for x in labels)})")
    for kind in ("plus", "gene"):
        p.add_argument(f"--{kind}-set", action="append", default=[], metavar="KEY=VALUE",
                       help=f"passed to the _{kind} runs (and their shuffled controls) only")
    p.add_argument("--from-json", nargs="+", metavar="FILE",
                   help="no runs: rebuild the table from the --json files of earlier runs, pooling seeds")
    p.add_argument("--references-only", action="store_true",
                   help="only rank by the semantic tables alone and by popularity (no training)")
    add_run_arguments(p)
    args = p.parse_args(argv)
    if args.dataset and not args.data_dir:
        from semrec.encoder.train_encoder import dataset_path

        args.data_dir = str(dataset_path(args.dataset, None))  # the demo is made on first use
    if args.references_only:
        if not args.data_dir:
            p.error("--references-only needs --data-dir")
        print(references(Path(args.data_dir)))
        return 0
    note = "mean ± std of test metrics at the best validation epoch; Δ is relative to the base model's mean."
    if args.from_json:
        # rows in the order of VARIANTS, whatever the files'
        runs = {b: {k: vs[k] for k in labels if k in vs} for b, vs in load_runs(args.from_json).items()}
        args.seeds = sorted({r["seed"] for vs in runs.values() for rs in vs.values() for r in rs})
        title = f"Alignment, pooled from {len(args.from_json)} saved run files"
    elif not args.data_dir:
        p.error("--dataset or --data-dir is required unless --from-json is given")
    else:
        data = Path(args.data_dir)
        if not (data / "usr_emb_np.pkl").exists():
            print(f"skipped: {data} has no semantic embeddings (build it with data/text_benchmark.py)", file=sys.stderr)
            return 0
        refs = references(data)
        print(refs, file=sys.stderr, flush=True)
        runs = run_variants(args, data)
        title = f"Alignment on {data.name}"
        note += f" Without training: {refs}."
    rows = table(runs)
    for backbone, variants in runs.items():  # is each change real? paired over users
        tested = significance(variants, {k: v for k, v in AGAINST.items() if k in variants}, "recall@20")
        if tested:
            rows += ["", f"{backbone}: " + tested]
    report(args, argv, runs, rows, prog, title, note)
    return 0


def table(runs: dict[str, dict[str, list[dict]]]) -> list[str]:
    """Markdown rows, one per backbone and variant: test Recall/NDCG@20 (mean ± std over seeds),
    their change against the base model's mean, validation Recall@20 (what settings are chosen
    on), RLMRec's gain, s/epoch and epochs; then, after a blank line, each aligned model's test
    change against its own shuffled control ("real against shuffled"), the part of a gain that
    the semantics carry."""
    rows = ["| backbone | variant | R@20 | N@20 | ΔR@20 | ΔN@20 | valid R@20 | RLMRec ΔR@20 (Yelp) | s/epoch "
            "| epochs |", "|" + "---|" * 10]
    real_vs_shuffled = []
    for backbone, variants in runs.items():
        mean = {k: {m: statistics.fmean(r["test"][m] for r in rs) for m in METRICS} for k, rs in variants.items()}

        def change(label: str, against: str, m: str) -> str:
            return f"{100 * (mean[label][m] / mean[against][m] - 1):+.1f}%"

        paper = PAPER_GAIN.get(backbone)
        for label, rs in variants.items():
            gains = [change(label, "base", m) if label != "base" and "base" in mean else "" for m in METRICS]
            ref = f"+{100 * paper[0]:.1f}%" if paper and label == "plus" else \
                f"+{100 * paper[1]:.1f}%" if paper and label == "gene" else ""
            rows.append(f"| {backbone} | {label} | {fmt([r['test']['recall@20'] for r in rs])} "
                        f"| {fmt([r['test']['ndcg@20'] for r in rs])} | {gains[0]} | {gains[1]} "
                        f"| {fmt([r['valid']['recall@20'] for r in rs])} "
                        f"| {ref} | {statistics.median(r['train_epoch_s'] for r in rs):.2f} "
                        f"| {'/'.join(str(r['epochs']) for r in rs)} |")
        real_vs_shuffled += [f"`{backbone}_{kind}` " + " / ".join(change(kind, f"{kind} shuffled", m) for m in METRICS)
                             for kind in ("plus", "gene") if kind in mean and f"{kind} shuffled" in mean]
    if real_vs_shuffled:
        rows += ["", "Real against shuffled tables (test R@20 / N@20): " + "; ".join(real_vs_shuffled) + "."]
    return rows


def references(data_dir: Path) -> str:
    """How well the teacher ranks on its own: test Recall/NDCG@20 of scoring each user's items
    by the cosine of their semantic embeddings, and of ranking by training popularity."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.evaluator import Evaluator

    data = load_dataset(data_dir)
    users = F.normalize(torch.as_tensor(data.user_emb, dtype=torch.float32), dim=1)
    items_t = F.normalize(torch.as_tensor(data.item_emb, dtype=torch.float32), dim=1).t().contiguous()
    popularity = torch.as_tensor(np.asarray(data.train.sum(0)).ravel(), dtype=torch.float32)
    ev = Evaluator(data, ks=(20,), metrics=("recall", "ndcg"))
    lines = []
    for name, scorer in (("semantic tables alone (cosine)", lambda b: users[b.users] @ items_t),
                         ("popularity", lambda b: popularity.expand(len(b.users), -1).clone())):
        m = ev.evaluate(scorer, "test")
        lines.append(f"{data_dir.name}, {name}: test recall@20 {m['recall@20']:.4f}, ndcg@20 {m['ndcg@20']:.4f}")
    return "; ".join(lines)


def run_variants(args, data: Path) -> dict[str, dict[str, list[dict]]]:
    """Every backbone × variant × seed as a full CLI run (``--jobs`` at a time, on ``--device``);
    a failed run is reported and skipped."""
    extra = [x for o in args.overrides for x in ("--set", o)]
    per_kind = {"": [], "_plus": args.plus_set, "_gene": args.gene_set}
    runs: dict[str, dict[str, list[dict]]] = {b: {} for b in args.backbones}
    with run_dirs(args.workdir) as root:
        tasks = []
        for backbone in args.backbones:
            for label, suffix, more in VARIANTS:
                if label not in args.variants:
                    continue
                work = root / label.replace(" ", "_")
                work.mkdir(exist_ok=True)
                sets = extra + [x for o in per_kind[suffix] for x in ("--set", o)] + more
                tasks += [((backbone, label, s), functools.partial(run_one, backbone + suffix, s, data, sets, work,
                                                                    device=args.device)) for s in args.seeds]
        for (backbone, label, s), r in run_all(tasks, args.jobs):
            if isinstance(r, RunFailed):
                print(r, file=sys.stderr, flush=True)
                continue
            runs[backbone].setdefault(label, []).append(r)
            runs[backbone][label].sort(key=lambda x: x["seed"])
            save_runs(args, runs)
            print(f"{backbone} {label} seed {s}: recall@20 {r['test']['recall@20']:.4f} "
                  f"ndcg@20 {r['test']['ndcg@20']:.4f}, {r['epochs']} epochs, "
                  f"{r['train_epoch_s']:.2f} s/epoch", file=sys.stderr, flush=True)
    order = [label for label, _, _ in VARIANTS]  # the table's order, whatever order the runs ended in
    return {b: dict(sorted(v.items(), key=lambda kv: order.index(kv[0]))) for b, v in runs.items()}


if __name__ == "__main__":
    raise SystemExit(main())
