"""``read_pairs``: any supported input -> one pairs table (see :mod:`pairlab.schema`).

Steps per file: load records (:mod:`.sources`) -> apply ``--map`` and aliases
(:mod:`.fields`) -> detect or take the layout (:mod:`.layouts`) -> rows (flat layouts
directly, raw through :mod:`.raw` binarization) -> ``schema.finalize_pairs`` (ids, text,
defaults, flags). Read statistics land in ``df.attrs["read_stats"]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..schema import PAIR_COLUMNS, PairDataError, finalize_pairs
from . import fields, layouts, raw, sources


def read_pairs(spec: str | Path, format: str = "auto",
               mapping: Mapping[str, str] | Iterable[str] | None = None, split: str | None = None,
               binarize: str = "mean-aspects", pairing: str = "best-vs-random",
               seed: int = 0) -> pd.DataFrame:
    """Read preference data in any supported layout into a pairs table.

    Parameters
    ----------
    spec : a .jsonl/.json/.parquet file, a directory of them (read in sorted order), or a
        hub dataset id (``org/name``; loaded with ``datasets.load_dataset(id, split=split)``).
    format : ``auto`` (detect per file) or one of :data:`layouts.LAYOUTS`.
    mapping : ``["field=dotted.path", ...]`` or ``{"field": "dotted.path"}``.
    split : hub split (e.g. ``train_prefs``).
    binarize, pairing, seed : raw UltraFeedback only (see :mod:`pairlab.io.raw`).

    Returns
    -------
    A pairs table; ``df.attrs["read_stats"]`` says what was read (layout, rows, pairs,
    ties dropped, fields mapped automatically, ...).

    Raises
    ------
    PairDataError naming file, line/row and field for anything unreadable.
    """
    fmt = layouts.canonical_format(format)
    explicit = fields.parse_mapping(mapping)
    spec_text = str(spec)
    stats: dict[str, Any] = {"spec": spec_text, "format": fmt, "files": [], "layouts": {},
                             "records": 0, "pairs": 0, "ties_dropped": 0, "mapping": dict(explicit), "auto_mapped": {},
                             "dropped_columns": []}
    if fmt == "raw" or fmt == "auto":
        stats.update(binarize=binarize, pairing=pairing, seed=int(seed))

    frames = []
    if sources.is_hub_id(spec_text):
        frames.append(_read_batch(sources.read_hub(spec_text, split), fmt, explicit, stats,
                                  binarize, pairing, seed))
    else:
        for path in sources.list_files(spec_text):
            fast = _read_pairs_parquet(path, fmt, explicit, stats)
            frames.append(fast if fast is not None else
                          _read_batch(sources.read_file(path), fmt, explicit, stats,
                                      binarize, pairing, seed))
    df = _concat(frames)
    stats["pairs"] = len(df)
    stats["flagged"] = int((df["flags"] != "").sum())
    found = sorted(set(stats["layouts"].values()))
    stats["layout"] = found[0] if len(found) == 1 else "mixed: " + ", ".join(found)
    if "raw" not in found:
        for key in ("binarize", "pairing", "seed"):
            stats.pop(key, None)
    df.attrs["read_stats"] = stats
    return df


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
    stats["records"] += len(df)
    return layouts.pairs_frame(df, str(path))


def _read_batch(batch: sources.RecordBatch, fmt: str, explicit: dict, stats: dict,
                binarize: str, pairing: str, seed: int) -> pd.DataFrame:
    stats["files"].append(batch.name)
    stats["records"] += len(batch.records)
    fields.check_explicit_found(batch.records, explicit, batch.name)
    if fmt in ("raw", "pairs") or (fmt == "auto" and _looks_raw_or_pairs(batch.records[0], explicit)):
        plan, auto = dict(explicit), {}  # flat-layout aliases must not rename raw/pairs fields
    else:
        plan, auto = fields.resolve_plan(batch.records, explicit, layouts.FLAT_FIELDS)
    records = [fields.apply_plan(rec, plan) for rec in batch.records]
    layout = fmt if fmt != "auto" else layouts.detect_layout(records[0], plan)
    if layout is None:
        raise layouts.unknown_layout_error(batch)
    stats["layouts"][batch.name] = layout
    if auto:
        stats["auto_mapped"].update(auto)

    if layout == "pairs":
        return layouts.pairs_frame(pd.DataFrame(records), batch.name)
    if layout == "raw":
        rows, counts = raw.binarize(batch, records, binarize, pairing, seed)
        for key, value in counts.items():
            stats[key] = stats.get(key, 0) + value
        if len(rows) == 0:
            return finalize_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS)))
        if "true_preference_correct" in rows:
            correct = rows["true_preference_correct"]
            rows["true_preference_correct"] = (correct.astype(bool) if correct.notna().all()
                                               else correct.astype("boolean"))
    else:
        rows = layouts.flat_rows(batch, records, layout)
        if layout == "h4" and "messages" in records[0] and "messages" not in stats["dropped_columns"]:
            stats["dropped_columns"].append("messages")
    return finalize_pairs(rows)


def _looks_raw_or_pairs(record: dict, explicit: dict) -> bool:
    probe = fields.apply_plan(record, explicit)
    return layouts.detect_layout(probe, explicit) in ("raw", "pairs")
