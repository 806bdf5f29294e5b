"""Train a recommender on a dataset in RLMRec's layout.

    python encoder/train_encoder.py --model lightgcn --dataset yelp
    python encoder/train_encoder.py --model gccf --dataset demo --set train.epochs=20 --set model.layers=3
    python encoder/train_encoder.py --resume runs/yelp/lightgcn/seed2023-20261122-101500
    python encoder/train_encoder.py --evaluate RUN_DIR --set eval.protocol=sampled

The same command is installed as ``semrec-train``. Exit code 0 on success; otherwise a
one-line reason on stderr and a non-zero code.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml

log = logging.getLogger("semrec")

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 3


def dataset_path(name: str, data_dir: str | None) -> Path:
    from semrec.encoder.io import data_root

    path = Path(data_dir) if data_dir else data_root() / name
    if name == "demo" and not data_dir and not (path / "trn_mat.pkl").exists():
        from semrec.data.demo import make_demo

        log.info("creating the demo dataset in %s", path)
        make_demo(path)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semrec-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model name (see --list-models)")
    p.add_argument("--dataset", help="dataset name: a folder under data/ (demo is created on first use)")
    p.add_argument("--data-dir", help="dataset folder to read instead of data/<dataset>/")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, help="random seed (default from the config: 2023)")
    p.add_argument("--out", help="run directory (default runs/<dataset>/<model>/seed<seed>-<time>)")
    p.add_argument("--config", help="model YAML to use instead of configs/<model>.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.lr=0.001 or model.layers=2 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p.add_argument("--evaluate", metavar="RUN_DIR",
                   help="evaluate a run's best weights again under other eval.* settings (--set eval.protocol=sampled, "
                        "eval.exclude=none, ...); writes RUN_DIR/eval-<protocol>-<exclude>.json")
    p.add_argument("--list-models", action="store_true", help="print the model names, one per line")
    p.add_argument("--quiet", action="store_true", help="only warnings and the final line")
    return p


def _setup_logging(run_dir: Path | None, quiet: bool) -> None:
    """Log to stderr; once ``run_dir`` exists (``run_dir`` given), also to ``run_dir/log.txt``."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_semrec", False) and (run_dir is None or isinstance(h, logging.FileHandler)):
            root.removeHandler(h)
            h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if run_dir is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING if quiet else logging.INFO)
    else:
        handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(fmt)
    handler._semrec = True
    root.addHandler(handler)


#: flags that describe a new run; ``--resume`` continues a run with its saved ``config.yaml`` instead
_NEW_RUN_FLAGS = {"model": "--model", "dataset": "--dataset", "data_dir": "--data-dir", "seed": "--seed",
                  "out": "--out", "config": "--config", "overrides": "--set"}


