"""Name → model class registry.

Built-in models register themselves with ``@register("name")`` when
:mod:`semrec.encoder.models` is imported; users register their own the same way::

    from semrec.encoder.registry import register

    @register("mymodel")
    class MyModel(GraphRecommender): ...

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


def available_models() -> list[str]:
    """Every model name that :func:`get_model_class` accepts, sorted."""
    _load_builtin()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    """The class registered under ``name``; a typo gets the list of valid names."""
    _load_builtin()
    try:
        return _MODELS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid models: {', '.join(sorted(_MODELS))}") from None
