"""`pairlab audit`: attribute a run's training pairs, or validate the audit end to end."""
from __future__ import annotations

import argparse

from ..cli import Command, add_config_args, add_input_args, read_input, refuse_positional_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="RUN_DIR", help="a finished `pairlab train` run (with checkpoints)")
    add_input_args(parser, flag="--eval", dest="eval", required=False)
    parser.add_argument("--pairs", metavar="PAIRS", default=None,
                        help="the run's training pairs (default: the pairs.parquet its manifest names)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_config_args(parser, example="proj_dim=1000, harmful_score=tracin (--validate: n=64, counterfactual=false)",
                    config_help="AuditConfig YAML (--validate: ValidateConfig; --suite: SuiteConfig)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished audit in --out (else refused; the gradient cache is reused)")
    parser.add_argument("--validate", action="store_true",
                        help="simulate -> curate -> train -> audit -> counterfactual retraining; "
                             "writes validation.json")
    parser.add_argument("--suite", action="store_true",
                        help="--validate: every noise type x seeds, detection metrics per score, the goal per "
                             "noise type, counterfactual arms pooled across seeds; writes suite.json (resumable)")
    parser.add_argument("--quick", action="store_true",
                        help="--validate --suite: the CI size on tiny-random-llama (checks the machinery, "
                             "not the figures)")
    parser.add_argument("--noise", default=None, choices=("uniform", "length", "source", "marker"),
                        help="--validate: noise type of the flips")
    parser.add_argument("--model", default=None, help="--validate: model spec")
    parser.add_argument("--n", type=int, default=None, help="--validate: training pairs")
    parser.add_argument("--flip-rate", type=float, default=None, help="--validate: share of labels flipped")
    parser.add_argument("--seed", type=int, default=None, help="--validate: seed")
    # the old positional KEY=VALUE spelling, kept only to answer it with the --set form
    parser.add_argument("legacy_overrides", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..schema import PairDataError

    refuse_positional_overrides(args.legacy_overrides, "audit")
    from ..errors import ConfigError

    given = [flag for flag, value in (("--run", args.run), ("--eval", args.eval), ("--pairs", args.pairs))
             if value is not None]
    if args.validate and given:  # --validate builds its own run and pairs
        raise ConfigError(f"{given[0]} does not apply to --validate (it trains and audits its own simulated run)",
                          field=given[0], hint="drop it, or drop --validate to audit your run")
    if not args.validate:
        extra = [flag for flag, value in (("--suite", args.suite), ("--quick", args.quick), ("--noise", args.noise),
                                          ("--model", args.model), ("--n", args.n), ("--flip-rate", args.flip_rate),
                                          ("--seed", args.seed)) if value not in (None, False)]
        if extra:
            raise ConfigError(f"{extra[0]} applies only with --validate", field=extra[0],
                              hint="add --validate, or drop it")
    if args.validate and (args.suite or args.quick):
        return _run_suite(args)
    if args.validate:
        from .validate import ValidateConfig, run_validation

        overrides = list(args.overrides)
        for key, value in (("model", args.model), ("n", args.n), ("flip_rate", args.flip_rate),
                           ("seed", args.seed), ("noise", args.noise)):
            if value is not None:
                overrides.append(f"{key}={value}")
        result = run_validation(load_config(ValidateConfig, args.config, overrides), args.out)
        for name, value in result["auroc_mislabeled"].items():
            print(f"AUROC {name:16s} {'n/a' if value is None else f'{value:.3f}'}")
        print(f"best: {result['best_score']}  -> {args.out}/validation.json")
        return 0
    if not args.run or not args.eval:
        raise PairDataError("give --run RUN_DIR and --eval PAIRS (or --validate)")
    from .pipeline import AuditConfig, audit

    config = load_config(AuditConfig, args.config, args.overrides)
    train_pairs = None
    if args.pairs:
        from ..dirs import check_input_file
        from ..io import read_pairs

        check_input_file(args.pairs)
        train_pairs = read_pairs(args.pairs)
    from ..dirs import AuditDir

    AuditDir.prepare(args.out, inputs=[args.run, args.eval, args.pairs], overwrite=args.overwrite)
    result = audit(args.run, read_input(args, "eval"), args.out, config=config, train_pairs=train_pairs,
                   eval_spec=args.eval, overwrite=args.overwrite)
    harmful = result.scores.nsmallest(5, config.harmful_score)
    excluded = int((result.scores["excluded"] != "").sum()) if "excluded" in result.scores else 0
    print(f"audited {len(result.scores) - excluded} of {len(result.scores)} pairs over {len(result.checkpoints)} "
          f"checkpoint(s); {result.throughput['pairs_per_s_per_checkpoint']} pairs/s per checkpoint"
          + (f"; {excluded} not scored (no completion token within max_length: training never saw them)"
             if excluded else ""))
    print(f"most harmful by {config.harmful_score}: {', '.join(harmful['pair_id'])}")
    print(f"-> {args.out}/attribution.parquet" + (f", {result.report}" if result.report else ""))
    return 0


def _run_suite(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .suite import QUICK, SuiteConfig, run_suite

    overrides = {**(QUICK if args.quick else {})}
    for key, value in (("model", args.model), ("n", args.n), ("flip_rate", args.flip_rate)):
        if value is not None:
            overrides[key] = value
    if args.seed is not None:
        overrides["seeds"] = [args.seed]
    if args.noise is not None:
        overrides["noise_types"] = [args.noise]
    from ..config import cli_overrides

    overrides.update(cli_overrides(args.overrides, SuiteConfig))
    result = run_suite(load_config(SuiteConfig, args.config, overrides), args.out)
    default = result["default_score"]
    for noise, table in result["detection"].items():
        goal = result["goal"]["auroc"][noise]
        best = ", ".join(f"{v['best_free']} {_fmt(v['best_free_auroc'])}" for v in goal["per_seed"].values())
        met_by = ", ".join(goal["met_by"]) or "none"
        print(f"{noise:8s} AUROC {default} {_fmt(table[default]['auroc'])}, best free per seed {best}; "
              f"goal {goal['status']} (met by: {met_by})")
    cf = result.get("goal", {}).get("counterfactual")
    if cf:
        print(f"counterfactual ({result['counterfactual']['noise']}): {cf['status']}")
    print(f"-> {args.out}/suite.json")
    return 0


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


COMMANDS = [Command("audit", "which training pairs helped or hurt held-out preference (TracIn + baselines)",
                    add_arguments, run)]
