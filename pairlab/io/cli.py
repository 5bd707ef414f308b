"""``pairlab convert`` and ``pairlab inspect``: normalize any layout, or look at it first."""
from __future__ import annotations

import argparse
import sys

from ..cli import Command, add_input_args, read_input


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_args(parser)
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output: .parquet (canonical pairs table) or .jsonl")
    parser.add_argument("--trl", action="store_true",
                        help="write instead the dataset TRL's DPOTrainer takes (prompt messages, "
                             "chosen/rejected as one assistant message, pair_id): .parquet, "
                             ".jsonl, or a directory (datasets.save_to_disk)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (never the input itself)")
    parser.add_argument("--rejects", metavar="FILE", default=None,
                        help="also write the rejected rows (file, line/row, field, reason, "
                             "record) to FILE: .parquet, .jsonl or .csv")


def _convert(args: argparse.Namespace) -> int:
    from . import write_pairs, write_trl_dataset

    from .rejects import write_rejects

    from ..dirs import check_output_file

    check_output_file(args.out, [args.input], overwrite=args.overwrite)
    if args.rejects:
        check_output_file(args.rejects, [args.input, args.out], overwrite=args.overwrite, flag="--rejects")
    df, rejects = read_input(args, with_rejects=True, announce=bool(args.rejects))
    stats = df.attrs.get("read_stats", {})
    path = write_trl_dataset(df, args.out) if args.trl else write_pairs(df, args.out)
    extra = f", {stats['ties_dropped']} ties dropped" if stats.get("ties_dropped") else ""
    print(f"wrote {len(df)} pairs to {path} (layout {stats.get('layout')}, "
          f"{stats.get('rows')} rows: {stats.get('records')} read + {stats.get('rejected', 0)} "
          f"rejected{extra}, {stats.get('flagged', 0)} flagged)")
    if args.rejects:
        print(f"wrote {len(rejects)} rejected rows to {write_rejects(rejects, args.rejects)}")
    elif len(rejects):
        # bad input is an error (exit 2), but the good rows are written and every row is
        # accounted for; keeping the rejected rows in a file (--rejects) accepts them
        from .rejects import describe_reject

        print(f"pairlab convert: error: {len(rejects)} of {stats.get('rows')} rows rejected (first: "
              f"{describe_reject(stats['rejects'][0])}); the {len(df)} good pairs are written; pass "
              "--rejects FILE to keep the rejected rows (exit 0), or --strict to stop at the first",
              file=sys.stderr)
        return 2
    return 0


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_args(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--examples", type=int, default=2, metavar="N",
                        help="example rows shown per flag")
    parser.add_argument("--model", metavar="SPEC", default=None,
                        help="also tokenize every pair with this model's tokenizer and chat template "
                             "(exactly as DPO training does) and print token-length percentiles "
                             "(p50/p90/p99/max) of prompt, chosen and rejected, and the share of pairs "
                             "truncated (and excluded: prompt alone reaches max_length) at max_length "
                             "256, 512, 1024, 2048 and 4096")


def _inspect(args: argparse.Namespace) -> int:
    from ..artifacts import to_json
    from .summary import format_summary, summarize_pairs

    df = read_input(args)
    lengths = None
    if args.model:
        from ..logprobs import token_lengths, tokenize_pairs
        from ..models import load_tokenizer

        lengths = token_lengths(tokenize_pairs(load_tokenizer(args.model), df), df["pair_id"])
    summary = summarize_pairs(df, examples=args.examples, token_lengths=lengths, model=args.model)
    print(to_json(summary) if args.json else format_summary(summary))
    return 0


COMMANDS = [
    Command("convert", "normalize preference data in any layout to the pairs table",
            _convert_arguments, _convert),
    Command("inspect", "summarize preference data before curating it (layout, scores, flags)",
            _inspect_arguments, _inspect),
]
