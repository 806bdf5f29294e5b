"""Benchmark the LLM-enhanced sequential models on S3-Rec Beauty with item text (issue 19).

    python benchmarks/bench_llm_seq.py prepare --workdir /tmp/bench/llm
    python benchmarks/bench_llm_seq.py accuracy --workdir /tmp/bench/llm --variants sasrec llmesr --seeds 2023 2024 2025
    python benchmarks/bench_llm_seq.py accuracy --workdir /tmp/bench/llm --protocol sampled
    python benchmarks/bench_llm_seq.py cost --workdir /tmp/bench/llm

Every subcommand takes ``--dataset``: ``beauty`` (default) or ``ml100k``, MovieLens-100K with its
ratings beside the sequences, so SEAR reads its rating stream (``sear_no_ratings`` turns it off); and
``--encoder``: MiniLM (default) or ``all-mpnet-base-v2``, SEAR's sentence encoder. Each pair has its
own dataset folder and run folders beside Beauty-with-MiniLM's.

``prepare``: the dataset folder ``<workdir>/data/beauty_text`` from the shared files, as
docs/data.md shows it: ``data/prepare.py s3rec`` with the titles and category paths, profiles
from the metadata (``--source metadata``: no LLM; users from their training items only) and
embeddings by the local sentence encoder (all-MiniLM-L6-v2, 384-d). Skipped when present.

``accuracy``: each variant (a model and its settings, :data:`VARIANTS`) and seed is a full CLI
run to early stopping (``bench_graph_cf.run_one``: one process, one torch thread; the same
command again reads finished runs back and resumes killed ones; ``--jobs N`` runs N at a time,
``--device cuda`` trains them on a GPU, which several runs share). Printed: test NDCG@10 and
HR@10 overall and for tail/head items and users (mean ± std over seeds) and each variant's
change against the variant it is compared with (``against``). ``--protocol``: ``full`` (full
ranking, history excluded: the S3-Rec protocol), ``sampled`` (the target and 100 unseen items,
fixed per seed: LLM-ESR's protocol) or ``sracl`` (full ranking without exclusion, ``max_len`` 20:
the protocol of the SRA-CL paper's table, whose SASRec 0.0336, LLM-ESR 0.0435 and RLMRec 0.0439
NDCG@10 are printed beside).

``cost``: CPU seconds per training epoch of each variant against its comparison, measured side by
side in one process on one thread, the variants taking turns epoch by epoch (the mean of
``--epochs`` epochs after one warm-up epoch), and the seconds to retrieve every user's similar
users (LLM-ESR's neighbours).
"""
from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph_cf import (RunFailed, add_device_arguments, append_markdown, finish, fmt, run_all,  # noqa: E402
                            run_one, subcommand_parser)
