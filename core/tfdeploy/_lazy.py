"""Module attributes imported on first use (PEP 562), for the facades that re-export names."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def exports(
    module: str, names: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``module``, whose public ``names`` map to the module
    defining each (a name that is itself a module maps to its package). A resolved name is
    stored in ``namespace`` so the lookup happens once."""

    def getattr_(name: str) -> Any:
        source = names.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(source), name)
        except AttributeError:
            value = importlib.import_module(f"{source}.{name}")
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(namespace.get("__all__", names))

    return getattr_, dir_
