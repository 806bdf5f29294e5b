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
import contextlib
import logging
import sys
import time
from pathlib import Path

import yaml

log = logging.getLogger("semrec")

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 3


def dataset_path(name: str, data_dir: str | None) -> Path:
    from semrec.common.io import data_root

    path = Path(data_dir) if data_dir else data_root() / name
    if name == "demo" and not data_dir and not (path / "trn_mat.pkl").exists():
        from semrec.common.demo import make_demo

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
    p.add_argument("--out", help="run directory (default $SEMREC_HOME/runs/<dataset>/<model>/seed<seed>-<time>, "
                   "or ./runs/...)")
    p.add_argument("--config", help="model YAML to use instead of configs/<model>.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.lr=0.001 or model.layers=2 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p.add_argument("--evaluate", metavar="RUN_DIR",
                   help="evaluate a run's best weights again under other eval.* settings (--set eval.protocol=sampled, "
                        "eval.exclude=none, ...); writes RUN_DIR/eval-<protocol>-<exclude>.json")
    p.add_argument("--allow-sparse-ids", action="store_true",
                   help="keep item ids far sparser than the items that occur (refused by default: a stray id "
                        "would size the item table)")
    p.add_argument("--list-models", action="store_true", help="print the model names by family, one line each")
    p.add_argument("--show-config", metavar="MODEL",
                   help="print every setting of MODEL as a run would resolve it (with --dataset: for that dataset): "
                        "value, type and range, where it comes from, and what it means")
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
                  "out": "--out", "config": "--config", "overrides": "--set", "allow_sparse_ids": "--allow-sparse-ids"}


def _saved_run(run_dir: Path) -> dict:
    """A run folder's ``config.yaml`` as saved, checked to be a semrec run's (errors name the file)."""
    from semrec.encoder.config import ConfigError
    from semrec.common.io import read_text

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not a run directory (no config.yaml)")
    try:
        saved = yaml.safe_load(read_text(cfg_path, ConfigError))
    except yaml.YAMLError as e:
        raise ConfigError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    config = saved.get("config") if isinstance(saved, dict) else None
    if (not isinstance(config, dict) or not isinstance(config.get("model_name"), str)
            or not isinstance(config.get("dataset"), str) or not isinstance(saved.get("data_dir"), str)):
        raise ConfigError(f"{cfg_path}: not a semrec run configuration (expected 'config' with a model_name and a "
                          "dataset, and 'data_dir')")
    from semrec.encoder.config import SECTIONS

    for section in SECTIONS:
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ConfigError(f"{cfg_path}: section config.{section} must be a mapping, got a "
                              f"{type(config[section]).__name__}")
    return saved


def _saved_config(run_dir: Path, saved: dict | None = None):
    """The configuration and data folder a run directory was started with (errors name the file)."""
    from semrec.encoder.config import ConfigError, config_from_dict
    from semrec.encoder.registry import get_model_class

    saved = _saved_run(run_dir) if saved is None else saved
    try:
        return config_from_dict(saved["config"], get_model_class(saved["config"]["model_name"])), saved["data_dir"]
    except (ConfigError, KeyError) as e:
        raise ConfigError(f"{run_dir / 'config.yaml'}: {e.args[0] if e.args else e}") from None


