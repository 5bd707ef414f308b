"""ablate: a grid of data filters trained, evaluated and compared in one command.

* :func:`ablate` - pool -> per-arm curate -> train -> evaluate -> comparison report.
* :class:`AblationConfig` / :func:`load_ablation_config` - the YAML (see examples/).
* :func:`print_plan` - one `pairlab train` / `evaluate` command per arm, for schedulers.
"""
from __future__ import annotations

from .config import AblationConfig, Arm, Budget, PoolSettings, load_ablation_config
from .pipeline import Layout, ablate, plan_commands, prepare, print_plan

__all__ = ["AblationConfig", "Arm", "Budget", "Layout", "PoolSettings", "ablate", "load_ablation_config",
           "plan_commands", "prepare", "print_plan"]
