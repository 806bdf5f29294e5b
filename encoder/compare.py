"""Is a gain real? Paired tests over users between runs, with intervals and a multiple-test correction.

    semrec-compare BASE_RUN VARIANT_RUN [VARIANT_RUN ...] [--metric ndcg@10]
    semrec-compare --base b1 b2 b3 --variant plus=p1,p2,p3 --variant gene=g1,g2,g3 --metric recall@20

Every run saves each user's final metrics (``per_user.npz``). For each variant against the base,
over the users both rank (matched by user id), on ``--split`` (test): the mean per-user difference
with a bootstrap 95% interval (users resampled, ``--bootstrap`` draws, ``--seed``), the paired
t-test and the Wilcoxon signed-rank test (scipy.stats, two-sided), both Holm-corrected over the
variants compared with one base. With several runs a side (seeds), a user's value is their mean
over those runs, and the table also shows the metric's mean ± std over the runs.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from semrec.encoder.run_files import PER_USER


@dataclass
class Comparison:
    """One variant against the base on one metric."""

    variant: str
    runs: int
    users: int
    base_mean: float
    variant_mean: float
    base_runs: list[float]
    variant_runs: list[float]
    diff: float
    relative: float
    ci_low: float
    ci_high: float
    t_stat: float
    t_p: float
    wilcoxon_p: float
    t_p_holm: float = float("nan")
    wilcoxon_p_holm: float = float("nan")


def per_user(run: Path, split: str, metric: str, file: str = PER_USER) -> tuple[np.ndarray, np.ndarray]:
    """``(user ids, values)`` of ``metric`` on ``split`` from a run's ``per_user.npz`` (or ``file``:
    ``per_user-PROTOCOL-EXCLUDE.npz``, written by ``semrec-train --evaluate`` under other settings)."""
    f = Path(run) / file
    if not f.exists():
        raise FileNotFoundError(f"{f}: no per-user metrics (runs save them since 2026-12-07; evaluate the run again "
                                f"or train it again)")
    with np.load(f) as z:
        key = f"{split}/{metric}"
        if key not in z:
            have = sorted({k.split("/", 1)[1] for k in z.files if k.startswith(f"{split}/") and k != f"{split}/users"})
            raise KeyError(f"{f}: no {metric!r} on {split}; it has {', '.join(have) or 'nothing on ' + split}")
        return z[f"{split}/users"], z[key].astype(np.float64)


def pooled(runs: list[Path], split: str, metric: str, file: str = PER_USER) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Users ranked in every run, their mean value over the runs, and each run's overall mean."""
    tables = [per_user(r, split, metric, file) for r in runs]
    users = tables[0][0]
    for u, _ in tables[1:]:
        users = np.intersect1d(users, u)
    users = np.sort(users)
    values = np.mean([_align(u, v, users) for u, v in tables], axis=0)
    return users, values, [float(v.mean()) for _, v in tables]