def _trainer(cfg, data_dir: str, run_dir: Path, allow_sparse_ids: bool = False, fingerprint: str | None = None,
             doing: str = "trained"):
    """The dataset and a trainer of the configured model for ``run_dir`` (seeded; nothing written).

    The data is checked before the model is built: against the run's ``fingerprint`` (a run
    resumed or evaluated on data rewritten since), and the run's memory against what is
    available (:mod:`semrec.encoder.memory`)."""
    from semrec.encoder.dataset import load_dataset
    from semrec.common.io import DataError
    from semrec.encoder.memory import check_fits
    from semrec.encoder.registry import build_model, get_model_class
    from semrec.encoder.trainer import Trainer, resolve_device, seed_everything

    device = resolve_device(cfg.train.device)
    generator = seed_everything(cfg.train.seed)
    data = load_dataset(data_dir, name=cfg.dataset, allow_sparse_ids=allow_sparse_ids)
    if fingerprint is not None and data.fingerprint() != fingerprint:
        raise DataError(f"{data_dir}: the data has changed since {run_dir} was trained (its fingerprint differs); "
                        f"nothing was {doing}. Restore the data, or train a new run on it")
    check_fits(get_model_class(cfg.model_name), cfg.model, data, cfg.train.batch_size, cfg.eval.batch_size,
               device.type)
    model = build_model(cfg.model_name, data, cfg.model, cfg.align)
    return data, Trainer(model, data, cfg, run_dir, device, generator=generator)


def _reopen(run_dir: Path, device: str | None):
    """A saved run's configuration, data folder and ``config.yaml`` as saved (``device``: instead of its own)."""
    saved = _saved_run(run_dir)
    cfg, data_dir = _saved_config(run_dir, saved)
    if device:
        cfg.train.device = device
    return cfg, data_dir, saved


def load_run(run_dir: str | Path, device: str | None = None):
    """A run folder's dataset and trainer, with the run's best weights loaded into the model
    (for analyses beyond ``--evaluate``: ``trainer.evaluate("test", items=mask)``)."""
    run_dir = Path(run_dir)
    cfg, data_dir, saved = _reopen(run_dir, device)
    data, trainer = _trainer(cfg, data_dir, run_dir, bool(saved.get("allow_sparse_ids")),
                             saved.get("data_fingerprint"), "loaded")
    trainer.load_best()
    return data, trainer


