"""``read_pairs``: any supported input -> one pairs table (see :mod:`pairlab.schema`).

Steps per file: load records (:mod:`.sources`) -> apply ``--map`` and aliases
(:mod:`.fields`) -> detect or take the layout (:mod:`.layouts`) -> rows (flat layouts
directly, raw through :mod:`.raw` binarization) -> ``schema.finalize_pairs`` (ids, text,
defaults, flags). Read statistics land in ``df.attrs["read_stats"]``.

A row that cannot become a pair never aborts the file: it is caught where it fails
(source, layout, scores) into the rejects table, so ``read + rejected = rows``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from ..schema import PAIR_COLUMNS, PairDataError, finalize_pairs
from . import fields, layouts, raw, sources
from .rejects import HEAD, RejectLog, all_rejected_error, all_ties_error

#: Rows per chunk of :func:`iter_pairs_chunks` unless told.
CHUNK_ROWS = 10_000


def read_pairs(spec: str | Path, format: str = "auto",
               mapping: Mapping[str, str] | Iterable[str] | None = None, split: str | None = None,
               binarize: str = "mean-aspects", pairing: str = "best-vs-random",
               seed: int = 0, *, strict: bool = False, hub_config: str | None = None,
               hub_revision: str | None = None) -> pd.DataFrame:
    """Read preference data in any supported layout into a pairs table.

    Parameters
    ----------
    spec : a data file (.jsonl, .json, .parquet, .csv, .tsv; each may end in .gz, .bz2,
        .xz or .zst), a directory of them (read in sorted order), a ``datasets``
        ``save_to_disk`` directory, or a hub dataset id (``org/name``, online).
    format : ``auto`` (detect per file) or a layout of :data:`layouts.LAYOUT_REGISTRY`.
    mapping : ``["field=dotted.path", ...]`` or ``{"field": "dotted.path"}``.
    split : split of a hub dataset or a saved DatasetDict (e.g. ``train_prefs``).
    binarize, pairing, seed : raw UltraFeedback only (see :mod:`pairlab.io.raw`).
    strict : raise the first rejected row instead of collecting it.
    hub_config, hub_revision : a hub dataset's config (subset) name and revision
        (branch, tag or commit).

    Returns
    -------
    A pairs table; ``df.attrs["read_stats"]`` says what was read (layout, ``rows`` in
    the input, ``records`` read, ``rejected`` rows and the first few of them, pairs,
    ties dropped, fields mapped automatically, ...). ``records + rejected == rows``.
    The full rejects table comes from :func:`read_pairs_with_rejects`.

    Raises
    ------
    PairDataError naming file, line/row and field: for the first bad row with
    ``strict``, else only for what spoils a whole file (unreadable container, unknown
    layout, a ``--map`` path no record has, every row rejected).
    """
    return read_pairs_with_rejects(spec, format, mapping, split, binarize, pairing, seed,
                                   strict=strict, hub_config=hub_config,
                                   hub_revision=hub_revision)[0]


def read_pairs_with_rejects(spec: str | Path, format: str = "auto",
                            mapping: Mapping[str, str] | Iterable[str] | None = None,
                            split: str | None = None, binarize: str = "mean-aspects",
                            pairing: str = "best-vs-random", seed: int = 0, *,
                            strict: bool = False, hub_config: str | None = None,
                            hub_revision: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`read_pairs`, plus the rejects table (:data:`rejects.REJECT_COLUMNS`).

    Every input row is in exactly one of the two: read (it gave zero or more pairs), or
    rejected with its file, line or row, field and reason.
    """
    fmt = layouts.canonical_format(format)
    explicit = fields.parse_mapping(mapping)
    spec_text = str(spec)
    log = RejectLog(strict=strict)
    stats = _new_stats(spec_text, fmt, explicit, binarize, pairing, seed)
    if (hub_config or hub_revision) and not sources.is_hub_id(spec_text):
        raise PairDataError("--hub-config and --hub-revision apply to hub dataset ids only",
                            file=spec_text, field="--hub-config" if hub_config else "--hub-revision")

    def all_rejected(mark: int, rejected: int) -> PairDataError:
        err = all_rejected_error(log.rows[mark], rejected)
        every = RejectLog()
        every.rows = log.rows[mark:]
        err.rejects = every.frame()  # convert --rejects keeps them even so
        return err

    def batch_frame(load, whole: bool = True) -> pd.DataFrame:
        """One file's (or dataset's) pairs. ``whole=False``: one of a folder's several files,
        which may be empty or have every row rejected (the folder as a whole is checked)."""
        mark = len(log)
        batch = load()
        frame = _read_batch(batch, fmt, explicit, stats, log, binarize, pairing, seed)
        log.sort_from(mark)  # file order, as the chunked reader gives it
        rejected = len(log) - mark
        if batch.rows == 0 and whole:
            raise PairDataError("empty file: no records", file=batch.name,
                                hint="expected JSON objects (one per line or a list), "
                                     "Parquet rows, or CSV/TSV rows under a header")
        if rejected == batch.rows and whole:
            raise all_rejected(mark, rejected)
        stats["rows"] += batch.rows
        stats["records"] += batch.rows - rejected
        stats["rejected"] += rejected
        return frame

    frames = []
    path = Path(spec_text).expanduser()
    if sources.is_hub_id(spec_text):
        frames.append(batch_frame(lambda: sources.read_hub(spec_text, split, hub_config,
                                                           hub_revision)))
    elif sources.is_saved_dataset(path):
        frames.append(batch_frame(lambda: sources.read_saved(path, split)))
    else:
        files = sources.list_files(spec_text, split)
        for file in files:
            fast = _read_pairs_parquet(file, fmt, explicit, stats)
            frames.append(fast if fast is not None else
                          batch_frame(lambda file=file: sources.read_file(
                              file, log, split if file == path or sources.split_of(file) is None else None),
                              whole=len(files) == 1))
        # A folder's files are checked together: one empty shard, or one whose every row is
        # rejected, is counted (its rows in the rejects) and the others are read.
        if len(files) > 1 and stats["rows"] == 0:
            raise PairDataError("no records in any of its files", file=str(path),
                                hint="expected JSON objects (one per line or a list), "
                                     "Parquet rows, or CSV/TSV rows under a header")
        if len(files) > 1 and stats["rows"] and stats["rejected"] == stats["rows"]:
            raise all_rejected(0, stats["rejected"])
    df = _concat(frames)
    if len(frames) == 1 and df["pair_id"].duplicated().any():  # a pairs table of joined files
        df["pair_id"] = _UniqueIds().unique(df["pair_id"], stats)
    if len(df) == 0 and stats["ties_dropped"]:
        err = all_ties_error(spec_text, stats)
        if len(log):
            err.rejects = log.frame()  # convert --rejects keeps the rows that were rejected
        raise err
    stats["pairs"] = len(df)
    stats["flagged"] = int((df["flags"] != "").sum())
    stats["rejects"] = log.head()
    _finish_stats(stats)
    df.attrs["read_stats"] = stats
    return df, log.frame()


