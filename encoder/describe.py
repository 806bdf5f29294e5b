"""What the command line prints about models: the list by family, and every knob of one model.

``--list-models`` groups the registered names by family, one line each (the paper a model
implements, from its module's first docstring line). ``--show-config MODEL [--dataset D]`` prints
every setting the run would use (``train.*``, ``eval.*``, ``model.*``, ``align.*``): its resolved
value, its type and range, where the value came from, and its meaning, read from the docstrings
of the classes that take it (their Google-style ``Args:`` / ``Attributes:`` sections).
"""
from __future__ import annotations

import inspect
import re
import sys
import typing
from typing import Any

from semrec.common.hparams import OneOf, Range, range_of

_ENTRY = re.compile(r"^(\s+)(\*{0,2}[A-Za-z_][\w, *]*):\s*(.*)$")


def arg_docs(cls: type) -> dict[str, str]:
    """``name -> text`` of the ``Args:`` / ``Attributes:`` entries of ``cls``'s docstring, and of
    its bases' where ``cls`` defers to them (an entry that says ``see`` or ``as``)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for name, text in _parse(inspect.getdoc(klass) or "").items():
            if name not in docs or not re.match(r"(see|as)\b", text):
                docs[name] = text
    return docs


def _parse(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    section, indent, current = False, None, []
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Attributes:"):
            section, indent, current = True, None, []
            continue
        if not section:
            continue
        if line.strip() and not line.startswith(" "):
            section = False
            continue
        found = _ENTRY.match(line)
        if found and (indent is None or len(found.group(1)) == indent):
            indent = len(found.group(1))
            current = [n.strip().lstrip("*") for n in found.group(2).split(",") if n.strip()]
            for n in current:
                out[n] = found.group(3).strip()
        elif current and line.strip():
            for n in current:
                out[n] += " " + line.strip()
    return {n: _first_sentence(t) for n, t in out.items()}


def _first_sentence(text: str) -> str:
    text = re.sub(r":(class|func|meth|mod|data):`~?([^`]+)`", lambda m: m.group(2).split(".")[-1], text)
    text = text.replace("``", "")
    cut = re.search(r"(?<=[a-z0-9)])\. ", text)
    return text[: cut.start() + 1] if cut else text


def describe_type(annotation: Any) -> str:
    """``int >= 1``, ``float in (0, 1]``, ``one of a, b`` ..."""
    inner, rng = range_of(annotation)
    origin = typing.get_origin(inner)
    if origin in (list, tuple):
        (item,) = typing.get_args(inner)[:1] or (Any,)
        return f"list of {describe_type(item)}"
    if origin is typing.Union:
        inner = next((a for a in typing.get_args(inner) if a is not type(None)), inner)
    name = getattr(inner, "__name__", str(inner))
    if isinstance(rng, OneOf):
        return f"one of {rng.describe()}"
    if isinstance(rng, Range):
        return f"{name} in {rng.describe()}"
    return name


def show_config(model: str, dataset: str, out=None) -> None:
    """Print every setting of ``model`` as resolved for ``dataset`` (module docstring)."""
    from semrec.encoder.config import EvalConfig, RunConfig, TrainConfig, align_hyperparameters, \
        model_hyperparameters, resolve_config
    from semrec.encoder.registry import get_model_class

    out = out or sys.stdout
    cls = get_model_class(model)
    origins: dict[str, str] = {}
    cfg: RunConfig = resolve_config(model, dataset, cls, origins=origins)
    backbone = getattr(cls, "backbone_cls", cls)
    docs = {"train": arg_docs(TrainConfig), "eval": arg_docs(EvalConfig),
            "model": {**arg_docs(getattr(backbone, "table_cls", object)), **arg_docs(backbone)},
            "align": {**({"shuffle": "permute the semantic rows among users and items (the control run).",
                          "sem_dim": "if > 0, the PCA width the semantic tables are reduced to first."}),
                      **arg_docs(getattr(cls, "alignment_cls", object))}}
    types = {"train": typing.get_type_hints(TrainConfig, include_extras=True),
             "eval": typing.get_type_hints(EvalConfig, include_extras=True),
             "model": {n: p.annotation for n, p in model_hyperparameters(cls).items()},
             "align": {n: p.annotation for n, p in align_hyperparameters(cls).items()}}
    rows = []
    for section in ("model", "align", "train", "eval"):
        values = getattr(cfg, section)
        values = values if isinstance(values, dict) else {f: getattr(values, f) for f in types[section]}
        for key, value in values.items():
            origin = origins.get(f"{section}.{key}", "default")
            origin = origin.rsplit("/", 1)[-1]
            rows.append((f"{section}.{key}", _show(value), describe_type(types[section].get(key, Any)), origin,
                         docs[section].get(key, "")))
    print(f"{model} on {dataset}: {_title(sys.modules[backbone.__module__].__doc__)}", file=out)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4], file=out)


def _title(doc: str | None, width: int = 100) -> str:
    """A module docstring's first paragraph on one line, cut to ``width``."""
    first = " ".join((doc or "").strip().split("\n\n")[0].split())
    first = re.sub(r"\s*\(?(reference code: )?https?://\S+", "", first).rstrip(" (")
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def list_models(out=None) -> None:
    """Print every model name grouped by family, one line each."""
    from semrec.encoder.models.graph.base import GraphRecommender
    from semrec.encoder.models.sequential.base import SequentialRecommender
    from semrec.encoder.registry import available_models, get_model_class

    out = out or sys.stdout
    groups: dict[str, list[tuple[str, str]]] = {"baselines": [], "graph": [], "sequential": [],
                                                "aligned (RLMRec)": [], "other": []}
    for name in available_models():
        cls = get_model_class(name)
        backbone = getattr(cls, "backbone_cls", None)
        if backbone is not None:
            kind = "contrastive alignment (RLMRec-Con)" if name.endswith("_plus") else \
                "generative alignment (RLMRec-Gen)"
            groups["aligned (RLMRec)"].append((name, f"{backbone.registered_name} with {kind}"))
            continue
        family = "baselines" if cls.__module__.endswith(".baselines") else \
            "graph" if issubclass(cls, GraphRecommender) else \
            "sequential" if issubclass(cls, SequentialRecommender) else "other"
        # the baselines share a module: each is described by its own class
        doc = cls.__doc__ if family == "baselines" else sys.modules[cls.__module__].__doc__ or cls.__doc__
        groups[family].append((name, _title(doc)))
    width = max(len(n) for g in groups.values() for n, _ in g)
    for family, entries in groups.items():
        if entries:
            print(f"{family}:", file=out)
            for name, line in entries:
                print(f"  {name.ljust(width)}  {line}", file=out)
