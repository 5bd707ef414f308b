"""`pairlab ablate`: parse arguments, load the config, call :func:`pairlab.ablate.ablate`."""
from __future__ import annotations

import argparse

from ..cli import Command, add_config_args, bounded
from ..config import ConfigError
from ..dirs import AblationDir


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, required=True, example="seeds=[0,1], train.dpo.beta=0.2, pool.flip_rate=0.1",
                    config_help="ablation config (see examples/ablation-demo.yaml)")
    parser.add_argument("--out", required=True, metavar="DIR", help="ablation directory (re-use it to resume)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true",
                      help="prepare the pool and every arm's subset, then print the power plan ('# ' lines: "
                           "eval pairs and seeds needed to detect --target-diff, and their time) and one "
                           "train/evaluate command per arm and seed (for Slurm, Ray jobs, ...) instead of "
                           "running them")
    mode.add_argument("--report-only", action="store_true",
                      help="gather the outputs already in DIR into comparison.json and report.html")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--executor", choices=["local", "ray", "slurm"], default=None,
                        help="where the arm x seed runs go (default: the config's executor.name, local): local "
                             "runs them here one after the other; ray runs each as a Ray task with the config's "
                             "executor.num_gpus/num_cpus; slurm submits prefill -> array of arms -> report jobs "
                             "chained with afterok (executor.slurm settings). ray and slurm need "
                             "pip install 'pairlab[cluster]'")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --executor slurm: write the sbatch scripts and submit.sh under DIR/slurm "
                             "(or executor.folder) instead of submitting")
    parser.add_argument("--step", choices=["prefill", "arm", "report"], default=None,
                        help="run one step of the graph (what the --dry-run sbatch scripts call): prefill "
                             "(pool, curation, reference cache), arm (one arm x seed, see --task), report")
    parser.add_argument("--task", type=int, default=None, metavar="N",
                        help="with --step arm: the arm x seed's index in the grid (arms in order, seeds "
                             "inside each arm; default $SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an earlier ablation in DIR and start again (by default re-using DIR "
                             "resumes it: finished runs are skipped)")
    parser.add_argument("--target-diff", type=bounded(float, gt=0, lt=1), default=0.05, metavar="D",
                        help="with --plan: the accuracy difference (0.05 = 5 points) the power plan sizes the "
                             "design for")


def _power_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target-diff", type=bounded(float, gt=0, lt=1), required=True, metavar="D",
                        help="accuracy difference to detect (0.05 = 5 points)")
    parser.add_argument("--from", dest="from_dir", metavar="DIR",
                        help="an ablation directory: its config (arms, budget, eval pairs, seeds), the "
                             "discordance of its evaluated arms and the timings in its manifests")
    parser.add_argument("--config", metavar="YAML", help="an ablation config to plan for (arms, budget, seeds)")
    parser.add_argument("--discordance", type=bounded(float, gt=0, lt=1), metavar="P",
                        help="share of eval pairs two arms disagree on (default: measured in --from, else "
                             f"{_default_discordance()}, an assumed default)")
    parser.add_argument("--arms", type=bounded(int, min=2), default=2, help="arms, baseline included (without --from/--config)")
    parser.add_argument("--steps", type=bounded(float, gt=0), default=30, help="optimizer steps per run (without --from/--config)")
    parser.add_argument("--eval-pairs", type=bounded(int, min=1), metavar="N",
                        help="eval pairs available (default: the eval split of --from)")
    parser.add_argument("--timings", metavar="DIR",
                        help="a directory of earlier runs/evaluations on this machine whose manifests give "
                             "s/step and s/pair (default: --from; else documented defaults)")
    parser.add_argument("--alpha", type=bounded(float, gt=0, lt=1), default=0.05, help="significance level before Holm")
    parser.add_argument("--power", type=bounded(float, gt=0, lt=1), default=0.8, help="power")


def _default_discordance() -> float:
    from .plan import DEFAULT_DISCORDANCE

    return DEFAULT_DISCORDANCE


