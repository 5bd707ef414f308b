"""``read_pairs``: any supported input -> one pairs table (see :mod:`pairlab.schema`).

Steps per file: load records (:mod:`.sources`) -> apply ``--map`` and aliases
(:mod:`.fields`) -> detect or take the layout (:mod:`.layouts`) -> rows (flat layouts
directly, raw through :mod:`.raw` binarization) -> ``schema.finalize_pairs`` (ids, text,
defaults, flags). Read statistics land in ``df.attrs["read_stats"]``.

A row that cannot become a pair never aborts the file: it is caught where it fails
(source, layout, scores) into the rejects table, so ``read + rejected = rows``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..schema import PAIR_COLUMNS, PairDataError, finalize_pairs
from . import fields, layouts, sources
from .rejects import RejectLog, all_rejected_error


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
    stats: dict[str, Any] = {"spec": spec_text, "format": fmt, "files": [], "layouts": {},
                             "rows": 0, "records": 0, "rejected": 0, "pairs": 0,
                             "ties_dropped": 0, "mapping": dict(explicit), "auto_mapped": {},
                             "dropped_columns": []}
    if fmt == "raw" or fmt == "auto":
        stats.update(binarize=binarize, pairing=pairing, seed=int(seed))
    if (hub_config or hub_revision) and not sources.is_hub_id(spec_text):
        raise PairDataError("--hub-config and --hub-revision apply to hub dataset ids only",
                            file=spec_text, field="--hub-config" if hub_config else "--hub-revision")

    def batch_frame(load) -> pd.DataFrame:
        mark = len(log)
        batch = load()
        frame = _read_batch(batch, fmt, explicit, stats, log, binarize, pairing, seed)
        rejected = len(log) - mark
        if batch.rows == 0:
            raise PairDataError("empty file: no records", file=batch.name,
                                hint="expected JSON objects (one per line or a list), "
                                     "Parquet rows, or CSV/TSV rows under a header")
        if rejected == batch.rows:
            raise all_rejected_error(log.rows[mark], rejected)
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
        for file in sources.list_files(spec_text):
            fast = _read_pairs_parquet(file, fmt, explicit, stats)
            frames.append(fast if fast is not None else
                          batch_frame(lambda file=file: sources.read_file(file, log)))
    df = _concat(frames)
    stats["pairs"] = len(df)
    stats["flagged"] = int((df["flags"] != "").sum())
    stats["rejects"] = log.head()
    found = sorted(set(stats["layouts"].values()))
    stats["layout"] = found[0] if len(found) == 1 else "mixed: " + ", ".join(found)
    if "raw" not in found:
        for key in ("binarize", "pairing", "seed"):
            stats.pop(key, None)
    df.attrs["read_stats"] = stats
    return df, log.frame()


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if len(frames) == 1:
        return frames[0]
    df = pd.concat(frames, ignore_index=True)
    if df["pair_id"].duplicated().any():  # the same pair in two files: re-derive repeat ids
        df = finalize_pairs(df.drop(columns=["pair_id"]))
    return df


def _read_pairs_parquet(path: Path, fmt: str, explicit: dict, stats: dict) -> pd.DataFrame | None:
    """Fast, lossless path for Parquet pairs tables pairlab wrote (no per-record Python)."""
    if path.suffix != ".parquet" or fmt not in ("auto", "pairs") or explicit:
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
    empty = finalize_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS)))
    if not batch.records:  # nothing parsed: the caller says empty or all rejected
        return empty
    fields.check_explicit_found(batch.records, explicit, batch.name)
    registry = layouts.LAYOUT_REGISTRY
    first = fmt if fmt != "auto" else layouts.probe_layout(batch.records, explicit)
    if first is not None and not registry[first].flat:
        plan, auto = dict(explicit), {}  # flat-layout aliases must not rename this layout's fields
    else:
        plan, auto = fields.resolve_plan(batch.records, explicit, layouts.FLAT_FIELDS)
    records = [fields.apply_plan(rec, plan) for rec in batch.records]
    layout = fmt if fmt != "auto" else layouts.probe_layout(records, plan)
    if layout is None:
        raise layouts.unknown_layout_error(batch)
    stats["layouts"][batch.name] = layout
    if auto:
        stats["auto_mapped"].update(auto)
    context = layouts.ReadContext(batch, records, log, plan, stats=stats,
                                  options={"binarize": binarize, "pairing": pairing, "seed": seed})
    return registry[layout].rows(context)
