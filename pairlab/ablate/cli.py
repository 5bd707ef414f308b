"""`pairlab ablate`: parse arguments, load the config, call :func:`pairlab.ablate.ablate`."""
from __future__ import annotations

import argparse

from ..cli import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="YAML",
                        help="ablation config (see examples/ablation-demo.yaml)")
    parser.add_argument("--out", required=True, metavar="DIR", help="ablation directory (re-use it to resume)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a top-level config field, e.g. seeds=[0,1]; repeatable")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true",
                      help="prepare the pool and every arm's subset, then print one train/evaluate command "
                           "per arm and seed (for Slurm, Ray jobs, ...) instead of running them")
    mode.add_argument("--report-only", action="store_true",
                      help="gather the outputs already in DIR into comparison.json and report.html")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    from .config import load_ablation_config
    from .pipeline import ablate, print_plan

    cfg = load_ablation_config(args.config, args.overrides)
    if args.plan:
        print_plan(cfg, args.out, args.config)
        return 0
    result = ablate(cfg, args.out, report_only=args.report_only, progress=not args.no_progress)
    for arm in result["arms"]:
        acc = arm["accuracy"]["mean"]
        noise = arm["true_label_noise"]
        print(f"  {arm['name']:<24} kept {arm['pairs_kept']!s:>6}  "
              + (f"accuracy {acc:.3f}" if acc is not None else "accuracy  (not run)")
              + (f"  true label noise {noise:.1%}" if noise is not None else ""))
    if not result["complete"]:
        print("some runs are missing: run the --plan commands (or ablate without --report-only)")
    print(f"comparison report: {result['report']}")
    return 0


COMMANDS = [
    Command("ablate", "the main job: a grid of data filters trained, evaluated and compared", _arguments, _run,
            description="Run curate -> train -> evaluate for every arm (a filter spec) and seed on one shared "
                        "pool and eval split with a common budget, sharing the reference cache; then write "
                        "DIR/comparison.json and DIR/report.html. Re-running skips finished arms and resumes "
                        "an interrupted one."),
]