def iter_pairs_chunks(spec: str | Path, format: str = "auto",
                      mapping: Mapping[str, str] | Iterable[str] | None = None,
                      split: str | None = None, binarize: str = "mean-aspects",
                      pairing: str = "best-vs-random", seed: int = 0, *, strict: bool = False,
                      hub_config: str | None = None, hub_revision: str | None = None,
                      chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """:func:`read_pairs_with_rejects`, ``chunk_rows`` input rows at a time: ``(pairs, rejects)``.

    A single JSONL, CSV or TSV file (any compression) is read chunk by chunk, in bounded
    memory; any other input (Parquet, JSON, a directory, a dataset) is read whole and
    comes as one chunk. Concatenated, the chunks are what the whole-file read gives: the
    same pairs and ``pair_id``s (repeats of a pair are numbered ``-1``, ``-2``... across
    chunks), the same rejects in file order, the same ``read_stats``.

    How a file is read is decided once, on its first chunk, which is extended until it
    holds :data:`~pairlab.io.layouts.PROBE` (50) parsed records: the first records decide
    the layout and the field plan, as they do for the whole file. Later chunks are read
    with that layout and plan; a record they do not fit is rejected with a reason (a chunk
    that fails as a whole has each of its rows rejected), never a crash. Whole-file errors
    keep their meaning and come at the end, after the last chunk was read: an empty file,
    every row rejected, a ``--map`` path no record has (raised at once when the first chunk
    has no layout either), raw records of which no completion has a score.

    Each chunk's ``pairs.attrs["read_stats"]`` holds the statistics so far; the last
    chunk's are the whole file's. A chunk may hold no pairs (every row in it rejected).
    """
    if not sources.is_line_file(spec):
        yield read_pairs_with_rejects(spec, format, mapping, split, binarize, pairing, seed, strict=strict,
                                      hub_config=hub_config, hub_revision=hub_revision)
        return
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    fmt = layouts.canonical_format(format)
    explicit = fields.parse_mapping(mapping)
    if hub_config or hub_revision:
        raise PairDataError("--hub-config and --hub-revision apply to hub dataset ids only",
                            file=str(spec), field="--hub-config" if hub_config else "--hub-revision")
    path = Path(spec).expanduser()
    name = str(path)
    stats = _new_stats(str(spec), fmt, explicit, binarize, pairing, seed)
    stats.update(files=[name], flagged=0, rejects=[])
    options = {"binarize": binarize, "pairing": pairing, "seed": seed}
    log = RejectLog(strict=strict)  # emptied after each chunk: only one chunk's rejects in memory
    layout, plan = None, {}
    found: set[str] = set()
    first_record, first_reject = None, None
    repeats, own_ids = _RepeatIds(), _UniqueIds()
    for index, (batch, last) in enumerate(sources.iter_record_batches(path, log, chunk_rows,
                                                                      min_records=layouts.PROBE, split=split)):
        frame = None
        if batch.records:
            first_record = first_record if first_record is not None else batch.records[0]
            found |= fields.explicit_found(batch.records, explicit)
            if layout is None:  # the first chunk: it holds the file's first PROBE records
                layout, plan, auto = _detect(batch, fmt, explicit)
                if layout is None:
                    missing = [f for f in explicit if f not in found]
                    if missing:  # most likely the reason no layout fits: say that
                        raise fields.missing_path_error(missing[0], explicit[missing[0]], name, first_record)
                    raise layouts.unknown_layout_error(batch)
                stats["layouts"][name] = layout
                stats["auto_mapped"].update(auto)
            frame = _chunk_frame(batch, layout, plan, stats, log, options, index)
            if frame is not None and layout != "pairs":
                frame["pair_id"] = repeats.renumber(frame["pair_id"])
            elif frame is not None:  # a pairs table's ids are kept, unless an earlier row has the id
                frame["pair_id"] = own_ids.unique(frame["pair_id"], stats)
        if frame is None or len(frame) == 0:
            frame = finalize_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS)))
        log.sort_from(0)
        first_reject = first_reject or (log.rows[0] if log.rows else None)
        stats["rejects"] += log.head(0, HEAD - len(stats["rejects"]))
        stats["rows"] += batch.rows
        stats["rejected"] += len(log)
        stats["records"] += batch.rows - len(log)
        stats["pairs"] += len(frame)
        stats["flagged"] += int((frame["flags"] != "").sum())
        rejects = log.frame()
        log.rows = []
        if last:
            try:
                _whole_file_checks(stats, explicit, found, first_record, first_reject, layout, name, binarize)
            except PairDataError as err:
                if stats["rows"] and stats["rejected"] and (stats["rejected"] == stats["rows"] or stats["pairs"] == 0):
                    err.rejects = rejects  # the last chunk's: the caller holds the earlier ones
                raise
        snapshot = copy.deepcopy(stats)
        _finish_stats(snapshot)
        frame.attrs["read_stats"] = snapshot
        yield frame, rejects


