"""A small name -> metric registry.

A metric is `fn(pred, target) -> np.ndarray` of per-frame values for clips (T, H, W, 3)
(see structvid.metrics.pixel for the accepted dtypes and value ranges).
"""

from __future__ import annotations

import importlib
from typing import Callable, Iterable

import numpy as np

from structvid.errors import UserError

__all__ = ["Metric", "register", "get", "available", "compute"]

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]

_METRICS: dict[str, Metric] = {}
# modules that register built-in metrics; imported lazily so importing the registry stays cheap
BUILTIN_MODULES: list[str] = ["structvid.metrics.pixel"]


def register(name: str) -> Callable[[Metric], Metric]:
    """Decorator: register `fn` under `name` (names are unique)."""

    def deco(fn: Metric) -> Metric:
        if name in _METRICS and _METRICS[name] is not fn:
            raise ValueError(f"metric {name!r} is already registered")
        _METRICS[name] = fn
        return fn

    return deco


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available() -> list[str]:
    """Sorted names of all registered metrics."""
    _load_builtins()
    return sorted(_METRICS)


def get(name: str) -> Metric:
    """The metric registered as `name`; UserError listing the available ones if there is none."""
    _load_builtins()
    if name not in _METRICS:
        raise UserError(f"unknown metric {name!r}; available: {', '.join(sorted(_METRICS))}")
    return _METRICS[name]


def compute(names: Iterable[str], pred: np.ndarray, target: np.ndarray) -> dict[str, dict]:
    """Evaluate metrics: name -> {"per_frame": [float, ...], "mean": float}."""
    fns = {name: get(name) for name in names}  # fail on a bad name before computing anything
    out: dict[str, dict] = {}
    for name, fn in fns.items():
        values = np.asarray(fn(pred, target), dtype=np.float64).ravel()
        out[name] = {"per_frame": values.tolist(), "mean": float(values.mean())}
    return out