def _saved_config(run_dir: Path):
    """The configuration and data folder a run directory was started with (errors name the file)."""
    from semrec.encoder.config import ConfigError, config_from_dict
    from semrec.encoder.registry import get_model_class

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not a run directory (no config.yaml)")
    try:
        saved = yaml.safe_load(cfg_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if (not isinstance(saved, dict) or not isinstance(saved.get("config"), dict)
            or not isinstance(saved["config"].get("model_name"), str) or not isinstance(saved.get("data_dir"), str)):
        raise ConfigError(f"{cfg_path}: not a semrec run configuration (expected 'config' with a model_name, "
                          "and 'data_dir')")
    try:
        return config_from_dict(saved["config"], get_model_class(saved["config"]["model_name"])), saved["data_dir"]
    except (ConfigError, KeyError) as e:
        raise ConfigError(f"{cfg_path}: {e.args[0] if e.args else e}") from None


def _trainer(cfg, data_dir: str, run_dir: Path):
    """The dataset and a trainer of the configured model for ``run_dir`` (seeded; nothing written)."""
    from semrec.encoder.dataset import load_dataset
    from semrec.encoder.registry import build_model
    from semrec.encoder.trainer import Trainer, resolve_device, seed_everything

    device = resolve_device(cfg.train.device)
    sampler = seed_everything(cfg.train.seed)
    data = load_dataset(data_dir, name=cfg.dataset)
    model = build_model(cfg.model_name, data, cfg.model, cfg.align)
    return data, Trainer(model, data, cfg, run_dir, device, sampler=sampler)


def load_run(run_dir: str | Path, device: str | None = None):
    """A run folder's dataset and trainer, with the run's best weights loaded into the model
    (for analyses beyond ``--evaluate``: ``trainer.evaluate("test", items=mask)``)."""
    run_dir = Path(run_dir)
    cfg, data_dir = _saved_config(run_dir)
    if device:
        cfg.train.device = device
    data, trainer = _trainer(cfg, data_dir, run_dir)
    trainer.load_best()
    return data, trainer


def evaluate_run(args: argparse.Namespace) -> dict:
    """``--evaluate``: a finished (or running) run's best weights under other evaluation settings."""
    from semrec.encoder.config import ConfigError, parse_overrides
    from semrec.encoder.io import write_json

    _setup_logging(None, args.quiet)
    given = [flag for key, flag in _NEW_RUN_FLAGS.items() if key != "overrides" and getattr(args, key) not in (None, [])]
    if given or args.resume:
        raise ValueError(f"--evaluate re-reads a run with its saved config.yaml; {', '.join(given or ['--resume'])} "
                         "cannot be given with it (only --set eval.*, --device and --quiet)")
    run_dir = Path(args.evaluate)
    cfg, data_dir = _saved_config(run_dir)
    for section, key, value in parse_overrides(list(args.overrides)):
        if section != "eval":
            raise ConfigError(f"--set {section}.{key}: --evaluate changes eval.* settings only (the weights were "
                              "trained with the run's own settings)")
        cfg.eval = _with_eval(cfg.eval, key, value)
    if args.device:
        cfg.train.device = args.device
    data, trainer = _trainer(cfg, data_dir, run_dir)
    results = trainer.evaluate_saved()
    out = run_dir / f"eval-{cfg.eval.protocol}-{cfg.eval.exclude}.json"
    write_json(out, results)
    results["run_dir"], results["written"] = str(run_dir), str(out)
    return results


def _with_eval(ec, key: str, value):
    """``ec`` with ``eval.<key>`` set to ``value``, coerced and range-checked as a config file's is."""
    import dataclasses
    import typing

    from semrec.encoder.config import ConfigError, coerce
    from semrec.encoder.hparams import check_fields

    hints = typing.get_type_hints(type(ec), include_extras=True)
    if key not in hints:
        raise ConfigError(f"--set eval.{key}: unknown key; valid: {', '.join(sorted(hints))}")
    new = dataclasses.replace(ec, **{key: coerce(value, hints[key], f"eval.{key}")})
    check_fields(new)
    return new


def run(args: argparse.Namespace) -> dict:
    from semrec.encoder.config import resolve_config
    from semrec.encoder.io import check_name, exclusive
    from semrec.encoder.registry import get_model_class

    _setup_logging(None, args.quiet)
    # 1. everything given is checked before anything is written
    if args.resume:
        given = [flag for key, flag in _NEW_RUN_FLAGS.items() if getattr(args, key) not in (None, [])]
        if given:
            raise ValueError(f"--resume continues a run with its saved config.yaml; {', '.join(given)} cannot "
                             "change it (only --device and --quiet can be given). Start a new run to change settings")
        run_dir = Path(args.resume)
        cfg, data_dir = _saved_config(run_dir)
        if args.device:
            cfg.train.device = args.device
    else:
        if not args.model or not args.dataset:
            raise ValueError("--model and --dataset are required (or --resume RUN_DIR)")
        check_name(args.dataset)
        overrides = list(args.overrides)
        if args.seed is not None:
            overrides.append(f"train.seed={args.seed}")
        if args.device:
            overrides.append(f"train.device={args.device}")
        cfg_file = Path(args.config) if args.config else None
        cfg = resolve_config(args.model, args.dataset, get_model_class(args.model), overrides, cfg_file)
        data_dir = str(dataset_path(args.dataset, args.data_dir))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out) if args.out else Path("runs") / args.dataset / args.model / f"seed{cfg.train.seed}-{stamp}"
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"--out {run_dir}: is a file, not a folder")
    data, trainer = _trainer(cfg, data_dir, run_dir)

    # 2. the run folder: one process at a time
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the run folder {run_dir}: {e.strerror}") from None
    with exclusive(run_dir / ".lock", f"{run_dir} is in use by another semrec-train process; wait for it to "
                                      "finish or choose another --out"):
        if not args.resume:
            if (run_dir / "history.jsonl").exists():
                raise ValueError(f"--out {run_dir}: already holds a run; continue it with --resume {run_dir}, "
                                 "or choose another --out")
            (run_dir / "config.yaml").write_text(yaml.safe_dump({"config": cfg.to_dict(), "data_dir": data_dir},
                                                                sort_keys=False))
        _setup_logging(run_dir, args.quiet)
        log.info("resolved config:\n%s", yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
        log.info("data %s: %s", data_dir, data.stats())
        results = trainer.fit(resume=bool(args.resume))
    results["run_dir"] = str(run_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.list_models:
        from semrec.encoder.registry import available_models

        print("\n".join(available_models()))
        return 0
    from semrec.encoder.config import ConfigError
    from semrec.encoder.io import BusyError, DataError
    from semrec.encoder.trainer import TrainingError

    try:
        results = evaluate_run(args) if args.evaluate else run(args)
    except (ConfigError, DataError, BusyError, KeyError, ValueError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"semrec-train: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingError as e:
        print(f"semrec-train: training failed: {e}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    test = results["test"]
    if args.evaluate:
        shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items() if k.split("@")[0] in ("hit", "recall", "ndcg")
                          and "/" not in k)
        print(f"best epoch {results['best_epoch']}  test ({results['protocol']['protocol']}, exclude "
              f"{results['protocol']['exclude']}) {shown}  -> {results['written']}")
        return 0
    shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items() if k.split("@")[0] in ("recall", "ndcg"))
    print(f"best epoch {results['best_epoch']}  test {shown}  -> {results['run_dir']}/results.json")
    return 0


if __name__ == "__main__":
    # run as a script: keep encoder/ itself off the import path (its modules live in semrec.encoder)
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.exit(main())
