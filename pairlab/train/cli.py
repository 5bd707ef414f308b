"""`pairlab train`: parse arguments, load the config, call :func:`pairlab.train.train`."""
from __future__ import annotations

import argparse

from ..cli import Command, add_config_args


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, metavar="PATH",
                        help="pairs to train on: DIR/pairs.parquet from `pairlab curate` (or DIR, or any "
                             "file `pairlab convert` reads)")
    parser.add_argument("--model", default=None, metavar="SPEC",
                        help="model spec (overrides the config's `model`): smollm2-135m-instruct, "
                             "tiny-random-llama, a local directory or a hub id")
    add_config_args(parser, example="dpo.beta=0.2, lora.r=8, dpo.max_steps=10 (recipe spellings too: beta=0.2, "
                                    "lora_r=8)",
                    config_help="TrainConfig YAML (see examples/train.yaml); a `trl dpo` YAML or alignment-handbook "
                                "recipe works too: its flat keys are mapped, one notice per key "
                                "(examples/recipe-handbook-qlora.yaml)")
    parser.add_argument("--quantization", choices=("4bit", "none"), default=None,
                        help="4bit (QLoRA) or none (full-precision LoRA); overrides the config")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in RUN_DIR from its latest complete checkpoint; on a finished "
                             "run, do nothing")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished or interrupted run in RUN_DIR (its checkpoints too)")


def _run(args: argparse.Namespace) -> int:
    from . import load_train_config, train

    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model={args.model}")
    if args.quantization:
        overrides.append(f"quantization={args.quantization}")
    config = load_train_config(args.config, overrides)
    result = train(args.pairs, config, args.out, resume=args.resume, overwrite=args.overwrite)
    from ..distributed import is_main

    if not is_main():  # under `torchrun` / `accelerate launch`: rank 0 alone reports
        return 0
    if result.already_finished:
        print(f"run {args.out} already finished at step {result.global_step}; nothing to do")
        return 0
    last = result.train_log.iloc[-1].to_dict() if len(result.train_log) else {}
    resumed = result.resumed_from
    print(f"trained {result.global_step} steps in {result.wall_time_s:.1f} s"
          + (f" (resumed from step {resumed.rsplit('-', 1)[-1]})" if resumed else "")
          + (f"; last loss {last['loss']:.4f}, accuracy {last['rewards/accuracies']:.2f}" if last else "")
          + f"; reference cache: {result.ref_cache['cache_hits']} hits, {result.ref_cache['computed']} computed")
    t = result.truncation
    if t:
        print(f"truncation at max_length {t['max_length']}: {t['truncated']} of {t['pairs']} pairs truncated; "
              f"{t.get('trl_dropped', t['excluded'])} dropped by TRL (prompt alone reaches max_length)")
    print(f"adapter: {result.adapter_dir}")
    return 0


COMMANDS = [
    Command("train", "QLoRA DPO (TRL) on a pairs table, with the shared reference cache", _arguments, _run,
            description="Train a LoRA adapter with DPO on a pairs table: 4-bit NF4 base (QLoRA) or full "
                        "precision, reference log-probs from the shared on-disk cache, per-pair dynamics, "
                        "checkpoints and --resume. Writes RUN_DIR/{adapter,checkpoints,train_log.jsonl,"
                        "dynamics.parquet,manifest.json}."),
]
