"""semrec from Python: datasets in, a trained run out, recommendations from it.

    import semrec
    run = semrec.train("lightgcn", dataset="demo", epochs=20, seed=7)
    run.results["test"]["recall@20"], run.history[-1]["loss"]
    run.recommend(["u12", "u40"], k=10)        # rows: user, rank, item, score (original ids)
    again = semrec.load_run(run.path)

A run trained here writes the same run folder as ``semrec-train`` (``config.yaml``, ``log.txt``,
``history.jsonl``, ``checkpoint.pt``, ``results.json``). Nothing is imported until a function is
called. docs/api.md has a worked example.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

__all__ = ["load_dataset", "train", "load_run", "Run", "prepare_dataframe"]


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import version

        return version("semrec")
    raise AttributeError(f"module 'semrec' has no attribute {name!r}")


def load_dataset(name: str = "demo", data_dir: str | Path | None = None, **options):
    """The dataset ``name`` (under ``$SEMREC_HOME/data``, ``./data``, or the folder ``data_dir``) as
    :class:`~semrec.encoder.dataset.InteractionData` (``demo`` is made on first use)."""
    from semrec.encoder.dataset import load_dataset as _load
    from semrec.encoder.train_encoder import dataset_path

    return _load(dataset_path(name, None if data_dir is None else str(data_dir)), name=name, **options)


def prepare_dataframe(df, name: str, **options) -> Path:
    """A pandas or polars DataFrame -> a dataset folder (:func:`semrec.data.prepare.from_dataframe`)."""
    from semrec.data.prepare import from_dataframe

    return from_dataframe(df, name, **options)


def _settings(model: str, dataset: str, overrides: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """``--set`` strings from ``{"section.key": v}`` and ``key=v`` keywords (a bare key is looked up
    in the sections; ``section__key`` names one)."""
    import dataclasses

    import yaml

    from semrec.encoder.config import SECTIONS, ConfigError, resolve_config
    from semrec.encoder.registry import get_model_class

    items = dict(overrides)
    if settings:
        cfg = resolve_config(model, dataset, get_model_class(model), [])
        keys = {"train": {f.name for f in dataclasses.fields(cfg.train)},
                "eval": {f.name for f in dataclasses.fields(cfg.eval)},
                "model": set(cfg.model), "align": set(cfg.align)}
        for key, value in settings.items():
            if "__" in key:
                section, name = key.split("__", 1)
                items[f"{section}.{name}"] = value
                continue
            where = [s for s in SECTIONS if key in keys[s]]
            if not where:
                valid = sorted(set().union(*keys.values()))
                raise ConfigError(f"unknown setting {key!r} for {model}; valid: {', '.join(valid)}")
            if len(where) > 1:
                raise ConfigError(f"setting {key!r} is in {' and '.join(where)}: name one, e.g. {where[0]}__{key}")
            items[f"{where[0]}.{key}"] = value
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in items.items()]


def train(model: str, dataset: str = "demo", *, data_dir: str | Path | None = None, out: str | Path | None = None,
          seed: int | None = None, device: str | None = None, config: str | Path | None = None, quiet: bool = True,
          overrides: dict[str, Any] | None = None, **settings) -> "Run":
    """Train ``model`` on ``dataset`` as ``semrec-train`` does; returns the :class:`Run`.

    Args:
        model: a registered name (``semrec-train --list-models``).
        dataset: a dataset name; ``data_dir``: its folder, if not under the data root.
        out: the run folder (default ``$SEMREC_HOME/runs/<dataset>/<model>/seed<seed>-<time>``).
        seed, device, config: as the flags of the same names.
        quiet: log warnings only to the console (``log.txt`` has everything).
        overrides: ``{"train.lr": 1e-3, "model.layers": 2}``.
        **settings: the same by key alone (``epochs=20``, ``layers=2``), or ``model__layers=2``.
    """
    from semrec.encoder.train_encoder import build_parser, run

    argv = ["--model", model, "--dataset", dataset]
    for flag, value in (("--data-dir", data_dir), ("--out", out), ("--seed", seed), ("--device", device),
                        ("--config", config)):
        if value is not None:
            argv += [flag, str(value)]
    if quiet:
        argv.append("--quiet")
    for s in _settings(model, dataset, overrides or {}, settings):
        argv += ["--set", s]
    try:
        results = run(build_parser().parse_args(argv))
    finally:
        _close_log()
    return Run(results["run_dir"])


def load_run(path: str | Path) -> "Run":
    """A run folder written by :func:`train` or ``semrec-train``."""
    run_ = Run(path)
    run_.config  # checks that it is a run folder
    return run_


def _close_log() -> None:
    """Detach the run's log file from the root logger (a notebook trains many runs in one process)."""
    import logging

    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_semrec", False):
            root.removeHandler(h)
            h.close()


class Run:
    """A run folder: its configuration, history and results, and recommendations from its best weights."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._recommender = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration (``config.yaml``'s ``config``)."""
        from semrec.encoder.train_encoder import _saved_run

        return _saved_run(self.path)["config"]

    @property
    def results(self) -> dict[str, Any]:
        """``results.json``: best epoch, validation and test metrics, timings."""
        f = self.path / "results.json"
        if not f.exists():
            raise FileNotFoundError(f"{f}: the run has not finished (resume it: semrec-train --resume {self.path})")
        return json.loads(f.read_text())

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per epoch (loss, seconds, validation metrics) from ``history.jsonl``."""
        f = self.path / "history.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []

    @property
    def recommender(self):
        """The :class:`~semrec.encoder.recommend.RunRecommender` of the best weights (loaded once)."""
        if self._recommender is None:
            from semrec.encoder.recommend import RunRecommender

            self._recommender = RunRecommender.from_run(self.path)
        return self._recommender

    def recommend(self, users: Sequence[Any] | None = None, k: int = 10, as_of: str = "all") -> list[dict[str, Any]]:
        """Top-``k`` rows (user, rank, item, score[, title]; original ids) for ``users`` (default:
        every user), leaving out what each already has; ``pandas.DataFrame(rows)`` makes a table."""
        rec = self.recommender
        idx = list(range(rec.data.num_users)) if users is None else [rec.ids.user(u) for u in users]
        items, scores = rec.top_k(idx, k, as_of)
        return rec.rows(idx, items, scores)

    def save(self, path: str | Path) -> "Run":
        """A copy of the run folder at ``path`` (which must not exist); returns the copy."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; save copies a run into a new folder")
        shutil.copytree(self.path, path, ignore=shutil.ignore_patterns(".lock", "*.tmp"))
        return Run(path)
