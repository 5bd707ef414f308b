"""`pairlab curate`: read a pool, score, split, filter, write the audit trail."""
from __future__ import annotations

import argparse
import time

from ..cli import Command, add_input_args, announce_rejects, read_input
from ..config import field_help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import CurateConfig

    helps = field_help(CurateConfig)
    add_input_args(parser)
    parser.add_argument("--filters", metavar="YAML", default=None,
                        help="filter spec: a YAML list of filters applied in order, or "
                             "{filters: [...], config: {...}} (see examples/filters/)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory: pairs.parquet, eval.parquet, dropped.parquet, "
                             "scores.parquet, manifest.json, curation.html")
    add_input_args(parser, flag="--eval-from", dest="eval_from", required=False, primary=False)
    parser.add_argument("--tokenizer", default=None, help=helps["tokenizer"])
    parser.add_argument("--max-length", type=int, default=None, help=helps["max_length"])
    parser.add_argument("--eval-fraction", type=float, default=None, help=helps["eval_fraction"])
    parser.add_argument("--contamination-file", default=None, help=helps["contamination_file"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any curate config field (repeatable), e.g. seed=1 or "
                             "near_dup_threshold=0.9 (--seed is the raw reader's pairing seed)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the scores")
    parser.add_argument("--no-report", action="store_true",
                        help="skip curation.html (an older one in --out is removed)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished curation in --out (else refused)")


def run(args: argparse.Namespace) -> int:
    from ..artifacts import file_sha256
    from ..config import load_config, parse_override
    from ..errors import ConfigError
    from ..dirs import CurateDir
    from .config import CurateConfig
    from .pipeline import curate, load_filter_file

    started = time.time()
    # validate everything cheap before reading or scoring anything
    filters, file_config = load_filter_file(args.filters) if args.filters else ([], {})
    overrides = dict(file_config)
    overrides.update(dict(parse_override(o) for o in args.overrides))
    flags = {"tokenizer": args.tokenizer, "max_length": args.max_length,
             "eval_fraction": args.eval_fraction,
             "contamination_file": args.contamination_file}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if args.no_cache:
        overrides["cache"] = False
    if args.no_report:
        overrides["report"] = False
    try:
        config = load_config(CurateConfig, None, overrides).validate()
    except ConfigError as err:  # a bad value the filters file's `config:` block set is that file's
        top = (err.field or "").split(".")[0].split("[")[0]
        cli_keys = {k for k, v in flags.items() if v is not None}  # a flag or --set gave it: no file to name
        cli_keys |= {k for k, on in (("cache", args.no_cache), ("report", args.no_report)) if on}
        cli_keys |= {k.split(".")[0].split("[")[0] for k, _ in map(parse_override, args.overrides)}
        if err.file is None and top in file_config and top not in cli_keys:
            raise ConfigError(err.message, file=str(args.filters), field=f"config.{err.field}",
                              hint=err.hint) from None
        raise
    CurateDir.prepare(args.out, overwrite=args.overwrite,
                      inputs=[args.input, args.eval_from, config.contamination_file, args.filters])

    import pandas as pd

    rows = _stream_rows(args, config)
    if rows:  # a pool larger than memory (pairs Parquet, JSONL, CSV): in chunks of `rows`
        return _run_streamed(args, filters, config, started, rows)
    pairs, rejects = read_input(args, with_rejects=True)
    eval_pairs, eval_inputs = None, None
    if args.eval_from:  # its unreadable rows are accounted for in dropped.parquet too
        eval_pairs, eval_rejects, eval_inputs = _read_eval_from(args)
        rejects = pd.concat([rejects, eval_rejects], ignore_index=True) if len(eval_rejects) else rejects
    read = pairs.attrs.get("read_stats", {})
    inputs = {"spec": args.input, "format": args.input_format,
              "rows_in_input": read.get("rows"), "records_read": read.get("records"),
              "rejected": read.get("rejected", 0), "ties_dropped": read.get("ties_dropped", 0)}
    try:
        inputs["file_sha256"] = file_sha256(args.input)
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        pass
    result = curate(pairs, filters, config, out_dir=args.out, eval_pairs=eval_pairs, inputs=inputs,
                    overwrite=args.overwrite, rejects=rejects, eval_inputs=eval_inputs)

    _print_summary(result, args, started)
    return 0


def _read_eval_from(args: argparse.Namespace):
    """``--eval-from`` read with its rejects and its own counts (for the manifest)."""
    eval_pairs, eval_rejects = read_input(args, dest="eval_from", with_rejects=True)
    read = eval_pairs.attrs.get("read_stats", {})
    return eval_pairs, eval_rejects, {"spec": args.eval_from, "rows_in_input": read.get("rows"),
                                      "records_read": read.get("records"), "rejected": read.get("rejected", 0),
                                      "ties_dropped": read.get("ties_dropped", 0),
                                      "unreadable": len(eval_rejects)}


def _print_summary(result, args: argparse.Namespace, started: float) -> None:
    counts = result.manifest["counts"]
    from_eval = result.manifest["inputs"].get("eval_from", {}).get("unreadable", 0)
    unreadable = (f"; {counts['unreadable']} unreadable input rows in dropped.parquet"
                  + (f" ({counts['unreadable'] - from_eval} of the pool, {from_eval} of --eval-from)"
                     if from_eval else "") if counts.get("unreadable") else "")
    eval_from = result.manifest["inputs"].get("eval_from")
    # counts are of the pool: with --eval-from none of it is held out, and eval.parquet is that split
    held_out = f"{eval_from['rows']} (from --eval-from)" if eval_from is not None else counts["eval"]
    print(f"curated {counts['input']} pairs -> train {counts['train']}, eval {held_out}, "
          f"dropped {counts['dropped']}{unreadable}  (scores {'cached' if result.manifest['score_cache']['hit'] else 'computed'}, "
          f"{time.time() - started:.1f} s)")
    for step in result.steps:
        print(f"  {step['label']:<22} -{step['dropped']:>7}  -> {step['rows_out']:>7}"
              f"   (alone: -{step['would_drop']})")
    print(f"wrote {args.out}/")


def _stream_rows(args: argparse.Namespace, config) -> int:
    """Rows per chunk when the pool is read chunk by chunk (:mod:`pairlab.curate.stream`),
    else 0. It streams when it is a single
    Parquet file in the pairs schema, read as is (no --map, no other layout), or a single
    JSONL/CSV/TSV file (any compression, any layout and --map); and either ``chunk_rows``
    set or more rows than :data:`~pairlab.curate.stream.STREAM_ABOVE_ROWS` (for a line file:
    more lines)."""
    from ..io.sources import is_line_file
    from ..schema import PAIR_COLUMNS
    from .stream import chunk_size, parquet_rows

    if getattr(args, "input_hub_config", None) or getattr(args, "input_hub_revision", None):
        return 0  # hub options on a file: the whole-file reader refuses them (exit 2), as it should
    if is_line_file(args.input):
        return chunk_size(args.input, config)
    if parquet_rows(args.input) is None or getattr(args, "input_map", None) \
            or getattr(args, "input_format", "auto") not in ("auto", "pairs"):
        return 0
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(args.input).schema_arrow.names)
    return chunk_size(args.input, config) if all(c in names for c in PAIR_COLUMNS) else 0


