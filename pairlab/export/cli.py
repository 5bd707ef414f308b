"""`pairlab export`: parse arguments, call :func:`pairlab.export.export`."""
from __future__ import annotations

import argparse

from ..cli import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN_OR_ARM",
                        help="a `pairlab train` run directory, an ablation arm (ABLATION/arms/ARM) or an "
                             "ablation directory (its winning arm, or --arm)")
    parser.add_argument("--out", required=True, metavar="DIR", help="export directory to write (new)")
    parser.add_argument("--arm", default=None, help="with an ablation directory: the arm to export "
                                                    "(default: the comparison's winner)")
    parser.add_argument("--seed", type=int, default=None,
                        help="with an ablation or arm: the seed's run to export (default: the lowest)")
    parser.add_argument("--eval", dest="eval_dir", default=None, metavar="EVAL_DIR",
                        help="the run's `pairlab evaluate` directory for the model card's held-out metrics "
                             "(default: the ablation's evaluation of the run, when there is one)")
    parser.add_argument("--merge", action="store_true",
                        help="also write merged/: the adapter merged into the full-precision base "
                             "(safetensors, in the base's dtype)")
    parser.add_argument("--hub-model-id", default=None,
                        help="name for the model card and the YAML's hub_model_id (default: named after the run)")


def _run(args: argparse.Namespace) -> int:
    from .pipeline import LAUNCH, TRL_YAML, export

    out = export(args.source, args.out, arm=args.arm, seed=args.seed, eval_dir=args.eval_dir,
                 merge=args.merge, hub_model_id=args.hub_model_id)
    print(f"wrote {out}: README.md (model card), adapter/, data/ (TRL parquet + dataset card), dataset/ "
          f"(save_to_disk), {TRL_YAML}, {LAUNCH}" + (", merged/" if args.merge else ""))
    return 0


COMMANDS = [
    Command("export", "carry a run (or an ablation's winner) out: TRL data + config, adapter, merged model, cards",
            _arguments, _run,
            description="Export a finished run, an ablation arm, or an ablation's winning arm: its curated "
                        "training set in TRL's format (data/*.parquet and a save_to_disk dataset/), the "
                        "equivalent `trl dpo` YAML and the `accelerate launch` line (launch.sh), the adapter, "
                        "with --merge the merged full model (safetensors, base dtype), a model card "
                        "(README.md) with held-out metrics and CIs, and a dataset card."),
]
