"""Layered, typed run configuration.

Precedence, lowest first: the dataclass defaults below and the model constructor's own defaults
(the one source of a model's defaults) < every config file's top level < every file's
``datasets: <dataset>:`` section < ``--set key=value`` on the command line. The files are
``configs/<model>.yaml``, or for an aligned model (``lightgcn_plus``) its backbone's file
(``lightgcn.yaml``) then its own, so a dataset section of either beats both top levels. A file
holds a model's training recipe (``train``, ``eval``) and its departures from the defaults, each
with its reason. Every key is checked: an unknown section or key is an error that lists the
valid ones, and values are converted to the declared type and checked against its range.

A model YAML file looks like::

    train: {lr: 1.0e-3, batch_size: 4096}
    model: {reg_weight: 1.0e-7}   # the model constructor's arguments, where they depart
    datasets:
      steam: {model: {layers: 2}}
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from semrec.common.hparams import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability, Seed, \
    check_fields, choice, out_of_range, range_of
from semrec.encoder.batches import NEGATIVES_PER
from semrec.encoder.sampling import LENGTH_BUCKETS


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message lists the valid choices."""


@dataclass
class TrainConfig:
    """Optimisation and early stopping.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: training examples per step (triples for graph models, sequences for
            sequential ones).
        lr: peak learning rate.
        weight_decay: the optimiser's weight decay (RLMRec uses 0 and an explicit L2 term instead).
        optimizer: ``adam`` (weight decay as an L2 gradient term) or ``adamw`` (decoupled).
        adam_beta2: the optimiser's second-moment decay (0.999: PyTorch's; 0.98: BERT4Rec's and
            RecTools' transformers, as eSASRec trains them).
        warmup_steps: steps of linear learning-rate warm-up from 0 (0: none).
        lr_decay: after warm-up, ``none`` (constant), ``linear`` (to 0 at the last epoch) or ``cosine``.
        grad_clip: clip the gradients' global L2 norm to this (0: no clipping).
        amp: bfloat16 autocast on CUDA (ignored on CPU, where it does not help).
        negatives_per: how sequence models with sampled negatives draw them: ``position`` (``k``
            per position; the papers' way) or ``sequence`` (``k`` per sequence, shared by its
            positions: faster with many negatives; docs/benchmarks.md).
        length_buckets: sequence models: ``1`` (the default) draws plain random batches, as
            RecBole and RecTools do; ``n > 1`` sorts each epoch's users by length ``n`` batches at a
            time before cutting batches: less padding, lower accuracy (docs/benchmarks.md).
        test_step: validate every this many epochs (after epochs 0, test_step, 2·test_step, ...).
        patience: stop after this many validations without improvement.
        stop_metric: validation metric that selects the best epoch, ``NAME@K``.
        seed: seed for every random number generator.
        device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        log: ``tensorboard`` also writes each epoch's losses and validation metrics as TensorBoard
            scalars into ``RUN_DIR/tensorboard`` (``pip install "semrec[report]"``); ``none``: only
            ``history.jsonl``.
    """

    epochs: PositiveInt = 3000
    batch_size: PositiveInt = 4096
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    optimizer: choice("adam", "adamw") = "adam"
    adam_beta2: Probability = 0.999
    warmup_steps: NonNegativeInt = 0
    lr_decay: choice("none", "linear", "cosine") = "none"
    grad_clip: NonNegativeFloat = 0.0
    amp: bool = False
    negatives_per: choice(*NEGATIVES_PER) = "position"
    length_buckets: PositiveInt = LENGTH_BUCKETS
    test_step: PositiveInt = 3
    patience: PositiveInt = 5
    stop_metric: str = "recall@20"
    seed: Seed = 2023
    device: str = "auto"
    log: choice("none", "tensorboard") = "none"

    def __post_init__(self):
        check_fields(self)


