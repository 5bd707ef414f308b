"""``--executor ray``: the prefill, then each unfinished arm x seed as a Ray task, then the report here.

Each arm task declares ``executor.num_gpus`` GPUs (0: CPU only) and ``executor.num_cpus``
CPUs, so Ray packs as many runs per machine as fit. The arm tasks take the prefill's result
as an argument: Ray starts none of them before the shared reference cache is filled.
``executor.ray_address`` joins a running cluster (every node must see DIR and
``$PAIRLAB_CACHE`` on a shared file system); without it a local instance is started.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..extras import require

log = logging.getLogger("pairlab.executors")


def run(cfg, out_dir: str, *, progress: bool = True, dry_run: bool = False) -> dict[str, Any]:
    ray = require("ray")
    from ..ablate import steps
    from ..ablate.pipeline import Layout
    from . import worker_env

    settings = cfg.executor
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {"runtime_env": {"env_vars": worker_env("ray")}, "log_to_driver": False,
                                "configure_logging": False}
        if settings.ray_address:
            init["address"] = settings.ray_address
        else:  # a small local instance: no dashboard, a modest object store (steps exchange files, not objects)
            init.update(num_cpus=settings.ray_num_cpus, include_dashboard=False,
                        object_store_memory=256 * 2**20)
        ray.init(**init)
    try:
        resources = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus, "max_retries": 0}
        prefill = ray.remote(**resources)(steps.prefill_step).options(name="prefill").remote(cfg, out_dir)
        layout = Layout(Path(out_dir))
        arm_task = ray.remote(**resources)(steps.arm_step)
        pending = {}
        for arm, seed in steps.grid(cfg):
            if steps.is_finished(layout, arm, seed):
                log.info("%s/seed%d finished: no task", arm, seed)
                continue
            pending[(arm, seed)] = arm_task.options(name=f"{arm}/seed{seed}").remote(cfg, out_dir, arm, seed, prefill)
        ray.get([prefill, *pending.values()])  # a failed task raises here, before any report
        return steps.report_step(cfg, out_dir)
    finally:
        if started_here:
            ray.shutdown()