def _chunk_frame(batch: sources.RecordBatch, layout: str, plan: dict[str, str], stats: dict,
                 log: RejectLog, options: dict[str, Any], chunk: int) -> pd.DataFrame | None:
    """One chunk's pairs. A later chunk the file's layout refuses as a whole (a layout's
    whole-table check, e.g. one a registered layout makes): each of its rows is rejected
    with that reason, and the file is read on."""
    mark = len(log)
    try:
        return _batch_rows(batch, layout, plan, stats, log, options, chunk)
    except PairDataError as err:
        if chunk == 0 or log.strict:
            raise
        del log.rows[mark:]
        for i, record in enumerate(batch.records):
            log.add(PairDataError(err.message, field=err.field, hint=err.hint, **batch.where(i)), record)
        return None


def _whole_file_checks(stats: dict, explicit: dict, found: set, first_record: dict | None,
                       first_reject: dict | None, layout: str | None, name: str, binarize: str) -> None:
    """After a file's last chunk: the errors the whole-file read raises, in its order."""
    if stats["rows"] == 0:
        raise PairDataError("empty file: no records", file=name,
                            hint="expected JSON objects (one per line or a list), "
                                 "Parquet rows, or CSV/TSV rows under a header")
    if first_record is not None:
        missing = [f for f in explicit if f not in found]
        if missing:
            raise fields.missing_path_error(missing[0], explicit[missing[0]], name, first_record)
        if layout == "raw" and stats.get("completions") and \
                stats["completions_unscored"] == stats["completions"]:
            raise raw.unscored_error(name, binarize)
    if stats["rejected"] == stats["rows"]:
        raise all_rejected_error(first_reject, stats["rejected"])
    if stats["pairs"] == 0 and stats["ties_dropped"]:
        raise all_ties_error(name, stats)


