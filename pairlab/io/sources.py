"""Where records come from: a file, a directory of files, or a hub dataset id.

Each source yields a :class:`RecordBatch`: the records as plain dicts plus, for every
record, where it sits in its file (1-based line for JSONL, 0-based row for Parquet,
JSON arrays and hub datasets), so any later error can point at it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..schema import PairDataError

SUFFIXES = (".jsonl", ".json", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class RecordBatch:
    """Records read from one file (or one hub split), with their positions."""

    name: str
    records: list[dict[str, Any]]
    positions: list[int]
    position_kind: str  # "line" (1-based) or "row" (0-based)

    def where(self, index: int) -> dict[str, Any]:
        """Keyword arguments locating record ``index`` for :class:`PairDataError`."""
        return {"file": self.name, self.position_kind: self.positions[index]}


def list_files(spec: str | Path) -> list[Path]:
    """The files a local spec names (a file, or a directory's data files sorted by name)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise PairDataError("directory holds no .jsonl/.json/.parquet files", file=str(path))
        return files
    if path.exists():
        if path.suffix not in SUFFIXES:
            raise PairDataError(f"unsupported file type '{path.suffix}'", file=str(path),
                                hint="use .jsonl, .json or .parquet")
        return [path]
    raise PairDataError("no such file or directory", file=str(path))


def is_hub_id(spec: str) -> bool:
    """'org/name' or 'name' that is not a local path and has no data-file suffix."""
    return (not Path(spec).expanduser().exists() and not spec.endswith(SUFFIXES)
            and not spec.startswith((".", "/", "~")) and bool(_HUB_ID.match(spec)))


# ---------------------------------------------------------------- files

def read_file(path: Path) -> RecordBatch:
    """One local file -> its records (no layout logic here)."""
    if path.suffix == ".parquet":
        batch = _read_parquet(path)
    elif path.suffix == ".json":
        batch = _read_json(path)
    else:
        batch = _read_jsonl(path)
    if not batch.records:
        raise PairDataError("empty file: no records", file=str(path),
                            hint="expected one JSON object per line, a JSON list, or Parquet rows")
    return batch


def _read_jsonl(path: Path) -> RecordBatch:
    records, lines = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise PairDataError(f"malformed JSON ({err.msg} at column {err.colno})",
                                    file=str(path), line=lineno,
                                    hint="each line must be one complete JSON object") from None
            if not isinstance(record, dict):
                raise PairDataError(f"expected a JSON object, got {type(record).__name__}",
                                    file=str(path), line=lineno)
            records.append(record)
            lines.append(lineno)
    return RecordBatch(str(path), records, lines, "line")


def _read_json(path: Path) -> RecordBatch:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # a .json file that is really JSON lines
            return _read_jsonl(path)
        raise PairDataError(f"malformed JSON ({err.msg} at column {err.colno})",
                            file=str(path), line=err.lineno) from None
    if isinstance(data, dict):
        # {"data": [...]} style wrappers; a single object is one record.
        lists = [v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        data = lists[0] if len(lists) == 1 and len(data) <= 2 else [data]
    if not isinstance(data, list):
        raise PairDataError(f"expected a JSON list of objects, got {type(data).__name__}",
                            file=str(path))
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise PairDataError(f"expected a JSON object, got {type(record).__name__}",
                                file=str(path), row=i)
    return RecordBatch(str(path), data, list(range(len(data))), "row")


def _read_parquet(path: Path) -> RecordBatch:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise PairDataError(f"cannot read Parquet: {err}", file=str(path)) from None
    records = table.to_pylist()
    return RecordBatch(str(path), records, list(range(len(records))), "row")


# ---------------------------------------------------------------- hub

def read_hub(dataset_id: str, split: str | None) -> RecordBatch:
    """A hub dataset split via ``datasets.load_dataset`` (needs network or a warm cache)."""
    try:
        import datasets

        loaded = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # offline, unknown id, bad split: all end the same way for a user
        offline = _offline_mode()
        raise PairDataError(
            f"cannot load hub dataset ({type(err).__name__}: {str(err).splitlines()[0][:300]})",
            file=dataset_id,
            hint=("HF offline mode is on and the dataset is not cached; " if offline else
                  "no network, a wrong id or a wrong --split? ")
            + "download it where there is network and pass the local .parquet/.jsonl file",
        ) from None
    if isinstance(loaded, dict):  # a DatasetDict: the user must pick a split
        splits = list(loaded)
        if len(splits) != 1:
            raise PairDataError(f"name a split with --split (available: {', '.join(splits)})",
                                file=dataset_id, field="split")
        split, loaded = splits[0], loaded[splits[0]]
    records = loaded.to_list()
    name = f"{dataset_id}[{split}]"
    if not records:
        raise PairDataError("empty dataset split: no records", file=name)
    return RecordBatch(name, records, list(range(len(records))), "row")


def _offline_mode() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with datasets
        return False
