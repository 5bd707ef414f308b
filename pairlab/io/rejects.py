"""The rejects table: input rows that cannot become a pair, each with where and why.

Readers never let one bad row abort a file. Every per-row problem is a
:class:`~pairlab.schema.PairDataError` (file, line or row, field, message, hint); a
:class:`RejectLog` catches it as a row of the rejects table and the read goes on. With
``strict=True`` the first one is raised instead (``--strict``: today's one-line error,
exit 2). Whole-file problems (unknown layout, undecodable container, a ``--map`` path no
record has, every row rejected) stay errors.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..artifacts import finite_or_null
from ..schema import PairDataError

#: Columns of the rejects table, in order. ``line`` is 1-based (JSONL, CSV), ``row``
#: 0-based (Parquet, JSON arrays, datasets); the other one is null.
REJECT_COLUMNS: dict[str, str] = {
    "file": "input file (or hub id / dataset directory) the row comes from",
    "line": "1-based line of the row (JSONL, CSV/TSV), else null",
    "row": "0-based row index (Parquet, JSON arrays, datasets), else null",
    "field": "the schema or input field at fault (null when the whole row is unreadable)",
    "reason": "why the row cannot become a pair",
    "hint": "how to fix it ('' when there is nothing more to say)",
    "record": "the row as read (JSON), or the raw line when it did not parse",
}

#: How many rejects ``df.attrs["read_stats"]["rejects"]`` lists (the full table comes
#: from :func:`pairlab.io.read_pairs_with_rejects`; attrs are copied on every pandas op).
HEAD = 10


class RejectLog:
    """Collects rejected rows; raises the first one instead when ``strict``."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, err: PairDataError, record: Any = None) -> None:
        if self.strict:
            raise err
        self.rows.append({"file": err.file, "line": err.line, "row": err.row, "field": err.field,
                          "reason": err.message, "hint": err.hint or "",
                          "record": record_text(record)})

    def sort_from(self, start: int = 0) -> None:
        """Put the rejects from ``start`` on in file order (by line or row).

        Rows are rejected where they fail: unparseable lines while the file is read, the
        others when the layout reads the records, score by score. File order makes the
        table (and its "first" reject) the same however the file was read, whole or in
        chunks. Stable: one row is rejected at most once.
        """
        self.rows[start:] = sorted(self.rows[start:], key=_position)

    def frame(self) -> pd.DataFrame:
        # object text columns keep None for "no field" (pandas 3 would infer str with NaN)
        return pd.DataFrame({col: pd.Series([r[col] for r in self.rows],
                                            dtype="Int64" if col in ("line", "row") else object)
                             for col in REJECT_COLUMNS})

    def head(self, start: int = 0, n: int = HEAD) -> list[dict[str, Any]]:
        """The first ``n`` rejects from ``start`` on, without the record (for read_stats)."""
        return [{k: v for k, v in r.items() if k != "record" and v is not None}
                for r in self.rows[start:start + n]]


def _position(reject: dict[str, Any]) -> int:
    for key in ("line", "row"):
        if reject[key] is not None:
            return int(reject[key])
    return -1  # no position: a whole-batch problem, ahead of its rows


def record_text(record: Any) -> str:
    """A rejected record as text: raw lines stay as they are; parsed values become JSON."""
    if record is None:
        return ""
    if isinstance(record, str):
        return record
    try:
        return json.dumps(finite_or_null(record), ensure_ascii=False, default=_plain, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(record)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


#: File types :func:`write_rejects` writes.
REJECT_SUFFIXES = (".parquet", ".jsonl", ".csv")


def write_rejects(rejects: pd.DataFrame, path: str | Path) -> Path:
    """Write the rejects table atomically: ``.parquet``, ``.jsonl`` or ``.csv`` by suffix."""
    from .. import artifacts

    path = Path(path)
    if path.suffix == ".parquet":
        return artifacts.write_parquet(path, rejects)
    out = rejects.astype(object).where(rejects.notna(), None)
    if path.suffix == ".jsonl":
        return artifacts.write_jsonl(path, out)
    if path.suffix == ".csv":
        with artifacts.atomic_path(path) as tmp:
            out.to_csv(tmp, index=False)
        return path
    raise unsupported_rejects_path(path)


def unsupported_rejects_path(path: str | Path) -> PairDataError:
    """The error for a rejects file of a type :func:`write_rejects` does not write."""
    return PairDataError(f"unsupported output type '{Path(path).suffix}'", file=str(path),
                         field="--rejects", hint="write " + ", ".join(REJECT_SUFFIXES[:-1])
                         + " or " + REJECT_SUFFIXES[-1])


def describe_reject(reject: dict[str, Any]) -> str:
    """'data.jsonl, line 3, field 'chosen': wrong type: ...' for one reject (a head entry)."""
    where = [str(reject.get("file"))]
    for key, label in (("line", "line {}"), ("row", "row {}"), ("field", "field '{}'")):
        if reject.get(key) is not None:
            where.append(label.format(reject[key]))
    return f"{', '.join(where)}: {reject.get('reason', '')}"


def all_rejected_error(first: dict[str, Any], n: int) -> PairDataError:
    """A file none of whose rows could be read: an error naming the first reject."""
    return PairDataError(
        f"no row could be read ({n} of {n} rejected); the first: {first['reason']}",
        file=first["file"], line=first["line"], row=first["row"], field=first["field"],
        hint=first["hint"] or "check --format and --map against the file's fields")


def all_ties_error(file: str, stats: dict[str, Any]) -> PairDataError:
    """A file whose readable rows are all ties (a label preferring neither answer, raw records
    whose completions all score the same): no pair to write."""
    return PairDataError(
        f"no pair: every row read is a tie ({stats.get('ties_dropped', 0)} ties dropped, "
        f"{stats.get('rejected', 0)} rows rejected)", file=file,
        hint="a tie names no preferred answer, so it cannot be a preference pair")


__all__ = ["HEAD", "REJECT_COLUMNS", "RejectLog", "all_rejected_error", "all_ties_error", "describe_reject",
           "record_text", "write_rejects"]
