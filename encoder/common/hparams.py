"""Value ranges of hyperparameters, declared in the type of a constructor argument or config field.

A model writes ``dim: PositiveInt = 32`` instead of ``dim: int = 32``; the configuration builder
(:mod:`semrec.encoder.config`), the one place where typed settings are made from files and the
command line, converts the value to ``int`` and checks it against the range, with the valid
range in the error message. ``Annotated`` keeps these plain ``int`` / ``float`` for type
checkers and for callers that build a model in Python.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any


@dataclass(frozen=True)
class Range:
    """Closed (or, with ``open_low`` / ``open_high``, half-open) interval a number must lie in;
    ``None`` is unbounded. NaN and infinities lie in none: no setting means them."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        def show(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        lo = "-inf" if self.low is None else show(self.low)
        hi = "inf" if self.high is None else show(self.high)
        closed_high = self.high is not None and not self.open_high
        return f"{'(' if self.open_low or self.low is None else '['}{lo}, {hi}{']' if closed_high else ')'}"

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or value < self.high or (value == self.high and not self.open_high)


@dataclass(frozen=True)
class OneOf:
    """The values a string setting may take."""

    choices: tuple[str, ...]

    def describe(self) -> str:
        return ", ".join(self.choices)

    def contains(self, value: Any) -> bool:
        return value in self.choices


def choice(*values: str) -> Any:
    """``Annotated[str, OneOf(values)]``: a string setting with a fixed set of values."""
    return Annotated[str, OneOf(tuple(values))]


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, open_low=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Probability = Annotated[float, Range(0, 1)]
#: a dropout rate: 1 would zero every activation
DropoutRate = Annotated[float, Range(0, 1, open_high=True)]
#: a share of edges kept: 0 would keep none
KeepRate = Annotated[float, Range(0, 1, open_low=True)]
#: a share strictly between none and all (a mask ratio)
OpenUnit = Annotated[float, Range(0, 1, open_low=True, open_high=True)]
#: a random seed (torch takes at most 64 bits)
Seed = Annotated[int, Range(0, 2**63 - 1)]


def range_of(annotation: Any) -> tuple[Any, Range | OneOf | None]:
    """``(inner type, Range / OneOf or None)`` of a possibly ``Annotated`` type."""
    if typing.get_origin(annotation) is Annotated:
        inner, *meta = typing.get_args(annotation)
        return inner, next((m for m in meta if isinstance(m, (Range, OneOf))), None)
    return annotation, None


def out_of_range(value: Any, rng: Range | OneOf | None, key: str) -> str | None:
    """The error message when ``value`` is outside ``rng``, else None."""
    if isinstance(rng, OneOf) and not rng.contains(value):
        return f"{key}: {value!r} is not a valid choice; valid values: {rng.describe()}"
    if isinstance(rng, Range) and isinstance(value, (int, float)) and not rng.contains(value):
        return f"{key}: {value!r} is out of range; valid values: {rng.describe()}"
    return None


def check_range(value: Any, annotation: Any, key: str) -> None:
    """Raise ValueError naming ``key`` and the valid range when ``value`` lies outside it."""
    problem = out_of_range(value, range_of(annotation)[1], key)
    if problem:
        raise ValueError(problem)


def check_fields(obj: Any) -> None:
    """Check every ranged field of the dataclass instance ``obj`` (lists element by element)."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        hint, value = hints[f.name], getattr(obj, f.name)
        if typing.get_origin(hint) is list and isinstance(value, (list, tuple)):
            (inner,) = typing.get_args(hint)
            for i, v in enumerate(value):
                check_range(v, inner, f"{type(obj).__name__}.{f.name}[{i}]")
        else:
            check_range(value, hint, f"{type(obj).__name__}.{f.name}")
