"""``pairlab convert`` and ``pairlab inspect``: normalize any layout, or look at it first."""
from __future__ import annotations

import argparse
import sys

from ..cli import Command, add_input_args, announce_rejects, read_input
from .read import CHUNK_ROWS


def _positional_input(parser: argparse.ArgumentParser) -> None:
    """``pairlab inspect data.jsonl``: the input as a positional argument too (or ``--input``)."""
    add_input_args(parser, required=False)
    parser.add_argument("spec", nargs="?", metavar="SPEC", default=None, help="the same as --input SPEC")
    # merged into --input before the CLI checks inputs and outputs (a stage folder, an --out
    # that would overwrite it), so SPEC is checked exactly as --input is
    parser.set_defaults(_prepare=_resolve_input)


def _resolve_input(args: argparse.Namespace) -> None:
    from ..errors import ConfigError

    if args.input is None and args.spec is None:
        raise ConfigError("no input: give the pairs to read as SPEC or --input SPEC", field="--input",
                          hint="e.g. pairlab inspect data.jsonl")
    if args.input is not None and args.spec is not None and args.input != args.spec:
        raise ConfigError(f"two inputs: SPEC {args.spec!r} and --input {args.input!r}", field="--input",
                          hint="give one of them")
    args.input = args.input if args.input is not None else args.spec


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    _positional_input(parser)
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
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, metavar="N",
                        help="a JSONL/CSV/TSV input converted to .parquet is read and written N rows "
                             "at a time (bounded memory; the same file as a whole read); 0 = read it whole")


def _convert(args: argparse.Namespace) -> int:
    from . import write_pairs, write_trl_dataset

    from ..dirs import check_output_file
    from ..schema import PairDataError
    from .rejects import write_rejects

    check_output_file(args.out, [args.input], overwrite=args.overwrite)
    if args.rejects:
        check_output_file(args.rejects, [args.input, args.out], overwrite=args.overwrite, flag="--rejects")
        from pathlib import Path

        from .rejects import REJECT_SUFFIXES, unsupported_rejects_path

        if Path(args.rejects).resolve() == Path(args.out).resolve():
            raise PairDataError("--rejects is the same file as --out: the rejected rows would replace "
                                "the pairs", file=str(args.rejects), field="--rejects",
                                hint="name another file for the rejected rows")
        if Path(args.rejects).suffix not in REJECT_SUFFIXES:  # before anything is written
            raise unsupported_rejects_path(args.rejects)
    if args.chunk_rows < 0:
        raise PairDataError(f"--chunk-rows must be 0 or more, got {args.chunk_rows}", field="--chunk-rows")
    try:
        if _convert_streams(args):
            path, stats, rejects = _convert_chunks(args)
            if args.rejects:  # as read_input announces them on the whole-file path
                announce_rejects(args.command, stats)
        else:
            df, rejects = read_input(args, with_rejects=True, announce=bool(args.rejects))
            stats = df.attrs.get("read_stats", {})
            path = (write_trl_dataset(df, args.out, overwrite=args.overwrite) if args.trl
                    else write_pairs(df, args.out))
    except PairDataError as err:
        every = getattr(err, "rejects", None)
        if not args.rejects or every is None or args.strict:
            raise
        # no row could be read: still an error, but every row's reason is kept in --rejects
        written = write_rejects(every, args.rejects)
        raise PairDataError(err.message, file=err.file, line=err.line, row=err.row, field=err.field,
                            hint=f"{err.hint}; all {len(every)} rejected rows, each with its reason, "
                                 f"are in {written}" if err.hint else
                                 f"all {len(every)} rejected rows, each with its reason, are in {written}") from None
    n_pairs = stats.get("pairs", 0)
    extra = f", {stats['ties_dropped']} ties dropped" if stats.get("ties_dropped") else ""
    print(f"wrote {n_pairs} pairs to {path} (layout {stats.get('layout')}, "
          f"{stats.get('rows')} rows: {stats.get('records')} read + {stats.get('rejected', 0)} "
          f"rejected{extra}, {stats.get('flagged', 0)} flagged)")
    if args.rejects:
        print(f"wrote {len(rejects)} rejected rows to {write_rejects(rejects, args.rejects)}")
    elif len(rejects):
        # bad input is an error (exit 2), but the good rows are written and every row is
        # accounted for; keeping the rejected rows in a file (--rejects) accepts them
        from .rejects import describe_reject

        print(f"pairlab convert: error: {len(rejects)} of {stats.get('rows')} rows rejected (first: "
              f"{describe_reject(stats['rejects'][0])}); the {n_pairs} good pairs are written; pass "
              "--rejects FILE to keep the rejected rows (exit 0), or --strict to stop at the first",
              file=sys.stderr)
        return 2
    return 0


def _convert_streams(args: argparse.Namespace) -> bool:
    """A JSONL/CSV/TSV file (any compression) converted to a pairs Parquet: chunk by chunk."""
    from pathlib import Path

    from .sources import is_line_file

    return (args.chunk_rows > 0 and not args.trl and Path(args.out).suffix == ".parquet"
            and is_line_file(args.input))


def _convert_chunks(args: argparse.Namespace):
    """Read ``args.input`` in chunks, each written as it is read; the file appears whole at
    the end (an error midway leaves no --out). Returns (path, read_stats, rejects)."""
    from ..dirs import check_input_file
    from .convert import convert_chunked

    check_input_file(args.input)
    return convert_chunked(args.input, args.out, chunk_rows=args.chunk_rows, format=args.input_format,
                           mapping=args.input_map, binarize=args.input_binarize,
                           pairing=args.input_pairing, seed=args.input_seed, strict=args.strict,
                           split=args.input_split,
                           hub_config=getattr(args, "input_hub_config", None),
                           hub_revision=getattr(args, "input_hub_revision", None))


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    _positional_input(parser)
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
