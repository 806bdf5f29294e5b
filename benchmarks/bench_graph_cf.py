"""Benchmark the graph backbones on RLMRec's Yelp split: accuracy, speed, memory.

    python benchmarks/bench_graph_cf.py                          # lightgcn + gccf, 3 seeds
    python benchmarks/bench_graph_cf.py --models lightgcn --seeds 2023 --markdown docs/benchmarks.md

Each (model, seed) is a full CLI run to early stopping in its own process. Printed per
model: seconds per training epoch and per full evaluation (median over the run), peak
resident memory, epochs to early stop, wall time, and test Recall/NDCG@5/10/20 (mean ± std
over seeds), next to the RLMRec paper's numbers. With ``--markdown FILE`` the table is
appended to FILE with the machine, date and command. With ``--workdir DIR`` the run folders
are kept in DIR, and the same command run again after a kill reads back the finished runs and
resumes the killed one from its checkpoint. The speed ratio against a naive reference of the
same epoch is measured by ``benchmarks/bench_speed.py``.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

from semrec.encoder.experiments import (CHILD, RunFailed, add_device_arguments, add_run_arguments, append_markdown,  # noqa: F401
                                        fmt, load_runs, machine, report, run_all, run_dirs, run_one, save_runs)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "rlmrec_yelp"
# RLMRec paper (WWW 2024), Table 1, Yelp, base models: Recall@20, NDCG@20
PAPER = {"lightgcn": (0.1157, 0.0733), "gccf": (0.1084, 0.0680), "sgl": (0.1197, 0.0753),
         "simgcl": (0.1254, 0.0801), "dccf": (0.1249, 0.0800), "autocf": (0.1280, 0.0813)}

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["lightgcn", "gccf"])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--from-json", nargs="+", metavar="FILE",
                   help="no runs: rebuild the table from the --json files of earlier runs (e.g. one per seed "
                        "or per machine); runs of the same model are pooled")
    add_run_arguments(p)
    args = p.parse_args(argv)
    runs: dict[str, list[dict]] = {}
    failed: list[str] = []
    if args.from_json:
        runs = load_runs(args.from_json)
        args.seeds = sorted({r["seed"] for rs in runs.values() for r in rs})
    else:
        data = Path(args.data_dir)
        if not (data / "trn_mat.pkl").exists():
            print(f"skipped: {data} not found (the benchmark reads ../shared/data/rlmrec_yelp)", file=sys.stderr)
            return 0
        extra = [x for o in args.overrides for x in ("--set", o)]
        with run_dirs(args.workdir) as work:
            tasks = [((model, s), functools.partial(run_one, model, s, data, extra, work, device=args.device))
                     for model in args.models for s in args.seeds]
            for (model, s), r in run_all(tasks, args.jobs):
                if isinstance(r, RunFailed):  # keep going: the other runs' results still count
                    print(r, file=sys.stderr, flush=True)
                    failed.append(f"{model} seed {s}")
                    continue
                runs.setdefault(model, []).append(r)
                runs[model].sort(key=lambda x: x["seed"])
                save_runs(args, runs)
                print(f"{model} seed {r['seed']}: recall@20 {r['test']['recall@20']:.4f} ndcg@20 "
                      f"{r['test']['ndcg@20']:.4f}, {r['epochs']} epochs, {r['wall_s']:.0f}s",
                      file=sys.stderr, flush=True)
        runs = {m: runs[m] for m in args.models if m in runs}  # the order asked for
    if runs:
        report(args, argv, runs, table(runs), "bench_graph_cf.py", "Graph backbones on RLMRec Yelp",
               "mean ± std of test metrics at the best validation epoch; times are medians.")
    if failed:
        print("failed runs: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def table(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: per model, mean ± std over its runs, the paper's numbers, times and memory."""
    header = ("| model | R@5 | R@10 | R@20 | N@5 | N@10 | N@20 | paper R@20 / N@20 | vs paper R@20 / N@20 "
              "| s/epoch | s/eval | epochs (best) | wall s | peak RSS MB |")
    rows = [header, "|" + "---|" * 14]
    for model, rs in runs.items():
        m = lambda key: fmt([r["test"][key] for r in rs])
        mean = lambda key: statistics.fmean(r["test"][key] for r in rs)
        paper = PAPER.get(model)
        vs = (f"{100 * (mean('recall@20') / paper[0] - 1):+.1f}% / {100 * (mean('ndcg@20') / paper[1] - 1):+.1f}%"
              if paper else "-")
        med = lambda key: statistics.median(r[key] for r in rs)
        rows.append(
            f"| {model} | {m('recall@5')} | {m('recall@10')} | {m('recall@20')} | {m('ndcg@5')} | {m('ndcg@10')} "
            f"| {m('ndcg@20')} | {'%.4f / %.4f' % paper if paper else '-'} | {vs} | {med('train_epoch_s'):.2f} "
            f"| {med('eval_s'):.2f} | {'/'.join(str(r['epochs']) for r in rs)} "
            f"({'/'.join(str(r['best_epoch']) for r in rs)}) | {med('wall_s'):.0f} | {max(r['peak_rss_mb'] for r in rs):.0f} |")
    return rows


def finish(args, argv: list[str] | None, script: str, title: str, text: str, failed: list[str],
           any_runs: bool = True) -> int:
    """Print ``text``, append it to ``--markdown`` (with the threads per process) when there were
    runs, report failed runs; the exit status (1 if any run failed)."""
    print(text)
    if args.markdown and any_runs:
        append_markdown(args.markdown, script, argv, title, f"{args.threads} torch thread(s) per process.\n\n{text}",
                        device=getattr(args, "device", "cpu"))
    if failed:
        print("failed runs: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def subcommand_parser(doc: str, names: tuple[str, ...], workdir_help: str
                      ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """A parser with one subcommand per name, each taking ``--workdir`` and ``--threads``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    subs = {}
    for name in names:
        s = subs[name] = sub.add_parser(name)
        s.add_argument("--workdir", required=True, help=workdir_help)
        s.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    return p, subs


if __name__ == "__main__":
    raise SystemExit(main())