from semrec.encoder.experiments import significance  # noqa: E402
from semrec.encoder.run_files import evaluated_per_user  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
#: name -> (model, settings, the variant it is compared with)
VARIANTS: dict[str, tuple[str, list[str], str | None]] = {
    "sasrec": ("sasrec", [], None),
    "llmesr": ("llmesr", [], "sasrec"),
    "llmesr_shuffled": ("llmesr", ["model.text_shuffle=true"], "llmesr"),
    # the reference code's loss for both (BCE, one sampled negative a position): the paper's comparison
    "sasrec_bce": ("sasrec", ["model.loss=bce", "model.negatives=1"], None),
    "llmesr_bce": ("llmesr", ["model.loss=bce", "model.negatives=1"], "sasrec_bce"),
    "llmesr_pro": ("llmesr", ["model.user_heads=true"], "llmesr"),
    # the heads trained on the fused state (the form before 2026-12-01) instead of each on its own
    "llmesr_pro_fused": ("llmesr", ["model.user_heads=true", "model.head_loss=fused"], "llmesr_pro"),
    "llmesr_no_distill": ("llmesr", ["model.distill_weight=0"], "llmesr"),
    "llmesr_no_cross": ("llmesr", ["model.cross_attention=none"], "llmesr"),
    "llmesr_step_teacher": ("llmesr", ["model.teacher=step"], "llmesr"),
    "llmesr_running_teacher": ("llmesr", ["model.teacher=running"], "llmesr"),
    "gsasrec": ("gsasrec", [], None),
    "gsasrec_text": ("gsasrec", ["model.item_text=frozen"], "gsasrec"),
    "gsasrec_text_shuffled": ("gsasrec", ["model.item_text=frozen", "model.text_shuffle=true"], "gsasrec_text"),
    # text4rec's other start: the ID table initialised from the text embeddings' PCA, then trained
    "gsasrec_pca": ("gsasrec", ["model.item_text=pca"], "gsasrec"),
    "gsasrec_pca_shuffled": ("gsasrec", ["model.item_text=pca", "model.text_shuffle=true"], "gsasrec_pca"),
    "sasrec_pca": ("sasrec", ["model.item_text=pca"], "sasrec"),
    "sasrec_pca_shuffled": ("sasrec", ["model.item_text=pca", "model.text_shuffle=true"], "sasrec_pca"),
    "sasrec_plus": ("sasrec_plus", [], "sasrec"),
    "sasrec_plus_shuffled": ("sasrec_plus", ["align.shuffle=true"], "sasrec_plus"),
    "sasrec_gene": ("sasrec_gene", [], "sasrec"),
    "sasrec_gene_shuffled": ("sasrec_gene", ["align.shuffle=true"], "sasrec_gene"),
    # issue 20: the semantic view's items fused with their attribute view (GAT over Beauty's 637 attributes)
    "llmesr_graph": ("llmesr", ["model.item_graph=gate"], "llmesr"),
    # issue 36: SEAR's semantic and collaborative streams (S3-Rec Beauty has no ratings)
    "sear": ("sear", [], "sasrec"),
    "sear_next_item": ("sear", ["model.loss=ce"], "sear"),
    "sear_no_ratings": ("sear", ["model.ratings=false"], "sear"),  # where the data has ratings (MovieLens)
    # for SEAR's cost: SASRec as wide as SEAR's two-stream user state and output rows (2 x 64)
    "sasrec_d128": ("sasrec", ["model.dim=128", "model.ffn_dim=512"], None),
}
PROTOCOLS = {"full": [], "sampled": ["eval.protocol=sampled"],
             "sracl": ["eval.exclude=none", "model.max_len=20"]}
SRACL_PUBLISHED = {"sasrec": 0.0336, "llmesr": 0.0435, "sasrec_plus": 0.0439}  # RLMRec on SASRec
GROUPS = ["", "tail_items/", "head_items/", "tail_users/", "head_users/"]


#: the benchmark's datasets: where ``prepare`` reads them, and the config section their runs use
DATASETS = ("beauty", "ml100k")
ENCODERS = {"all-MiniLM-L6-v2": "", "all-mpnet-base-v2": "_mpnet"}  # the folder's suffix


def dataset_folder(workdir: Path, dataset: str = "beauty", encoder: str = "all-MiniLM-L6-v2") -> Path:
    return workdir / "data" / f"{dataset}_text{ENCODERS[encoder]}"


def runs_folder(args) -> Path:
    """Beauty with MiniLM (the first benchmark) in ``<workdir>/<protocol>``, the others beside it."""
    tag = "" if (args.dataset, args.encoder) == ("beauty", "all-MiniLM-L6-v2") else \
        f"{args.dataset}{ENCODERS[args.encoder]}-"
    return Path(args.workdir) / f"{tag}{args.protocol}"