def _align(users: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``values`` (one per ``users``, any order) at the ids ``wanted`` (all present in ``users``)."""
    order = np.argsort(users)
    return values[order][np.searchsorted(users[order], wanted)]


def bootstrap_ci(diff: np.ndarray, draws: int = 10000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``diff`` over resampled users."""
    rng = np.random.default_rng(seed)
    n = len(diff)
    means = np.empty(draws)
    for lo in range(0, draws, 1000):  # in blocks: draws x n indices at once would be large
        hi = min(lo + 1000, draws)
        means[lo:hi] = diff[rng.integers(0, n, size=(hi - lo, n))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def compare(base: list[Path], variants: dict[str, list[Path]], metric: str, split: str = "test",
            draws: int = 10000, seed: int = 0, file: str = PER_USER) -> list[Comparison]:
    """Each variant against the base (the module docstring); ``file``: the per-user file read."""
    from scipy import stats

    b_users, b_values, b_runs = pooled(base, split, metric, file)
    out = []
    for name, runs in variants.items():
        v_users, v_values, v_runs = pooled(runs, split, metric, file)
        users = np.intersect1d(b_users, v_users)
        if len(users) < 2:
            raise ValueError(f"{name}: fewer than two users ranked by both it and the base")
        b, v = _align(b_users, b_values, users), _align(v_users, v_values, users)
        d = v - b
        if np.allclose(d, 0):
            t_stat, t_p, w_p = 0.0, 1.0, 1.0
        else:
            t = stats.ttest_rel(v, b)
            t_stat, t_p = float(t.statistic), float(t.pvalue)
            w_p = float(stats.wilcoxon(v, b, zero_method="wilcox").pvalue)
        lo, hi = bootstrap_ci(d, draws, seed)
        out.append(Comparison(name, len(runs), len(users), float(b.mean()), float(v.mean()), b_runs, v_runs,
                              float(d.mean()), float(d.mean() / b.mean()) if b.mean() else float("nan"), lo, hi,
                              t_stat, t_p, w_p))
    for field, into in (("t_p", "t_p_holm"), ("wilcoxon_p", "wilcoxon_p_holm")):
        for c, p in zip(out, holm([getattr(c, field) for c in out])):
            setattr(c, into, p)
    return out


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def table(results: list[Comparison], metric: str, base_runs: list[float], alpha: float = 0.05) -> str:
    rows = [f"| variant | runs | {metric} (runs) | base | Δ per user (rel.) | 95% CI of Δ | t-test p (Holm) "
            "| Wilcoxon p (Holm) | users |", "|" + "---|" * 9]
    for c in results:
        mark = " *" if c.t_p_holm < alpha and c.wilcoxon_p_holm < alpha else ""
        rows.append(f"| {c.variant}{mark} | {c.runs} | {_spread(c.variant_runs)} | {_spread(base_runs)} "
                    f"| {c.diff:+.4f} ({100 * c.relative:+.1f}%) | [{c.ci_low:+.4f}, {c.ci_high:+.4f}] "
                    f"| {c.t_p:.3g} ({c.t_p_holm:.3g}) | {c.wilcoxon_p:.3g} ({c.wilcoxon_p_holm:.3g}) | {c.users} |")
    return "\n".join(rows) + f"\n\n* : both Holm-corrected p-values below {alpha}."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semrec-compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("runs", nargs="*", help="BASE_RUN VARIANT_RUN ...: one run a side")
    p.add_argument("--base", nargs="+", help="the base's runs (seeds)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=RUN,RUN,...",
                   help="a variant's runs (repeatable)")
    p.add_argument("--metric", default="ndcg@10")
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--per-user", default=PER_USER, metavar="FILE",
                   help="the per-user file of each run folder: per_user.npz (the run's own evaluation, default) or "
                        "per_user-PROTOCOL-EXCLUDE.npz (written by semrec-train --evaluate under other settings)")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap draws (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--json", help="write the comparisons to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.base:
            if args.runs:
                raise ValueError("give runs either as BASE VARIANT ... or with --base / --variant, not both")
            base = [Path(r) for r in args.base]
            variants = {}
            for spec in args.variant:
                name, sep, runs = spec.partition("=")
                if not sep or not runs:
                    raise ValueError(f"--variant {spec!r}: expected NAME=RUN,RUN,...")
                variants[name] = [Path(r) for r in runs.split(",") if r]
        else:
            if len(args.runs) < 2:
                raise ValueError("give a base run and at least one variant run (or --base / --variant)")
            base = [Path(args.runs[0])]
            variants = {Path(r).name: [Path(r)] for r in args.runs[1:]}
        if not variants:
            raise ValueError("no variant to compare with the base")
        if args.bootstrap < 100:
            raise ValueError("--bootstrap: at least 100 draws")
        results = compare(base, variants, args.metric, args.split, args.bootstrap, args.seed, args.per_user)
        base_runs = results[0].base_runs
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"semrec-compare: {msg}", file=sys.stderr)
        return 2
    print(f"{args.metric} on {args.split}, each variant against {', '.join(str(b) for b in base)}:\n")
    print(table(results, args.metric, base_runs, args.alpha))
    if args.json:
        from semrec.common.io import write_json

        write_json(args.json, {"metric": args.metric, "split": args.split, "base": [str(b) for b in base],
                               "comparisons": [asdict(c) for c in results]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