def _run(args: argparse.Namespace) -> int:
    from .config import load_ablation_config
    from .pipeline import ablate, print_plan

    if args.task is not None and args.step != "arm":
        raise ConfigError("--task applies only with --step arm (it picks one arm x seed of the grid)",
                          field="--task", hint="add --step arm, or drop --task to run every arm")
    cfg = load_ablation_config(args.config, args.overrides)
    if args.step or (args.executor or cfg.executor.name) != "local" or args.dry_run:
        from ..executors.cli import run_executor

        result = run_executor(cfg, args)
        if result is None:
            return 0
    elif args.plan:
        print_plan(cfg, args.out, args.config, target_diff=args.target_diff)
        return 0
    else:
        result = ablate(cfg, args.out, report_only=args.report_only, progress=not args.no_progress,
                        overwrite=args.overwrite)
    for arm in result["arms"]:
        acc = arm["accuracy"]["mean"]
        noise = arm["true_label_noise"]
        print(f"  {arm['name']:<24} kept {arm['pairs_kept']!s:>6}  "
              + (f"accuracy {acc:.3f}" if acc is not None else "accuracy  (not run)")
              + (f"  true label noise {noise:.1%}" if noise is not None else ""))
    print(result["verdict"]["text"])
    if not result["complete"]:
        print("some runs are missing: run the --plan commands (or ablate without --report-only)")
    print(f"comparison report: {result['report']}")
    return 0


def _power(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .plan import DEFAULT_DISCORDANCE, design_table, format_plan, measured_timings, plan_lines

    if args.timings and not Path(args.timings).is_dir():
        raise ConfigError("not a directory" if Path(args.timings).exists() else "no such directory",
                          file=args.timings, field="--timings",
                          hint="a directory of earlier runs/evaluations (an ablation's --out)")
    if args.from_dir or args.config:
        from ..config import load_config
        from .config import AblationConfig

        root = Path(args.from_dir) if args.from_dir else None
        path = args.config or str(root / AblationDir.CONFIG)
        if not Path(path).exists():
            raise ConfigError("not an ablation directory (no ablation.yaml)", field="--from",
                              hint="pass a directory written by `pairlab ablate --out`")
        cfg = load_config(AblationConfig, path, []).validate()
        eval_pairs = args.eval_pairs
        if eval_pairs is None and root is not None and (root / AblationDir.EVAL_PAIRS).exists():
            import pyarrow.parquet as pq

            eval_pairs = pq.ParquetFile(root / AblationDir.EVAL_PAIRS).metadata.num_rows
        if eval_pairs is None:
            eval_pairs = cfg.pool.max_eval_pairs
        if eval_pairs is None:
            raise ConfigError("how many eval pairs are there?", field="--eval-pairs",
                              hint="give --eval-pairs N (or --from an ablation directory)")
        lines = plan_lines(cfg, target_diff=args.target_diff, eval_pairs=eval_pairs, root=root,
                           timings_dir=args.timings, discordance=args.discordance, alpha=args.alpha,
                           power=args.power)
    else:
        timings = measured_timings(args.timings)
        table = design_table(args.target_diff, args.discordance or DEFAULT_DISCORDANCE, n_arms=args.arms,
                             steps_per_run=args.steps, timings=timings, available_pairs=args.eval_pairs,
                             alpha=args.alpha, power=args.power)
        source = "given" if args.discordance else "assumed default (see pairlab.ablate.plan)"
        lines = format_plan(table, timings=timings, discordance_source=source)
    print("\n".join(lines))
    return 0


COMMANDS = [
    Command("ablate", "the main job: a grid of data filters trained, evaluated and compared", _arguments, _run,
            description="Run curate -> train -> evaluate for every arm (a filter spec) and seed on one shared "
                        "pool and eval split with a common budget, sharing the reference cache; then write "
                        "DIR/comparison.json and DIR/report.html. Re-running skips finished arms and resumes "
                        "an interrupted one."),
    Command("power", "eval pairs and seeds an ablation needs to detect a difference, and their cost",
            _power_arguments, _power,
            description="For a target accuracy difference, print the paired observations (eval pairs x "
                        "seeds) needed for 80% power at alpha = 0.05 with McNemar's test (Connor 1987; "
                        "Holm across arms: planned at alpha / comparisons), per number of seeds, with the "
                        "wall time from this machine's run and evaluation manifests (or documented "
                        "defaults, labelled). The discordance (share of pairs two arms disagree on) is "
                        "measured in --from DIR, given, or an assumed default."),
]
