"""Held-out evaluation of a trained adapter (or a bare model) on preference pairs.

* :func:`evaluate` - pairs + run directory (or model spec) -> EVAL_DIR
  (``per_pair.parquet``, ``metrics.json``, ``generations.parquet``, ``manifest.json``).
* :func:`compare` / :func:`write_comparison` - McNemar and paired bootstrap between
  evaluations on the same pairs (``comparison.json``).
* :class:`EvalConfig` / :func:`load_eval_config` - YAML + ``key=value`` overrides.
* :mod:`.metrics`, :mod:`.stats` - the pure per-pair and aggregate computations.

Heavy imports (torch, TRL) happen when :func:`evaluate` runs.
"""
from __future__ import annotations

from .config import EvalConfig, load_eval_config

__all__ = ["EvalConfig", "EvalResult", "compare", "evaluate", "load_eval_config", "write_comparison"]


def __getattr__(name):
    if name in ("evaluate", "EvalResult"):
        from . import runner

        return getattr(runner, name)
    if name in ("compare", "write_comparison"):
        from . import comparison

        return getattr(comparison, name)
    raise AttributeError(name)