@dataclass
class EvalConfig:
    """Ranking evaluation (see :mod:`semrec.encoder.evaluator`).

    Attributes:
        ks: cut-offs for every metric.
        metrics: any of recall, ndcg, precision, mrr, hit (hit is HR@K).
        batch_size: users scored at once.
        protocol: ``full`` (every item is a candidate) or ``sampled`` (the target against
            ``sampled_negatives`` unseen items, fixed per seed).
        exclude: with ``full``: remove the user's ``train`` items, their whole ``history`` before
            the split (train, and validation at test), or ``none``.
        sampled_negatives: candidates beside the target in the sampled protocol.
        groups: also report metrics for head/tail users and items.
        head_user_share: share of users with the longest histories that are "head" users.
        head_item_share: share of most popular training items that are "head" items.
        beyond: in the final evaluation, also coverage, average popularity, Gini, novelty, tail
            share and intra-list diversity of the top-k lists (:mod:`semrec.encoder.beyond`).
    """

    ks: list[PositiveInt] = field(default_factory=lambda: [5, 10, 20])
    metrics: list[str] = field(default_factory=lambda: ["recall", "ndcg", "precision", "mrr", "hit"])
    batch_size: PositiveInt = 1024
    protocol: choice("full", "sampled") = "full"
    exclude: choice("train", "history", "none") = "train"
    sampled_negatives: PositiveInt = 100
    groups: bool = False
    head_user_share: Probability = 0.2
    head_item_share: Probability = 0.2
    beyond: bool = True

    def __post_init__(self):
        check_fields(self)


@dataclass
class RunConfig:
    """Everything a training run needs, resolved from all layers."""

    model_name: str
    dataset: str
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model: dict[str, Any] = field(default_factory=dict)
    align: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = ("train", "eval", "model", "align")


