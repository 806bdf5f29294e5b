"""Optional dependencies: import one, or say which ``pip install "semrec[extra]"`` brings it."""
from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module``, or MissingExtra naming ``what`` needs it and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(f"{what} needs {module.split('.')[0]} ({e.name or module} is not installed): "
                           f'pip install "semrec[{extra}]"') from None
