"""Optional extras: the core install stays lean; a feature that needs an extra says how to get it.

``pairlab[cluster]`` (ray, submitit) runs an ablation grid on Ray or Slurm;
``pairlab[tracking]`` (tensorboard, wandb) logs it to a tracker. ``make install`` installs both.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import PairlabError

#: import name -> (extra, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "ray": ("cluster", "--executor ray"),
    "submitit": ("cluster", "--executor slurm"),
    "tensorboard": ("tracking", "report_to: tensorboard"),
    "wandb": ("tracking", "report_to: wandb"),
}


class MissingExtraError(PairlabError):
    """A feature needs an optional dependency that is not installed (exit 2)."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra, feature = EXTRAS[module.split(".")[0]]
        raise MissingExtraError(f"{feature} needs the '{module.split('.')[0]}' package, which is not installed",
                                hint=f"pip install 'pairlab[{extra}]'") from None