def _run_streamed(args: argparse.Namespace, filters, config, started: float, rows: int) -> int:
    """A pairs Parquet pool streams as it is; a JSONL/CSV/TSV pool is first converted,
    chunk by chunk, into a pairs Parquet in the cache (keyed by the file's sha256 and the
    read options: a second curation of the file reuses it), whose rejected rows go to
    dropped.parquet as unreadable, as the in-memory path records them."""
    import pandas as pd

    from ..artifacts import file_sha256
    from ..dirs import check_input_file
    from ..io.sources import is_line_file
    from .stream import curate_stream

    check_input_file(args.input)  # a file inside a stage directory: only when complete
    pool, rejects = args.input, None
    inputs = {"spec": args.input, "format": args.input_format, "file_sha256": file_sha256(args.input)}
    if is_line_file(args.input):
        from ..io.convert import cached_parquet

        pool, read, rejects = cached_parquet(args.input, chunk_rows=rows, format=args.input_format,
                                             mapping=args.input_map, binarize=args.input_binarize,
                                             pairing=args.input_pairing, seed=args.input_seed,
                                             strict=args.strict, file_sha256=inputs["file_sha256"],
                                             split=getattr(args, "input_split", None))
        inputs.update(rows_in_input=read.get("rows"), records_read=read.get("records"),
                      rejected=read.get("rejected", 0), ties_dropped=read.get("ties_dropped", 0))
        announce_rejects("curate", read)
    eval_pairs, eval_inputs = None, None
    if args.eval_from:  # its unreadable rows are accounted for in dropped.parquet too
        eval_pairs, eval_rejects, eval_inputs = _read_eval_from(args)
        if len(eval_rejects):
            rejects = eval_rejects if rejects is None or not len(rejects) else \
                pd.concat([rejects, eval_rejects], ignore_index=True)
    result = curate_stream(pool, filters, config, out_dir=args.out, eval_pairs=eval_pairs,
                           inputs=inputs, overwrite=args.overwrite, chunk_rows=rows, rejects=rejects,
                           eval_inputs=eval_inputs)
    _print_summary(result, args, started)
    return 0


COMMANDS = [Command(
    name="curate",
    help="score, split and filter preference pairs; write kept/dropped/scores + report",
    description="Score every pair (rating gap, tokens with the target chat template, "
                "duplicates, refusals, contamination, ...), hold out an eval split by prompt "
                "hash, apply a YAML filter spec in order, and write the audit trail.",
    add_arguments=add_arguments,
    run=run,
)]
