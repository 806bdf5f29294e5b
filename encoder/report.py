"""One page about some runs: a table, learning curves, head/tail bars, a base against its variants.

    semrec-report runs/yelp/lightgcn/* runs/yelp/lightgcn_plus/* --out report/
    semrec-report RUN_A1 RUN_A2 RUN_B1 RUN_B2 --base RUN_A1 RUN_A2 --metric recall@20

Writes ``report.md`` and ``report.html`` (the same content) and PNGs into ``--out``:

* the runs as a table, one row per model, dataset and settings (seeds pooled: mean ± std), with
  the stopping metric on validation and test, Recall/NDCG@20 (or the metric asked for), epochs and
  training seconds;
* ``curves.png``: each run's training loss and validation metric by epoch, its best epoch marked;
* ``groups.png``: the metric by head/tail user and item group, where runs recorded groups;
* ``compare.png`` with ``--base``: every other row against the base rows on ``--metric``, a star on
  a bar whose difference is significant (``semrec-compare``'s paired tests, Holm-corrected).

Plots need matplotlib (``pip install "semrec[report]"``).
"""
from __future__ import annotations

import argparse
import html
import json
import statistics
import sys
from pathlib import Path
from typing import Any

GROUPS = ("head_users", "tail_users", "head_items", "tail_items")


def load(run: Path) -> dict[str, Any]:
    """A finished run's results, history and settings."""
    from semrec.encoder.train_encoder import _saved_run

    run = Path(run)
    results_file = run / "results.json"
    if not results_file.exists():
        raise FileNotFoundError(f"{results_file}: not a finished run (no results.json)")
    config = _saved_run(run)["config"]
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines() if x.strip()] \
        if (run / "history.jsonl").exists() else []
    return {"path": run, "results": json.loads(results_file.read_text()), "history": history, "config": config}


def group_key(r: dict[str, Any]) -> str:
    """Model, dataset and every setting but the seed (runs that differ only by seed pool)."""
    c = r["config"]
    settings = {k: v for k, v in c["train"].items() if k not in ("seed", "device")}
    changed = json.dumps([settings, c.get("model"), c.get("align"), c.get("eval")], sort_keys=True, default=str)
    import hashlib

    return f"{c['model_name']} / {c['dataset']} ({hashlib.sha1(changed.encode()).hexdigest()[:6]})"


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(groups: dict[str, list[dict]], metric: str) -> list[list[str]]:
    shown = [metric] + [m for m in ("recall@20", "ndcg@20") if m != metric]
    head = ["runs", "seeds", "loss", "stop metric: valid / test", *(f"test {m}" for m in shown),
            "epochs (best)", "train s"]
    rows = [head]
    for name, runs in groups.items():
        res = [r["results"] for r in runs]
        stop = res[0].get("stop_metric") or runs[0]["config"]["train"]["stop_metric"]

        def col(split: str, key: str) -> str:
            vals = [x[split][key] for x in res if key in x[split]]
            return _spread(vals) if vals else "-"

        rows.append([name, ", ".join(str(x["seed"]) for x in res), str(res[0].get("loss", "-")),
                     f"{stop}: {col('valid', stop)} / {col('test', stop)}", *(col("test", m) for m in shown),
                     ", ".join(f"{x['last_epoch'] + 1} ({x['best_epoch']})" for x in res),
                     _spread([sum(x["timing"]["train_epoch_seconds"]) for x in res])])
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])] +
                     ["| " + " | ".join(r) + " |" for r in rows[1:]])


def html_table(rows: list[list[str]]) -> str:
    cells = lambda r, tag: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in r)  # noqa: E731
    return ("<table>\n<tr>" + cells(rows[0], "th") + "</tr>\n" +
            "\n".join("<tr>" + cells(r, "td") + "</tr>" for r in rows[1:]) + "\n</table>")


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(runs: list[dict], out: Path, plt) -> Path:
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        label = f"{r['config']['model_name']} s{r['results']['seed']} ({r['path'].name})"
        hist = r["history"]
        epochs = [h["epoch"] for h in hist if "loss" in h]
        if epochs:
            ax_loss.plot(epochs, [h["loss"] for h in hist if "loss" in h], label=label)
        stop = r["results"].get("stop_metric") or r["config"]["train"]["stop_metric"]
        val = [(h["epoch"], h["valid"][stop]) for h in hist if "valid" in h and stop in h["valid"]]
        if val:
            line, = ax_val.plot(*zip(*val), marker="." if len(val) < 30 else None, label=label)
            best = r["results"]["best_epoch"]
            at = dict(val).get(best)
            if at is not None:
                ax_val.plot([best], [at], marker="*", markersize=12, color=line.get_color())
        ax_val.set_ylabel(f"validation {stop}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_val.set_xlabel("epoch (★ best)")
    ax_val.legend(fontsize=7)
    path = _save(fig, out / "curves.png", plt)
    return path


def plot_groups(groups: dict[str, list[dict]], metric: str, out: Path, plt) -> Path | None:
    present = [g for g in GROUPS if any(f"{g}/{metric}" in r["results"]["test"] for rs in groups.values() for r in rs)]
    if not present:
        return None
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, 2 * len(present)), 4))
    width = 0.8 / len(groups)
    for j, (name, runs) in enumerate(groups.items()):
        means = [statistics.fmean(r["results"]["test"].get(f"{g}/{metric}", float("nan")) for r in runs)
                 for g in present]
        ax.bar(np.arange(len(present)) + j * width, means, width, label=name)
    ax.set_xticks(np.arange(len(present)) + width * (len(groups) - 1) / 2, present)
    ax.set_ylabel(f"test {metric}")
    ax.legend(fontsize=7)
    path = _save(fig, out / "groups.png", plt)
    return path