def prepare(args) -> int:
    folder = dataset_folder(Path(args.workdir), args.dataset, args.encoder)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.dataset == "beauty":
        raw, text = SHARED / "s3rec" / "Beauty.txt", SHARED / "s3rec_text" / "Beauty_item_text.json"
        # the item attributes: S3-Rec's 637 (brands and categories, as ids); the titles and category
        # paths go to the text. Deterministic, so rerunning it over a ready folder changes nothing else.
        convert = [str(REPO / "data" / "prepare.py"), "s3rec", str(raw), "--name", folder.name, "--out-dir",
                   str(folder.parent), "--split", "leave-one-out", "--item-text", str(text), "--item-text-offset",
                   "0", "--attributes", "attributes", "--force"]
    else:  # MovieLens-100K with its ratings beside the sequences (SEAR's rating stream), titles and genres
        raw = text = SHARED / "ml-100k"
        convert = [str(REPO / "data" / "prepare.py"), "recbole", str(raw), "--name", folder.name, "--out-dir",
                   str(folder.parent), "--split", "leave-one-out", "--dedup", "--force"]
    if not (raw.exists() and text.exists()):
        print(f"skipped: {raw} or {text} not found (the benchmark reads ../shared/data)", file=sys.stderr)
        return 0
    steps = [convert,
             [str(REPO / "generation" / "item" / "generate_profile.py"), "--data-dir", str(folder), "--source", "metadata"],
             [str(REPO / "generation" / "user" / "generate_profile.py"), "--data-dir", str(folder), "--source", "metadata"],
             [str(REPO / "generation" / "emb" / "generate_emb.py"), "--data-dir", str(folder), "--encoder",
              args.encoder]]
    if (folder / "usr_emb_np.pkl").exists() and (folder / "itm_emb_np.pkl").exists():
        steps = [] if args.dataset != "beauty" or (folder / "item_attributes.jsonl").exists() else [convert]
        print(f"{folder}: ready" if not steps else f"{folder}: adding the item attributes")
    for step in steps:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *step], check=True, env=env)
        print(f"{Path(step[0]).name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


def _metric(r: dict, group: str, name: str, source: str = "test") -> float | None:
    split = r[source]["test"] if source != "test" else r["test"]
    return split.get(f"{group}{name}")


def rescore(run_dir: str, settings: list[str], threads: int, device: str = "cpu") -> dict:
    """A finished run's best weights scored under other evaluation settings (``--evaluate``:
    no training; kept in the run folder as ``bench_<settings>.json`` for the next read)."""
    cache = Path(run_dir) / ("bench_" + "_".join(x.replace("=", "-") for x in settings) + ".json")
    if cache.exists():
        return json.loads(cache.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(REPO / "encoder" / "train_encoder.py"), "--evaluate", run_dir, "--quiet",
           "--device", device, *(x for s in settings for x in ("--set", s))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RunFailed(f"{run_dir}: evaluation with {settings} failed:\n{proc.stderr[-2000:]}")
    res = json.loads(Path(proc.stdout.strip().rsplit(" -> ", 1)[1]).read_text())  # the file it names
    cache.write_text(json.dumps(res))
    return res


def table(runs: dict[str, list[dict]], source: str, protocol: str) -> str:
    """NDCG@10 overall and by group (mean ± std over seeds; in brackets the change against the
    variant each is compared with) and HR@10, from each run's ``source`` metrics (runs without
    them are left out), with the device each variant trained on."""
    runs = {name: [r for r in rs if r.get(source)] for name, rs in runs.items()}
    runs = {name: rs for name, rs in runs.items() if rs}
    head = ("| variant | against | " + " | ".join(f"{g or 'all '}NDCG@10" for g in GROUPS)
            + " | HR@10 | device | s/epoch | epochs |")
    rows = [head, "|" + "---|" * (len(GROUPS) + 6)]

    def mean(rs, g):
        return statistics.fmean(x for x in (_metric(r, g, "ndcg@10", source) for r in rs) if x is not None)

    for name, rs in runs.items():
        base = VARIANTS[name][2]
        cells = []
        for g in GROUPS:
            if _metric(rs[0], g, "ndcg@10", source) is None:
                cells.append("-")
                continue
            cell = fmt([_metric(r, g, "ndcg@10", source) for r in rs])
            if base in runs and mean(runs[base], g) > 0:  # a tiny test set can leave a group at zero
                cell += f" ({100 * (mean(rs, g) / mean(runs[base], g) - 1):+.1f}%)"
            cells.append(cell)
        pub = f" (SRA-CL's table: {SRACL_PUBLISHED[name]:.4f})" if protocol == "sracl" and name in SRACL_PUBLISHED else ""
        rows.append(f"| {name}{pub} | {base or '-'} | " + " | ".join(cells) +
                    f" | {fmt([_metric(r, '', 'hit@10', source) for r in rs])} "
                    f"| {'/'.join(sorted({r.get('device', 'cpu') for r in rs}))} "
                    f"| {statistics.median(r['train_epoch_s'] for r in rs):.1f} "
                    f"| {'/'.join(str(r['epochs']) for r in rs)} |")
    return "\n".join(rows)


def _prepared(args) -> Path:
    folder = dataset_folder(Path(args.workdir), args.dataset, args.encoder)
    if not (folder / "itm_emb_np.pkl").exists():
        raise SystemExit(f"{folder}: not prepared; run `python benchmarks/bench_llm_seq.py prepare --workdir "
                         f"{args.workdir} --dataset {args.dataset} --encoder {args.encoder}`")
    return folder


def _known(variants: list[str]) -> list[str]:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    return variants


def accuracy(args, argv) -> int:
    folder = _prepared(args)
    _known(args.variants)

    def one(name: str, seed: int) -> dict:
        model, settings, _ = VARIANTS[name]
        extra = [x for s in settings + PROTOCOLS[args.protocol] + args.overrides for x in ("--set", s)]
        where = runs_folder(args) / name
        where.mkdir(parents=True, exist_ok=True)
        r = run_one(model, seed, folder, extra, where, dataset=args.dataset, device=args.device)
        if args.protocol == "full":  # the same checkpoints under the sampled protocol too
            try:
                r["sampled"] = rescore(r["run_dir"], PROTOCOLS["sampled"], args.threads, args.device)
            except RunFailed as e:  # e.g. the weights were not kept: the full-ranking result still counts
                print(e, file=sys.stderr, flush=True)
                r["sampled"] = None
                unscored.append(f"{name}/{seed}")
        return r

    runs: dict[str, list[dict]] = {}
    failed, unscored = [], []
    tasks = [((name, seed), functools.partial(one, name, seed)) for name in args.variants for seed in args.seeds]
    for (name, seed), r in run_all(tasks, args.jobs):
        if isinstance(r, RunFailed):
            print(r, file=sys.stderr, flush=True)
            failed.append(f"{name}/{seed}")
            continue
        runs.setdefault(name, []).append(r)
        runs[name].sort(key=lambda x: x["seed"])
        print(f"{name} seed {seed}: NDCG@10 {r['test']['ndcg@10']:.4f} HR@10 {r['test']['hit@10']:.4f}, "
              f"{r['epochs']} epochs, {r['train_epoch_s']:.1f} s/epoch", file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(runs, indent=2))
    runs = {name: runs[name] for name in args.variants if name in runs}  # the order asked for
    text = (f"Protocol `{args.protocol}`; seeds {args.seeds}; test metrics at the best validation epoch, mean ± std; "
            "in brackets the change of the mean against the `against` variant.\n\n" + table(runs, "test", args.protocol))
    if args.protocol == "full" and runs:
        text += ("\n\nThe same checkpoints (chosen on full-ranking validation) under the sampled protocol "
                 "(the target and 100 unseen items, fixed per seed):\n\n" + table(runs, "sampled", "sampled"))
        if unscored:
            text += f"\n\nLeft out of the second table (not evaluated again: the reason is on stderr above, e.g. their weights were gone): {', '.join(unscored)}."
        against = {n: VARIANTS[n][2] for n in runs if VARIANTS[n][2]}
        tested = significance(runs, against, "ndcg@10")
        if tested:
            text += "\n\nIs each change real? Full ranking, users' test NDCG@10 (their mean over seeds):\n\n" + tested
        rescored = [r["sampled"] for rs in runs.values() for r in rs if r.get("sampled")]
        if rescored:  # --evaluate saved each user's metrics under the sampled protocol beside the run's own
            file = evaluated_per_user("sampled", rescored[0]["protocol"]["exclude"])
            text += ("\n\nThe same test with the sampled protocol's ranking (the same checkpoints):\n\n"
                     + significance({n: [r for r in rs if r.get("sampled")] or rs for n, rs in runs.items()},
                                    against, "ndcg@10", file))
    return finish(args, argv, "bench_llm_seq.py", "LLM-enhanced sequential models, Beauty with text",
                  text, failed, any_runs=bool(runs))


COST_CHILD = """
import json, sys, time, torch
from semrec.encoder.config import resolve_config
from semrec.encoder.dataset import load_dataset
from semrec.common.linalg import top_k_cosine
from semrec.encoder.registry import build_model, get_model_class
from semrec.encoder.sampling import make_sampler
folder, epochs, pairs, dataset = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
data = load_dataset(folder)
t0 = time.process_time(); top_k_cosine(data.user_emb, 10); retrieval = time.process_time() - t0
out = {"retrieval_s": retrieval, "users": data.num_users, "epoch_s": {}}
runs = {}
for name, model, settings in pairs:
    cfg = resolve_config(model, dataset, get_model_class(model), settings)
    torch.manual_seed(0)
    m = build_model(model, data, cfg.model, cfg.align).train()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    runs[name] = (m, opt, make_sampler(m, data, 256, torch.Generator().manual_seed(0)), [])
for epoch in range(epochs + 1):  # the variants take turns, epoch by epoch: drifts in machine speed hit all alike
    for name, (m, opt, sampler, times) in runs.items():
        t0 = time.process_time()  # CPU time: other processes on the machine do not count
        m.start_epoch(epoch)
        for batch in sampler:
            loss, _ = m.loss(batch)
            opt.zero_grad(); loss.backward(); opt.step()
        times.append(time.process_time() - t0)
for name, (*_, times) in runs.items():
    out["epoch_s"][name] = sum(times[1:]) / epochs
print(json.dumps(out))
"""


def cost(args, argv) -> int:
    folder = _prepared(args)
    names = _known(list(dict.fromkeys(args.variants)))
    pairs = [(n, VARIANTS[n][0], VARIANTS[n][1]) for n in names]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([sys.executable, "-c", COST_CHILD, str(folder), str(args.epochs), json.dumps(pairs),
                           args.dataset],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    sasrec = res["epoch_s"].get("sasrec")  # every LLM-enhanced variant also against the plain SASRec
    rows = ["| variant | s per training epoch | against | ratio | against sasrec |", "|---|---|---|---|---|"]
    for n in names:
        base = VARIANTS[n][2]
        s = res["epoch_s"][n]
        ratio = f"{s / res['epoch_s'][base]:.2f}x" if base in res["epoch_s"] else "-"
        to_sasrec = f"{s / sasrec:.2f}x" if sasrec and n != "sasrec" else "-"
        rows.append(f"| {n} | {s:.3g} | {base or '-'} | {ratio} | {to_sasrec} |")
    text = (f"CPU seconds, mean of {args.epochs} training epochs after one warm-up, one process, one thread, "
            "side by side (the variants take turns epoch by epoch). "
            f"Similar users (top 10 by cosine) for all {res['users']} users: {res['retrieval_s']:.1f} s.\n\n" + "\n".join(rows))
    print(text)
    if args.markdown:
        append_markdown(args.markdown, "bench_llm_seq.py", argv, "Cost of the LLM-enhanced sequential models", text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p, subs = subcommand_parser(__doc__, ("prepare", "accuracy", "cost"),
                                "the dataset and the run folders go here (kept: runs resume)")
    for name, s in subs.items():
        s.add_argument("--dataset", choices=DATASETS, default="beauty",
                       help="S3-Rec Beauty with titles (default) or MovieLens-100K with ratings")
        s.add_argument("--encoder", choices=list(ENCODERS), default="all-MiniLM-L6-v2",
                       help="the sentence encoder of the item and user profiles")
        if name != "prepare":
            s.add_argument("--variants", nargs="+", default=list(VARIANTS))
            s.add_argument("--markdown", help="append the table to this file")
        if name == "accuracy":
            add_device_arguments(s)
            s.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024, 2025])
            s.add_argument("--protocol", choices=list(PROTOCOLS), default="full")
            s.add_argument("--set", dest="overrides", action="append", default=[], help="passed to every run")
            s.add_argument("--json", help="write the per-run numbers to this file")
        if name == "cost":
            s.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    return {"prepare": lambda a, _: prepare(a), "accuracy": accuracy, "cost": cost}[args.what](args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
