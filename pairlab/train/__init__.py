"""DPO training through TRL with the shared reference cache and per-pair dynamics; resume.

* :func:`train` - pairs table (or ``pairs.parquet``) + :class:`TrainConfig` -> run directory.
* :class:`TrainConfig` / :func:`load_train_config` - YAML + ``key=value`` overrides; every
  ``trl.DPOConfig`` field under ``dpo:``.
* :data:`DYNAMICS_COLUMNS` - what ``dynamics.parquet`` holds.

Heavy imports (torch, TRL) happen when :func:`train` runs, so importing this package is cheap.
"""
from __future__ import annotations

from .config import LoraSettings, TrainConfig, load_train_config
from .dynamics import DYNAMICS_COLUMNS

__all__ = ["DYNAMICS_COLUMNS", "LoraSettings", "TrainConfig", "TrainResult", "load_train_config", "train"]


def __getattr__(name):
    if name in ("train", "TrainResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