class _UniqueIds:
    """A pairs table's ids made unique as it is read: an id an earlier row already has (two
    converted files joined into one) becomes ``ID-1`` (``-2``, ... the first free), as pairlab
    numbers exact repeats; every other id is kept as it is. Counted in ``read_stats``
    (``repeated_pair_ids``). The same in whole and chunked reads: only earlier rows count."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def unique(self, ids: pd.Series, stats: dict[str, Any]) -> list[str]:
        out = []
        for pid in ids.astype(str):
            if pid in self.seen:
                k = 1
                while f"{pid}-{k}" in self.seen:
                    k += 1
                pid = f"{pid}-{k}"
                stats["repeated_pair_ids"] = stats.get("repeated_pair_ids", 0) + 1
            self.seen.add(pid)
            out.append(pid)
        return out


class _RepeatIds:
    """Repeat numbers of pair ids over a whole file read in chunks.

    :func:`~pairlab.schema.finalize_pairs` numbers the repeats of a pair (``-1``, ``-2``...)
    within its table; a chunk's count goes on from the chunks before it. The ids seen are
    kept as 64-bit hashes (8 bytes each, not a Python string), the repeat counts only for
    ids seen more than once.
    """

    def __init__(self) -> None:
        self.seen = np.zeros(0, dtype=np.uint64)
        self.copies: dict[int, int] = {}  # hash -> highest repeat number given so far

    def renumber(self, ids: pd.Series) -> np.ndarray:
        base = ids.astype(str).str.replace(r"-\d+$", "", regex=True)
        keys = pd.util.hash_array(base.to_numpy(dtype=object))
        prior = np.zeros(len(keys), dtype=np.int64)
        before = np.isin(keys, self.seen)
        prior[before] = [1 + self.copies.get(int(k), 0) for k in keys[before]]
        repeat = prior + pd.Series(keys).groupby(keys).cumcount().to_numpy()
        for key, number in zip(keys[repeat > 0], repeat[repeat > 0]):
            self.copies[int(key)] = max(self.copies.get(int(key), 0), int(number))
        self.seen = np.union1d(self.seen, keys)
        base = base.to_numpy(dtype=object)
        return np.where(repeat > 0, base + "-" + repeat.astype(str), base)


def _new_stats(spec: str, fmt: str, explicit: dict, binarize: str, pairing: str,
               seed: int) -> dict[str, Any]:
    stats: dict[str, Any] = {"spec": spec, "format": fmt, "files": [], "layouts": {},
                             "rows": 0, "records": 0, "rejected": 0, "pairs": 0,
                             "ties_dropped": 0, "mapping": dict(explicit), "auto_mapped": {},
                             "dropped_columns": []}
    if fmt == "raw" or fmt == "auto":
        stats.update(binarize=binarize, pairing=pairing, seed=int(seed))
    return stats


def _finish_stats(stats: dict[str, Any]) -> None:
    found = sorted(set(stats["layouts"].values()))
    stats["layout"] = found[0] if len(found) == 1 else "mixed: " + ", ".join(found)
    if "raw" not in found:
        for key in ("binarize", "pairing", "seed"):
            stats.pop(key, None)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if len(frames) == 1:
        return frames[0]
    df = pd.concat(frames, ignore_index=True)
    if df["pair_id"].duplicated().any():  # the same pair in two files: re-derive repeat ids
        df = finalize_pairs(df.drop(columns=["pair_id"]))
    return df


def _read_pairs_parquet(path: Path, fmt: str, explicit: dict, stats: dict) -> pd.DataFrame | None:
    """Fast, lossless path for Parquet pairs tables pairlab wrote (no per-record Python)."""
    from .sources import compression_of

    if path.suffix != ".parquet" or fmt not in ("auto", "pairs") or explicit or compression_of(path):
        return None
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as err:
        raise PairDataError(f"cannot read Parquet: {err}", file=str(path)) from None
    if not all(col in names for col in PAIR_COLUMNS):
        if fmt == "pairs":
            missing = [c for c in PAIR_COLUMNS if c not in names]
            raise PairDataError(f"not a pairs table: missing columns {missing}", file=str(path),
                                field=missing[0], hint="produce it with `pairlab convert`")
        return None
    df = pd.read_parquet(path)
    df.attrs = {}
    if len(df) == 0:
        raise PairDataError("empty file: no records", file=str(path))
    stats["files"].append(str(path))
    stats["layouts"][str(path)] = "pairs"
    stats["rows"] += len(df)
    stats["records"] += len(df)
    return layouts.pairs_frame(df, str(path))


def _read_batch(batch: sources.RecordBatch, fmt: str, explicit: dict, stats: dict,
                log: RejectLog, binarize: str, pairing: str, seed: int) -> pd.DataFrame:
    stats["files"].append(batch.name)
    if not batch.records:  # nothing parsed: the caller says empty or all rejected
        return finalize_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS)))
    fields.check_explicit_found(batch.records, explicit, batch.name)
    layout, plan, auto = _detect(batch, fmt, explicit)
    if layout is None:
        raise layouts.unknown_layout_error(batch)
    stats["layouts"][batch.name] = layout
    if auto:
        stats["auto_mapped"].update(auto)
    return _batch_rows(batch, layout, plan, stats, log,
                       {"binarize": binarize, "pairing": pairing, "seed": seed})


def _detect(batch: sources.RecordBatch, fmt: str, explicit: dict
            ) -> tuple[str | None, dict[str, str], dict[str, str]]:
    """(layout or None, field plan, the plan's alias-chosen part) from the batch's first
    records (the probe of :func:`layouts.probe_layout` and :func:`fields.resolve_plan`)."""
    registry = layouts.LAYOUT_REGISTRY
    first = fmt if fmt != "auto" else layouts.probe_layout(batch.records, explicit)
    if first is not None and not registry[first].flat:
        plan, auto = dict(explicit), {}  # flat-layout aliases must not rename this layout's fields
    else:
        plan, auto = fields.resolve_plan(batch.records, explicit, layouts.FLAT_FIELDS)
    records = [fields.apply_plan(rec, plan) for rec in batch.records[:layouts.PROBE]]
    layout = fmt if fmt != "auto" else layouts.probe_layout(records, plan)
    return layout, plan, auto


def _batch_rows(batch: sources.RecordBatch, layout: str, plan: dict[str, str], stats: dict,
                log: RejectLog, options: dict[str, Any], chunk: int | None = None) -> pd.DataFrame:
    """The batch's records through ``plan`` and ``layout``: a pairs table."""
    records = [fields.apply_plan(rec, plan) for rec in batch.records]
    context = layouts.ReadContext(batch, records, log, plan, stats=stats, options=options, chunk=chunk)
    return layouts.LAYOUT_REGISTRY[layout].rows(context)
