"""Name → model class registry.

Built-in models register themselves with ``@register("name")`` when
:mod:`semrec.encoder.models` is imported; users register their own the same way::

    from semrec.encoder.registry import register

    @register("mymodel")
    class MyModel(GraphRecommender): ...

Every backbone also resolves as ``<name>_plus`` (contrastive alignment) and ``<name>_gene``
(generative alignment), composed by :mod:`semrec.encoder.align`, with no per-backbone code.
An unknown name raises an error that lists every valid choice.
"""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)

_MODELS: dict[str, type] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator that makes a model available under ``name`` (lower case)."""
    key = name.lower()

    def deco(cls: T) -> T:
        if key in _MODELS and _MODELS[key] is not cls:
            raise ValueError(f"model name {key!r} is already registered to {_MODELS[key].__qualname__}")
        _MODELS[key] = cls
        cls.registered_name = key
        return cls

    return deco


def _load_builtin() -> None:
    import semrec.encoder.models  # noqa: F401  (registers the built-in models)


ALIGNMENT_SUFFIXES = ("plus", "gene")


def _alignable(cls: type) -> bool:
    """Has what :class:`~semrec.encoder.models.base.AlignableBackbone` lists (``dim`` and ``out_dim``
    are set per instance, so only the methods and class attributes are looked for)."""
    from semrec.encoder.models.base import ALIGNABLE_MEMBERS

    return getattr(cls, "alignable", True) and all(
        hasattr(cls, m) for m in ALIGNABLE_MEMBERS if m not in ("dim", "out_dim"))


def available_models() -> list[str]:
    """Every model name that :func:`get_model_class` accepts, sorted."""
    _load_builtin()
    names = set(_MODELS)
    names |= {f"{n}_{s}" for n, c in _MODELS.items() if _alignable(c) for s in ALIGNMENT_SUFFIXES}
    return sorted(names)


def get_model_class(name: str) -> type:
    """The class registered under ``name`` (or composed for ``<backbone>_plus|_gene``)."""
    _load_builtin()
    key = name.lower()
    if key in _MODELS:
        return _MODELS[key]
    base, _, suffix = key.rpartition("_")
    if suffix in ALIGNMENT_SUFFIXES and base in _MODELS and _alignable(_MODELS[base]):
        from semrec.encoder.align import aligned_model_class

        return aligned_model_class(_MODELS[base], suffix)
    raise KeyError(f"unknown model {name!r}; valid models: {', '.join(available_models())}")


def build_model(name: str, data, model: dict | None = None, align: dict | None = None):
    """Instantiate model ``name`` for a dataset with its resolved ``model.*`` and ``align.*`` settings."""
    cls = get_model_class(name)
    return cls.from_data(data, **(model or {}), **({"align": align} if align else {}))