def config_dir() -> Path:
    """The folder of model YAML files (the repository's ``configs/``)."""
    import semrec.configs

    return Path(next(iter(semrec.configs.__path__)))


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` to ``annotation`` (int, float, bool, str, list[...], optionally with a
    :class:`~semrec.common.hparams.Range`) or raise ConfigError."""
    inner, rng = range_of(annotation)
    if rng is not None:
        value = coerce(value, inner, key)
        problem = out_of_range(value, rng, key)
        if problem:
            raise ConfigError(problem)
        return value
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(annotation) or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], key)
    if annotation in (Any, inspect.Parameter.empty):
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isascii() and value.strip().lstrip("+-").isdigit():
            return int(value)  # exact: a long integer would lose digits through float
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)  # also accepts "1e-6", which YAML reads as a string
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _constructor_args(cls: type, skip: set[str]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    return {n: p.replace(annotation=hints.get(n, p.annotation)) for n, p in params.items()
            if n not in skip | {"self"} and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def model_hyperparameters(model_cls: type) -> dict[str, inspect.Parameter]:
    """The constructor arguments of a model (of its backbone, for aligned models) a config may set;
    a model that passes ``**table`` on to its item table (``table_cls``) also takes the table's
    settings."""
    model_cls = getattr(model_cls, "backbone_cls", model_cls)
    params = _constructor_args(model_cls, set(getattr(model_cls, "data_args", ())))
    table_cls = getattr(model_cls, "table_cls", None)
    takes_table = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(model_cls.__init__).parameters.values())
    if table_cls is not None and takes_table:
        params.update(_constructor_args(table_cls, set(table_cls.model_args) | set(table_cls.data_args)))
    return params


def align_hyperparameters(model_cls: type) -> dict[str, inspect.Parameter]:
    """The alignment's settable arguments (empty for models without alignment), plus the
    options of the semantic tables (``shuffle``, ``sem_dim``)."""
    align_cls = getattr(model_cls, "alignment_cls", None)
    if align_cls is None:
        return {}
    params = _constructor_args(align_cls, set(align_cls.data_args))
    for name, (kind, default) in getattr(model_cls, "table_options", {}).items():
        params[name] = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
    return params


class _Builder:
    def __init__(self, model_name: str, dataset: str, model_cls: type):
        self.cfg = RunConfig(model_name=model_name, dataset=dataset)
        self.params = {"model": model_hyperparameters(model_cls), "align": align_hyperparameters(model_cls)}
        for section, params in self.params.items():
            setattr(self.cfg, section, {n: p.default for n, p in params.items() if p.default is not p.empty})
        #: where each set value came from, ``"section.key" -> origin`` (the rest are defaults)
        self.origins: dict[str, str] = {}

    def set(self, section: str, key: str, value: Any, origin: str) -> None:
        where = f"{origin}: {section}.{key}"
        self.origins[f"{section}.{key}"] = origin
        if section in self.params:
            params = self.params[section]
            if not params and section == "align":
                raise ConfigError(f"{where}: {self.cfg.model_name} has no alignment; 'align' keys apply "
                                  f"to <backbone>_plus and <backbone>_gene models")
            if key not in params:
                raise ConfigError(f"{where} is not a hyperparameter of {self.cfg.model_name}; "
                                  f"valid keys: {', '.join(params) or '(none)'}")
            getattr(self.cfg, section)[key] = coerce(value, params[key].annotation, where)
            return
        obj = getattr(self.cfg, section)
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if key not in fields:
            raise ConfigError(f"{where} is unknown; valid keys in '{section}': {', '.join(fields)}")
        hint = typing.get_type_hints(type(obj), include_extras=True)[key]
        setattr(obj, key, coerce(value, hint, where))

    def apply(self, layer: dict[str, Any], origin: str, allow_datasets: bool = False) -> None:
        for section, values in (layer or {}).items():
            if section == "datasets" and allow_datasets:
                continue
            if section not in SECTIONS:
                valid = SECTIONS + (("datasets",) if allow_datasets else ())
                raise ConfigError(f"{origin}: unknown section {section!r}; valid sections: {', '.join(valid)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{origin}: section {section!r} must be a mapping")
            for key, value in values.items():
                self.set(section, str(key), value, origin)

    def check_complete(self) -> None:
        missing = [f"{s}.{n}" for s, params in self.params.items() for n in params
                   if n not in getattr(self.cfg, s)]
        if missing:
            raise ConfigError(f"{self.cfg.model_name}: no value for required hyperparameter(s) "
                              f"{', '.join(missing)}; set them in the model YAML or with --set model.NAME=V")


def parse_overrides(items: list[str]) -> list[tuple[str, str, Any]]:
    """``["train.lr=0.01", "model.layers=2"]`` -> ``[("train", "lr", 0.01), ("model", "layers", 2)]``."""
    out = []
    for item in items:
        key, eq, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.lr=0.001 "
                              f"(sections: {', '.join(SECTIONS)})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((section, name, value))
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; ConfigError naming the file for anything else (a folder,
    text that is not UTF-8, invalid YAML)."""
    from semrec.common.io import read_text

    try:
        content = yaml.safe_load(read_text(path, ConfigError)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return content


def resolve_config(model_name: str, dataset: str, model_cls: type, overrides: list[str] = (),
                   config_file: Path | None = None, origins: dict[str, str] | None = None) -> RunConfig:
    """Build the run configuration from all layers (see the module docstring); ``origins``, when
    given, is filled with where each value not left at its default came from."""
    b = _Builder(model_name, dataset, model_cls)
    if origins is not None:
        b.origins = origins
    if config_file is not None:
        if not Path(config_file).exists():
            raise ConfigError(f"config file {config_file} does not exist")
        files = [Path(config_file)]
    else:  # an aligned model starts from its backbone's file, then its own
        backbone = getattr(model_cls, "backbone_cls", None)
        names = ([backbone.registered_name] if backbone is not None else []) + [model_name]
        files = [p for p in (config_dir() / f"{n}.yaml" for n in names) if p.exists()]
    layers = [(path, read_yaml(path)) for path in files]
    for path, layer in layers:  # every file's top level (the backbone's, then the aligned model's) ...
        b.apply(layer, str(path), allow_datasets=True)
    for path, layer in layers:  # ... then every file's section for this dataset
        per_dataset = layer.get("datasets") or {}
        if not isinstance(per_dataset, dict):
            raise ConfigError(f"{path}: 'datasets' must map dataset names to sections")
        section = per_dataset.get(dataset) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: datasets.{dataset} must be a mapping of sections")
        b.apply(section, f"{path} [datasets.{dataset}]")
    for section, key, value in parse_overrides(list(overrides)):
        if section not in SECTIONS:
            raise ConfigError(f"--set {section}.{key}: unknown section {section!r}; valid sections: "
                              f"{', '.join(SECTIONS)}")
        b.set(section, key, value, "--set")
    b.check_complete()
    return b.cfg


def config_from_dict(d: dict[str, Any], model_cls: type) -> RunConfig:
    """Rebuild a saved (resolved) configuration, re-checking every key."""
    b = _Builder(d["model_name"], d["dataset"], model_cls)
    layers = {s: dict(d.get(s) or {}) for s in SECTIONS}
    b.apply(layers, "saved config")
    b.check_complete()
    return b.cfg