def plot_compare(groups: dict[str, list[dict]], base: list[Path], metric: str, out: Path, plt,
                 alpha: float = 0.05) -> tuple[Path, list]:
    from semrec.encoder.compare import compare

    base_set = {Path(b).resolve() for b in base}
    base_name = next(n for n, rs in groups.items() if {r["path"].resolve() for r in rs} & base_set)
    variants = {n: [r["path"] for r in rs] for n, rs in groups.items() if n != base_name}
    results = compare([Path(b) for b in base], variants, metric, draws=2000)
    names = [base_name] + [c.variant for c in results]
    means = [results[0].base_mean] + [c.variant_mean for c in results]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(names)), 4))
    bars = ax.bar(range(len(names)), means, color=["#888888"] + ["#3b75af"] * len(results))
    for bar, c in zip(bars[1:], results):
        sig = c.t_p_holm < alpha and c.wilcoxon_p_holm < alpha
        ax.annotate(("*" if sig else "n.s.") + f"\n{100 * c.relative:+.1f}%", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(means) * 1.25)  # room for the marks
    ax.set_xticks(range(len(names)), [n.split(" (")[0] for n in names], rotation=15, fontsize=8)
    ax.set_ylabel(f"test {metric} (per-user mean)")
    ax.set_title(f"against {base_name.split(' (')[0]}: * both Holm-corrected p < {alpha}", fontsize=9)
    path = _save(fig, out / "compare.png", plt)
    return path, results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semrec-report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--out", default="report", help="folder to write (default ./report)")
    p.add_argument("--metric", default="ndcg@20", help="the metric of the group and comparison plots")
    p.add_argument("--base", nargs="+", help="the base's runs: every other row is compared with them")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semrec.common.extras import MissingExtra, require
    from semrec.encoder.config import ConfigError

    try:
        mpl = require("matplotlib", "report", "semrec-report's plots")
        mpl.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt

        runs = [load(Path(r)) for r in args.runs]
        groups: dict[str, list[dict]] = {}
        for r in runs:
            groups.setdefault(group_key(r), []).append(r)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rows = table(groups, args.metric)
        images = [("Learning curves", plot_curves(runs, out, plt)),
                  ("By head / tail group", plot_groups(groups, args.metric, out, plt))]
        notes = ""
        if args.base:
            path, results = plot_compare(groups, args.base, args.metric, out, plt)
            images.append((f"Against the base on {args.metric}", path))
            from semrec.encoder.compare import table as compare_table

            notes = compare_table(results, args.metric, results[0].base_runs)
    except (MissingExtra, FileNotFoundError, ConfigError, KeyError, ValueError, StopIteration) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        if isinstance(e, StopIteration):
            msg = "--base: none of those runs is among the runs reported"
        print(f"semrec-report: {msg}", file=sys.stderr)
        return 2
    md = ["# Runs", "", markdown_table(rows), ""]
    page = ["<!doctype html><meta charset='utf-8'><title>semrec report</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}</style>", "<h1>Runs</h1>", html_table(rows)]
    for title, path in images:
        if path is None:
            continue
        md += [f"## {title}", "", f"![{title}]({path.name})", ""]
        page += [f"<h2>{html.escape(title)}</h2>", f"<img src='{path.name}' style='max-width:100%'>"]
    if notes:
        md += [notes, ""]
        page += ["<pre>" + html.escape(notes) + "</pre>"]
    from semrec.common.io import write_text

    write_text(out / "report.md", "\n".join(md))
    write_text(out / "report.html", "\n".join(page) + "\n")
    print(f"{len(runs)} runs in {len(groups)} rows -> {out / 'report.md'}, {out / 'report.html'} "
          f"and {sum(1 for _, p in images if p is not None)} PNGs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