def _check_writable(folder: Path, doing: str) -> None:
    """Fail before any work when nothing can be written into ``folder`` (read-only, full)."""
    probe = folder / ".semrec-write-check"
    try:
        probe.write_bytes(b"semrec")
    except OSError as e:
        raise ValueError(f"{folder}: cannot write there ({e.strerror}); nothing was {doing}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def evaluate_run(args: argparse.Namespace) -> dict:
    """``--evaluate``: a finished (or running) run's best weights under other evaluation settings."""
    from semrec.encoder import run_files
    from semrec.encoder.config import ConfigError, parse_overrides
    from semrec.common.io import write_json

    _setup_logging(None, args.quiet)
    given = [flag for key, flag in _NEW_RUN_FLAGS.items() if key != "overrides" and getattr(args, key) not in (None, [], False)]
    if given or args.resume:
        raise ValueError(f"--evaluate re-reads a run with its saved config.yaml; {', '.join(given or ['--resume'])} "
                         "cannot be given with it (only --set eval.*, --device and --quiet)")
    run_dir = Path(args.evaluate)
    cfg, data_dir, saved = _reopen(run_dir, args.device)
    for section, key, value in parse_overrides(list(args.overrides)):
        if section != "eval":
            raise ConfigError(f"--set {section}.{key}: --evaluate changes eval.* settings only (the weights were "
                              "trained with the run's own settings)")
        cfg.eval = _with_eval(cfg.eval, key, value)
    _check_writable(run_dir, "evaluated")
    data, trainer = _trainer(cfg, data_dir, run_dir, bool(saved.get("allow_sparse_ids")),
                             saved.get("data_fingerprint"), "evaluated")
    results = trainer.evaluate_saved()
    settings = (cfg.eval.protocol, cfg.eval.exclude)
    out = run_dir / run_files.evaluated_results(*settings)
    write_json(out, results)  # and each user's metrics, for semrec-compare --per-user:
    run_files.save_per_user(run_dir / run_files.evaluated_per_user(*settings), trainer.evaluator.per_user)
    results["run_dir"], results["written"] = str(run_dir), str(out)
    return results


def _with_eval(ec, key: str, value):
    """``ec`` with ``eval.<key>`` set to ``value``, coerced and range-checked as a config file's is."""
    import dataclasses
    import typing

    from semrec.encoder.config import ConfigError, coerce
    from semrec.common.hparams import check_fields

    hints = typing.get_type_hints(type(ec), include_extras=True)
    if key not in hints:
        raise ConfigError(f"--set eval.{key}: unknown key; valid: {', '.join(sorted(hints))}")
    new = dataclasses.replace(ec, **{key: coerce(value, hints[key], f"eval.{key}")})
    check_fields(new)
    return new


def _check_out(run_dir: Path, locked: bool = False) -> None:
    """Refuse an ``--out`` that is a file, a folder of the user's own files, or (``locked``: once
    this process holds the folder's lock, so that a run still going is reported as busy) a run
    with a checkpoint, continued with ``--resume``. A run that stopped before its first
    checkpoint is started again."""
    from semrec.encoder.run_files import is_run_file
    from semrec.encoder.trainer import CHECKPOINT

    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ValueError(f"--out {run_dir}: is a file, not a folder")
    names = sorted(p.name for p in run_dir.iterdir())
    other = [n for n in names if not is_run_file(n)]
    if other:
        raise ValueError(f"--out {run_dir}: the folder holds files that are not a semrec run's "
                         f"({', '.join(other[:4])}{', ...' if len(other) > 4 else ''}); choose a new or empty folder")
    if "config.yaml" in names:
        _saved_run(run_dir)  # a config.yaml of some other program is not overwritten
    if locked and CHECKPOINT in names:
        raise ValueError(f"--out {run_dir}: already holds a run; continue it with --resume {run_dir}, "
                         "or choose another --out")


def run(args: argparse.Namespace) -> dict:
    from semrec.encoder.config import resolve_config
    from semrec.common.io import check_name, exclusive, runs_root, write_text
    from semrec.encoder.registry import get_model_class
    from semrec.encoder import distributed
    from semrec.encoder.trainer import CHECKPOINT, HISTORY

    _setup_logging(None, args.quiet or not distributed.is_main_env())
    main_rank = distributed.is_main_env()
    # 1. everything given is checked before anything is written
    if args.resume:
        given = [flag for key, flag in _NEW_RUN_FLAGS.items() if getattr(args, key) not in (None, [], False)]
        if given:
            raise ValueError(f"--resume continues a run with its saved config.yaml; {', '.join(given)} cannot "
                             "change it (only --device and --quiet can be given). Start a new run to change settings")
        run_dir = Path(args.resume)
        cfg, data_dir, saved = _reopen(run_dir, args.device)
        cfg.train.device = distributed.setup(cfg.train.device)  # several processes (torchrun): join the group
        if main_rank:
            _check_writable(run_dir, "resumed")
        allow_sparse, fingerprint = bool(saved.get("allow_sparse_ids")), saved.get("data_fingerprint")
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
        cfg.train.device = distributed.setup(cfg.train.device)  # several processes (torchrun): join the group
        if main_rank:  # the demo is made on first use: by one process
            dataset_path(args.dataset, args.data_dir)
        distributed.barrier()
        data_dir = str(dataset_path(args.dataset, args.data_dir).resolve())
        stamp = distributed.broadcast(time.strftime("%Y%m%d-%H%M%S"))  # one folder name for every rank
        run_dir = Path(args.out) if args.out else runs_root() / args.dataset / args.model / f"seed{cfg.train.seed}-{stamp}"
        if main_rank:
            _check_out(run_dir)
        allow_sparse, fingerprint = args.allow_sparse_ids, None
    data, trainer = _trainer(cfg, data_dir, run_dir, allow_sparse, fingerprint, "resumed" if args.resume else "trained")

    # 2. the run folder: one process at a time; with several ranks, rank 0 writes it
    if main_rank:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the run folder {run_dir}: {e.strerror}") from None
    lock = exclusive(run_dir / ".lock", f"{run_dir} is in use by another semrec-train process; wait for it to "
                                        "finish or choose another --out") if main_rank else contextlib.nullcontext()
    with lock:
        resume = bool(args.resume) and (run_dir / CHECKPOINT).exists()
        if main_rank:
            if args.resume and not resume:
                log.warning("%s has no checkpoint yet (it stopped before its first validation); starting it again",
                            run_dir)
            if not args.resume:
                _check_out(run_dir, locked=True)
                write_text(run_dir / "config.yaml", yaml.safe_dump(
                    {"config": cfg.to_dict(), "data_dir": data_dir, "data_fingerprint": data.fingerprint(),
                     "allow_sparse_ids": allow_sparse}, sort_keys=False))
            if not resume:  # the epochs of a run with no checkpoint are all redone
                (run_dir / HISTORY).unlink(missing_ok=True)
            _setup_logging(run_dir, args.quiet)
            log.info("resolved config:\n%s", yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
            log.info("data %s: %s%s", data_dir, data.stats(),
                     f"; {distributed.world()} processes" if distributed.world() > 1 else "")
        distributed.barrier()  # the folder is ready before any rank trains
        results = trainer.fit(resume=resume)
    results["run_dir"] = str(run_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.list_models:
        from semrec.encoder.describe import list_models

        list_models()
        return 0
    from semrec.encoder.config import ConfigError
    from semrec.common.extras import MissingExtra
    from semrec.common.io import BusyError, DataError
    from semrec.encoder.trainer import TrainingError
    from semrec.encoder import distributed
    from semrec.encoder.memory import describe_oom

    try:
        if args.show_config:
            from semrec.encoder.describe import show_config

            show_config(args.show_config, args.dataset or "default")
            return 0
        results = evaluate_run(args) if args.evaluate else run(args)
    except (ConfigError, DataError, BusyError, KeyError, ValueError, FileNotFoundError, MissingExtra) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"semrec-train: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingError as e:
        print(f"semrec-train: training failed: {e}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    except OSError as e:  # a read-only folder, a full disk, a folder given as a file
        where = e.filename or "a file"
        print(f"semrec-train: error: {where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (MemoryError, RuntimeError) as e:
        lost = distributed.lost_rank(e)
        if lost:
            print(f"semrec-train: training stopped: {lost}", file=sys.stderr)
            return EXIT_TRAINING_FAILED
        oom = describe_oom(e)
        if oom is None:
            raise
        print(f"semrec-train: error: {oom}; lower model.dim, model.max_len, train.batch_size or eval.batch_size "
              "(the last checkpoint, if any, is kept)", file=sys.stderr)
        return EXIT_BAD_INPUT
    test = results["test"]
    if args.evaluate:
        shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items() if k.split("@")[0] in ("hit", "recall", "ndcg")
                          and "/" not in k)
        print(f"best epoch {results['best_epoch']}  test ({results['protocol']['protocol']}, exclude "
              f"{results['protocol']['exclude']}) {shown}  -> {results['written']}")
        return 0
    distributed.teardown()
    if not distributed.is_main_env():  # rank 0 reports
        return 0
    stop = results.get("stop_metric")
    shown = "  ".join(f"{k}={v:.4f}" for k, v in test.items() if k.split("@")[0] in ("recall", "ndcg"))
    picked = f"  {stop}: valid {results['valid'][stop]:.4f}, test {test[stop]:.4f}" if stop in test else ""
    print(f"best epoch {results['best_epoch']} of {results['last_epoch'] + 1} (loss: {results.get('loss', '?')})"
          f"{picked}  |  test {shown}  -> {results['run_dir']}/results.json")
    return 0


if __name__ == "__main__":
    # run as a script: keep encoder/ itself off the import path (its modules live in semrec.encoder)
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.exit(main())
