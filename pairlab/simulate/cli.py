"""``pairlab simulate``: synthetic UltraFeedback with known truth, or noise injected into real pairs.

Two modes of one command:

* ``pairlab simulate --n N --seed S --out DIR [knobs] [--config sim.yaml]``
* ``pairlab simulate --from SPEC --flip-rate R [--flip-by gap|uniform] --seed S --out DIR``
"""
from __future__ import annotations

import argparse

from ..cli import Command, add_input_args, read_input
from ..config import field_help

#: CLI flag -> SimulateConfig field, for the main knobs (the rest via --set key=value).
_FLAGS = {"--n": ("n", int), "--eval-fraction": ("eval_fraction", float),
          "--length": ("length", str), "--rater-noise": ("rater_noise", float),
          "--length-bias": ("length_bias", float), "--padding-rate": ("padding_rate", float),
          "--overall-bug-rate": ("overall_score_bug_rate", float),
          "--tie-rate": ("tie_rate", float), "--marker-rate": ("marker_rate", float)}


def _arguments(parser: argparse.ArgumentParser) -> None:
    from .config import SimulateConfig

    helps = field_help(SimulateConfig)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--seed", type=int, default=None, help=helps["seed"] + "; 0 when not given here or in --config")
    parser.add_argument("--config", metavar="YAML", help="SimulateConfig fields in a YAML file")
    for flag, (name, kind) in _FLAGS.items():
        parser.add_argument(flag, dest=name, type=kind, default=None, help=helps[name])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="any other config field, e.g. "
                                                  "'topics={arithmetic: 2, facts: 1}'")
    parser.add_argument("--no-pairs", action="store_true",
                        help="write only the raw records (skip the *_pairs.parquet files)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished simulation in --out (else refused)")
    noise = parser.add_argument_group("label-noise injection into existing pairs")
    add_input_args(noise, flag="--from", dest="from_spec", required=False)
    noise.add_argument("--flip-rate", type=float, default=None,
                       help="share of pairs whose chosen/rejected are swapped")
    noise.add_argument("--flip-by", choices=("gap", "uniform"), default=None,
                       help="gap (default): flip more often where the rating gap is small; "
                            "uniform: any pair")
    noise.add_argument("--noise", choices=("uniform", "length", "source", "marker"), default=None,
                       help="which labels are flipped: uniform (default; random pairs, drawn by --flip-by), "
                            "length (the longer answer wins), source (every pair of one --noise-group value), "
                            "marker (the answer with a flattery / hedging marker wins)")
    noise.add_argument("--noise-group", default=None, metavar="COLUMN",
                       help="--noise source: the column whose one value is flipped (default: source)")


def _run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..schema import PairDataError
    from .config import SimulateConfig
    from .write import write_noisy_pairs, write_simulation

    if args.from_spec:
        if args.flip_rate is None:
            raise PairDataError("--from needs --flip-rate", field="--flip-rate")
        from ..dirs import NoiseDir

        NoiseDir.prepare(args.out, inputs=[args.from_spec], overwrite=args.overwrite)  # before reading
        pairs = read_input(args, "from_spec")
        seed = 0 if args.seed is None else args.seed
        flip_by = args.flip_by or "gap"
        summary = write_noisy_pairs(pairs, args.out, overwrite=args.overwrite, flip_rate=args.flip_rate,
                                    flip_by=flip_by, seed=seed, noise=args.noise or "uniform",
                                    group=args.noise_group or "source",
                                    inputs={"spec": args.from_spec,
                                            "read_stats": pairs.attrs.get("read_stats", {})})
        print(f"flipped {summary['n_flipped']} of {summary['n_pairs']} pairs "
              f"({args.noise or 'uniform'} noise, {flip_by}); wrote {args.out}/pairs.parquet")
        return 0

    overrides = {name: getattr(args, name) for name, _ in _FLAGS.values()
                 if getattr(args, name) is not None}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.flip_rate is not None:
        overrides["label_flip_rate"] = args.flip_rate
    if args.flip_by is not None:
        overrides["flip_by"] = args.flip_by
    if args.noise is not None:
        overrides["noise"] = args.noise
    if args.noise_group is not None:
        overrides["noise_group"] = args.noise_group
    from ..config import parse_override

    overrides.update(dict(parse_override(o) for o in args.overrides))
    cfg = load_config(SimulateConfig, args.config, overrides)
    summary = write_simulation(cfg, args.out, pairs=not args.no_pairs, overwrite=args.overwrite)
    noise = summary.get("label_noise_rate")
    extra = f", {summary['n_train_pairs']} train pairs, label noise {noise:.3f}" \
        if noise is not None else ""
    print(f"wrote {summary['n_train_records']} train + {summary['n_eval_records']} eval "
          f"records to {args.out}{extra}")
    return 0


COMMANDS = [
    Command("simulate", "synthetic UltraFeedback with known truth, or label noise injected "
                        "into real pairs (--from)", _arguments, _run),
]
