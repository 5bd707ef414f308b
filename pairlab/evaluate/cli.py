"""`pairlab evaluate` and `pairlab compare`: parse arguments, call the evaluate stage's API."""
from __future__ import annotations

import argparse
import sys

from ..cli import Command, add_config_args, add_input_args, bounded, read_input

#: Shortcut flag -> EvalConfig field (everything else through --set key=value).
_FLAGS = {"--batch-size": ("batch_size", int), "--beta": ("beta", float),
          "--max-length": ("max_length", int), "--quantization": ("quantization", str),
          "--n-prompts": ("n_prompts", int), "--prompts": ("prompts_file", str),
          "--max-new-tokens": ("max_new_tokens", int)}


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from ..config import field_help
    from .config import EvalConfig

    helps = field_help(EvalConfig)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN_DIR", help="a `pairlab train` run: its adapter, model and DPO settings")
    which.add_argument("--model", metavar="SPEC",
                       help="evaluate a bare model instead (policy == reference: all margins 0, read the "
                            "reference-free accuracy); generations are the base model's only")
    add_input_args(parser, flag="--eval", dest="eval")
    parser.add_argument("--out", required=True, metavar="EVAL_DIR", help="evaluation directory to write")
    add_config_args(parser, example="sample_seeds=[0,1] or ref_cache=false",
                    config_help="EvalConfig fields in a YAML file")
    for flag, (name, kind) in _FLAGS.items():
        parser.add_argument(flag, dest=name, type=kind, default=None, help=helps[name])
    parser.add_argument("--no-generate", action="store_true", help="skip generations.parquet")
    parser.add_argument("--benchmark", choices=("auto", "rewardbench", "best-of-n", "none"), default=None,
                        help="RewardBench-style per-subset/section accuracy (a file with prompt, chosen, "
                             "rejected, subset; rejected a list: best-of-n). auto: when the file has `subset`")
    parser.add_argument("--reference-free", dest="benchmark_reference_free", choices=("none", "sum", "norm"),
                        default=None, help=helps["benchmark_reference_free"])
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished evaluation in EVAL_DIR (else refused)")
    parser.add_argument("--resume", action="store_true",
                        help="keep a finished evaluation in EVAL_DIR when it is this one (same eval pairs, config, "
                             "model and run, the run unchanged since): nothing is recomputed; a different one "
                             "is refused")


