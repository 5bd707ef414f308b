"""``--executor slurm``: three jobs chained with ``afterok``, through submitit.

::

    prefill   (1 task)      pool, curation, the reference prefill
    arms      (array job)   one task per unfinished arm x seed        afterok:prefill
    report    (1 task)      base evaluation, comparison, report       afterok:arms

Partition, GPUs and CPUs per task, memory, time limits, account, setup lines and extra
#SBATCH options come from the config's ``executor.slurm``. ``--dry-run`` submits nothing:
it writes ``prefill.sbatch``, ``arms.sbatch``, ``report.sbatch`` (rendered by submitit's own
sbatch writer, with the same parameters a real submission uses; each runs
``pairlab ablate --step``) and ``submit.sh``, which submits them with the dependency chain.
``executor.slurm.cluster: local`` runs the same jobs as local processes (submitit's local
executor, which knows no dependencies: each job is waited for before the next is submitted).
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from .. import artifacts
from ..dirs import AblationDir
from ..extras import require
from .config import SlurmSettings

STEPS = ("prefill", "arms", "report")


def folder_of(cfg, out_dir: str) -> Path:
    return Path(cfg.executor.folder) if cfg.executor.folder else Path(out_dir) / "slurm"


def sbatch_parameters(slurm: SlurmSettings, step: str, *, job_name: str, n_tasks: int = 1) -> dict[str, Any]:
    """The job's parameters, named as submitit's sbatch writer names them (one source for both paths)."""
    params: dict[str, Any] = {
        "job_name": f"{job_name}-{step}", "partition": slurm.partition,
        "time": {"prefill": slurm.prefill_time_min, "arms": slurm.time_min, "report": slurm.report_time_min}[step],
        "cpus_per_task": slurm.cpus_per_task, "gpus_per_task": slurm.gpus_per_task or None,
        "mem": f"{slurm.mem_gb}GB" if slurm.mem_gb else None, "account": slurm.account,
        "setup": list(slurm.setup) or None, "additional_parameters": dict(slurm.additional) or None}
    if step == "arms":
        params.update(map_count=n_tasks, array_parallelism=slurm.array_parallelism)
    return {k: v for k, v in params.items() if v is not None}


def _executor_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """sbatch_parameters -> submitit.AutoExecutor.update_parameters names."""
    generic = {"job_name": "name", "time": "timeout_min", "cpus_per_task": "cpus_per_task"}
    out = {}
    for key, value in params.items():
        if key == "map_count":
            continue
        out[generic.get(key, f"slurm_{key}")] = value
    return out


def _job_name(cfg) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in cfg.name)[:40] or "ablation"


def write_scripts(cfg, out_dir: str) -> dict[str, Path]:
    """The dry run: the resolved config, three sbatch scripts and submit.sh under the folder."""
    require("submitit")
    from submitit.slurm.slurm import _make_sbatch_string

    from ..ablate.steps import grid

    folder = folder_of(cfg, out_dir)
    config = artifacts.write_text(folder / AblationDir.CONFIG, yaml.safe_dump(asdict(cfg), sort_keys=False))
    base = (f"{shlex.quote(sys.executable)} -m pairlab ablate --config {shlex.quote(str(config))} "
            f"--out {shlex.quote(str(out_dir))}")
    commands = {"prefill": f"{base} --step prefill", "arms": f'{base} --step arm --task "$SLURM_ARRAY_TASK_ID"',
                "report": f"{base} --step report"}
    paths = {"config": config}
    for step in STEPS:
        params = sbatch_parameters(cfg.executor.slurm, step, job_name=_job_name(cfg), n_tasks=len(grid(cfg)))
        text = _make_sbatch_string(command=commands[step], folder=str(folder / "logs" / "%j"), **params)
        paths[step] = artifacts.write_text(folder / f"{step}.sbatch", text)
    paths["submit"] = artifacts.write_text(folder / "submit.sh", "\n".join([
        "#!/bin/bash",
        "# Submit the ablation: prefill -> arms (array) -> report, each afterok on the one before.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "prefill=$(sbatch --parsable prefill.sbatch); prefill=${prefill%%;*}",
        "arms=$(sbatch --parsable --dependency=afterok:${prefill} arms.sbatch); arms=${arms%%;*}",
        "report=$(sbatch --parsable --dependency=afterok:${arms} report.sbatch); report=${report%%;*}",
        'echo "prefill ${prefill}  arms ${arms}  report ${report}"',
        ""]))
    paths["submit"].chmod(0o755)
    return paths


def run(cfg, out_dir: str, *, progress: bool = True, dry_run: bool = False) -> dict[str, Any]:
    if dry_run:
        paths = write_scripts(cfg, out_dir)
        return {"dry_run": True, "scripts": {k: str(v) for k, v in paths.items()}}
    submitit = require("submitit")
    from ..ablate import steps
    from ..ablate.pipeline import Layout

    slurm = cfg.executor.slurm
    on_slurm = slurm.cluster == "slurm"
    folder = folder_of(cfg, out_dir)
    executor = submitit.AutoExecutor(folder=folder / "jobs" / "%j", cluster=slurm.cluster)
    name = _job_name(cfg)

    def parameters(step: str, n_tasks: int = 1, after: str | None = None) -> None:
        params = sbatch_parameters(slurm, step, job_name=name, n_tasks=n_tasks)
        if after and on_slurm:
            params["additional_parameters"] = {**params.get("additional_parameters", {}),
                                               "dependency": f"afterok:{after}"}
        executor.update_parameters(**_executor_parameters(params))

    parameters("prefill")
    prefill = executor.submit(steps.prefill_step, cfg, out_dir)
    if not on_slurm:
        prefill.result()  # the local executor has no afterok: wait here instead
    layout = Layout(Path(out_dir))
    todo = [(a, s) for a, s in steps.grid(cfg) if not steps.is_finished(layout, a, s)]
    after = prefill.job_id
    arm_jobs = []
    if todo:
        parameters("arms", n_tasks=len(todo), after=prefill.job_id)
        arm_jobs = executor.map_array(steps.arm_step, [cfg] * len(todo), [out_dir] * len(todo),
                                      [a for a, _ in todo], [s for _, s in todo])
        after = arm_jobs[0].job_id.split("_")[0]  # afterok on an array job waits for all its tasks
        if not on_slurm:
            for job in arm_jobs:
                job.result()
    parameters("report", after=after)
    report = executor.submit(steps.report_step, cfg, out_dir)
    submitted = {"prefill": prefill.job_id, "arms": [j.job_id for j in arm_jobs], "report": report.job_id,
                 "folder": str(folder)}
    if on_slurm:
        return {"submitted": submitted}
    comparison = report.result()
    comparison["submitted"] = submitted
    return comparison
