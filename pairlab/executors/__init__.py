"""Executors: the same ablation step graph (:mod:`pairlab.ablate.steps`) run here, on Ray or on Slurm.

* ``local`` - every step in this process, one after the other (``pairlab ablate``'s default).
* ``ray`` - each arm x seed a Ray task with declared resources (``executor.num_gpus`` /
  ``num_cpus``), after the prefill task; finished runs get no task. Needs ``pairlab[cluster]``.
* ``slurm`` - through submitit: a prefill job, an array job of the arms (``afterok`` on
  the prefill), a report job (``afterok`` on the array). ``--dry-run`` writes the sbatch
  scripts and ``submit.sh`` instead. Needs ``pairlab[cluster]``.

Each executor is ``run(cfg, out_dir, *, progress, dry_run) -> dict`` (the comparison, or
what was submitted), registered by name in :data:`EXECUTORS`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .config import ExecutorSettings, SlurmSettings


def _local(cfg, out_dir, *, progress: bool = True, dry_run: bool = False) -> dict[str, Any]:
    from ..ablate.pipeline import ablate

    return ablate(cfg, out_dir, progress=progress)


def _ray(cfg, out_dir, **kwargs) -> dict[str, Any]:
    from .ray_executor import run

    return run(cfg, out_dir, **kwargs)


def _slurm(cfg, out_dir, **kwargs) -> dict[str, Any]:
    from .slurm_executor import run

    return run(cfg, out_dir, **kwargs)


#: Executor name -> ``run(cfg, out_dir, *, progress, dry_run)``.
EXECUTORS: dict[str, Callable[..., dict[str, Any]]] = {"local": _local, "ray": _ray, "slurm": _slurm}

#: Environment a worker process needs to see what the driver sees (caches, offline hub, trackers).
FORWARDED_ENV_PREFIXES = ("PAIRLAB_", "HF_", "TRANSFORMERS_", "WANDB_", "TQDM_", "OMP_NUM_THREADS",
                          "TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES")


def worker_env(executor: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    env["PAIRLAB_EXECUTOR"] = executor
    return env


def run_ablation(cfg, out_dir: str | os.PathLike, *, executor: str | None = None, progress: bool = True,
                 dry_run: bool = False) -> dict[str, Any]:
    """Run (or resume) an ablation with ``executor`` (default: the config's ``executor.name``)."""
    name = executor or cfg.executor.name
    cfg.executor.name = name
    cfg.validate()
    return EXECUTORS[name](cfg, str(Path(out_dir).resolve()), progress=progress, dry_run=dry_run)


__all__ = ["EXECUTORS", "ExecutorSettings", "SlurmSettings", "run_ablation", "worker_env"]