def _evaluate(args: argparse.Namespace) -> int:
    from .config import load_eval_config
    from .runner import evaluate

    overrides = list(args.overrides)
    for name, _ in _FLAGS.values():
        value = getattr(args, name)
        if value is not None:
            overrides.append(f"{name}={value}")
    if args.no_generate:
        overrides.append("generate=false")
    for name in ("benchmark", "benchmark_reference_free"):
        if getattr(args, name) is not None:
            overrides.append(f"{name}={getattr(args, name)}")
    config = load_eval_config(args.config, overrides)
    from ..dirs import EvalDir

    EvalDir.prepare(args.out, inputs=[args.run, args.eval], overwrite=args.overwrite,  # before any reading
                    resume=args.resume)
    from . import benchmarks

    if config.benchmark in benchmarks.KINDS or (config.benchmark == "auto" and args.eval_format == "auto"
                                                 and benchmarks.is_benchmark_file(args.eval)):
        pairs, _ = benchmarks.read_benchmark(args.eval)  # one pair per (example, rejected completion)
    else:
        pairs = read_input(args, "eval")
    result = evaluate(pairs, args.out, run=args.run, model=args.model, config=config, eval_spec=args.eval,
                      overwrite=args.overwrite, resume=args.resume)
    from ..distributed import is_main

    if not is_main():  # under `torchrun` / `accelerate launch`: rank 0 alone reports
        return 0
    if result.metrics.get("already_finished"):
        print(f"{result.out_dir} already holds this evaluation (--resume): nothing recomputed; "
              f"accuracy {result.metrics['accuracy']:.3f} over {result.metrics['n_pairs']} pairs")
        return 0
    m, ref, t = result.metrics, result.reference, result.metrics["truncation"]
    print(m["verdict"]["text"])
    print(f"{m['n_pairs']} pairs scored: accuracy {m['accuracy']:.3f} ({m['ties']} ties), mean margin "
          f"{m['mean_margin']:.4f}, ref-free accuracy {m['ref_free_accuracy']:.3f}; reference: "
          f"{ref['cache_hits']} cached, {ref['computed']} computed; {m['timing']['total_s']:.1f} s")
    print(f"truncation at max_length {t['max_length']} ({t['truncation_mode']}): {t['truncated']} of "
          f"{t['pairs']} pairs truncated (prompt {t['by_kind']['prompt']}, completion "
          f"{t['by_kind']['completion']}, both {t['by_kind']['both']}); {t['excluded']} excluded "
          f"(no completion token left, listed in excluded.parquet)")
    if "benchmark" in m:
        b = m["benchmark"]
        parts = [f"{k} {v['accuracy']:.3f}" for k, v in (b.get("sections") or b["subsets"]).items()]
        print(f"{b['kind']} score {b['score']:.3f} over {b['n_examples']} examples ({b['score_is']}): "
              + ", ".join(parts) + f"; {b['rule']}")
    print(f"wrote {result.out_dir}" + (f" (report: {result.report})" if result.report else ""))
    if result.report_error:  # the evaluation is complete; only its HTML page is missing
        print(f"warning: report NOT written ({result.report_error}); the evaluation's files are complete: "
              f"retry with `pairlab report {result.out_dir}`", file=sys.stderr)
    return 0


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR",
                        help="evaluation directories on the same pairs; the first is the baseline")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write DIR/comparison.json (else the JSON goes to stdout)")
    parser.add_argument("--n-boot", type=bounded(int, min=1), default=2000, help="paired bootstrap resamples")
    parser.add_argument("--seed", type=bounded(int, min=0), default=0, help="bootstrap seed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished comparison in --out (else refused)")


def _compare(args: argparse.Namespace) -> int:
    from ..artifacts import to_json
    from .comparison import compare, format_comparison, write_comparison

    if args.out:  # refuse before reading anything
        from ..dirs import CompareDir

        CompareDir.prepare(args.out, inputs=args.eval_dirs, overwrite=args.overwrite)
    result = compare(args.eval_dirs, n_boot=args.n_boot, seed=args.seed)
    if args.out:
        path = write_comparison(result, args.out, overwrite=args.overwrite)
        print(format_comparison(result))
        print(f"wrote {path}")
    else:
        print(format_comparison(result), file=sys.stderr)
        print(to_json(result))
    return 0


COMMANDS = [
    Command("evaluate", "held-out preference metrics, calibration and generations of a run or a model",
            _evaluate_arguments, _evaluate,
            description="Score held-out pairs with a trained adapter (--run) or a bare model (--model): "
                        "implicit rewards from policy and reference (adapter disabled; reference log-probs "
                        "from the shared cache), accuracy with a bootstrap CI, margins, reference-free "
                        "accuracy, length bias, calibration, and base-vs-aligned generations. Writes "
                        "EVAL_DIR/{per_pair.parquet,metrics.json,generations.parquet,manifest.json} and "
                        "the report."),
    Command("compare", "paired comparison (McNemar, CI, MDE, Holm) of evaluations on the same pairs",
            _compare_arguments, _compare,
            description="Compare evaluation directories of runs evaluated on the same pairs, each against "
                        "the first: accuracy difference (other - first) with a bootstrap CI, McNemar's exact "
                        "test, Holm's correction across the runs and the minimum detectable effect (80% "
                        "power at alpha = 0.05), a paired bootstrap on margins, and the same comparison on "
                        "reference-free correctness."),
]
