"""`pairlab ablate --executor / --dry-run / --step`: the executor side of the ablate command."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..dirs import AblationDir


def run_executor(cfg, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run a step, or the grid on an executor. Returns the comparison to print, or None when
    there is none yet (a step ran, scripts were written, jobs were submitted)."""
    from . import run_ablation

    name = args.executor or cfg.executor.name
    for flag, given in (("--plan", args.plan), ("--report-only", args.report_only), ("--overwrite", args.overwrite)):
        if given:
            raise ConfigError(f"not with --executor {name} / --step / --dry-run", field=flag,
                              hint="run it with the local executor (the default)")
    if args.dry_run and name != "slurm":
        raise ConfigError("--dry-run writes sbatch scripts: it needs --executor slurm", field="--dry-run")
    if args.step:
        run_step(cfg, args.out, args.step, args.task)
        return None
    result = run_ablation(cfg, args.out, executor=name, progress=not args.no_progress, dry_run=args.dry_run)
    if result.get("dry_run"):
        scripts = result["scripts"]
        print(f"wrote {scripts['prefill']}, {scripts['arms']}, {scripts['report']}")
        print(f"submit with: bash {scripts['submit']}")
        return None
    if "arms" not in result:
        jobs = result["submitted"]
        print(f"submitted: prefill {jobs['prefill']}, arms {', '.join(jobs['arms']) or '(all finished)'}, "
              f"report {jobs['report']} (logs under {jobs['folder']}); the report job writes "
              f"{Path(args.out) / AblationDir.REPORT}")
        return None
    return result


def run_step(cfg, out_dir: str, step: str, task: int | None) -> None:
    from ..ablate import steps

    out_dir = str(Path(out_dir).resolve())
    if step == "prefill":
        done = steps.prefill_step(cfg, out_dir)
        print(f"reference prefill: {done['computed']} pairs computed ({done['seconds']:.1f} s)")
    elif step == "arm":
        if task is None and os.environ.get("SLURM_ARRAY_TASK_ID", "").isdigit():
            task = int(os.environ["SLURM_ARRAY_TASK_ID"])
        tasks = steps.grid(cfg)
        if task is None or not 0 <= task < len(tasks):
            raise ConfigError(f"needs a task index in 0..{len(tasks) - 1}", field="--task",
                              hint="arms in config order, seeds inside each arm")
        arm, seed = tasks[task]
        event = steps.arm_step(cfg, out_dir, arm, seed)
        print(f"{arm}/seed{seed}: train {event['train']['state']}, evaluate {event['evaluate']}")
    else:
        result = steps.report_step(cfg, out_dir)
        print(f"comparison report: {result['report']}")
