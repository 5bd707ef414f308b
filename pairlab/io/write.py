"""Writers: the pairs table as Parquet (canonical) or JSONL, and the dataset TRL trains on.

TRL 1.16's ``DPOTrainer`` takes a conversational, explicit-prompt preference dataset:
``prompt`` is a list of messages ending with the user turn, ``chosen`` and ``rejected``
are each a one-message list holding the assistant answer. It then renders
``prompt`` (with the generation prompt), ``prompt + chosen`` and ``prompt + rejected``
through the chat template and trains on the completion tokens. H4-style rows (full
conversations in chosen/rejected plus a string prompt) would render the prompt twice,
which is why readers split the conversation and this writer rebuilds the TRL shape.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..schema import PAIR_COLUMNS, PairDataError, as_messages, prompt_turns, validate_pairs

TRL_COLUMNS = ("prompt", "chosen", "rejected", "pair_id")


def write_pairs(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a pairs table atomically; ``.parquet`` (canonical) or ``.jsonl`` by suffix."""
    path = Path(path)
    validate_pairs(df)
    out = df.copy()
    out["prompt"] = [as_messages(m) for m in out["prompt"]]
    out.attrs = _jsonable_attrs(df.attrs)
    if path.suffix == ".parquet":
        return artifacts.write_parquet(path, _arrow_safe(out), keep_attrs=True)
    if path.suffix == ".jsonl":
        # Missing values as JSON null (NaN is not valid JSON; pd.NA is not serialisable).
        for col in out.columns:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
        return artifacts.write_jsonl(path, out)
    raise PairDataError(f"unsupported output type '{path.suffix}'", file=str(path),
                        hint="write .parquet (canonical) or .jsonl")


class PairsParquetWriter:
    """A pairs table written to Parquet chunk by chunk, in bounded memory (``pairlab convert``
    of a file read by :func:`pairlab.io.iter_pairs_chunks`).

    Each chunk goes to a part file in a temp folder beside ``path``; :meth:`close` joins the
    parts into ``path`` atomically, one part in memory at a time, under one schema (a
    column only some chunks have is null in the others; types unified as pandas would for
    the whole table; a column Arrow types differently in two chunks, nested in one and
    text in another, is stored as text, as :func:`write_pairs` stores a mixed column), with
    the final ``read_stats`` as the file's ``attrs``. Read back, the file is what
    :func:`write_pairs` of the concatenated chunks writes. Until then ``path`` is untouched;
    :meth:`abort` (or an error) removes the parts.
    """

    def __init__(self, path: str | Path):
        import tempfile

        self.path = Path(path)
        if self.path.suffix != ".parquet":
            raise PairDataError(f"unsupported output type '{self.path.suffix}'", file=str(path),
                                hint="write .parquet")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.parts_dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".parts",
                                               dir=self.path.parent))
        self.parts: list[Path] = []
        self.empty: pd.DataFrame | None = None
        self.rows = 0

    def add(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        validate_pairs(df)
        if len(df) == 0:  # kept for its columns: a file of no pairs is still a pairs table
            self.empty = df if self.empty is None else self.empty
            return
        out = df.copy()
        out["prompt"] = [as_messages(m) for m in out["prompt"]]
        out.attrs = {}
        part = self.parts_dir / f"part-{len(self.parts):05d}.parquet"
        pq.write_table(pa.Table.from_pandas(_arrow_safe(out), preserve_index=False), part)
        self.parts.append(part)
        self.rows += len(df)

    def close(self, attrs: dict[str, Any] | None = None) -> Path:
        """Join the parts into ``path`` (atomically); ``attrs``: the table's ``df.attrs``."""
        import shutil

        import pyarrow.parquet as pq

        try:
            if not self.parts:
                empty = self.empty if self.empty is not None else pd.DataFrame(columns=list(PAIR_COLUMNS))
                empty = empty.copy()
                empty.attrs = attrs or {}
                return write_pairs(empty, self.path)
            schema, text = _unified_schema([pq.read_schema(p) for p in self.parts])
            if attrs:
                schema = schema.with_metadata({**(schema.metadata or {}),
                                               b"PANDAS_ATTRS": artifacts.to_json(_jsonable_attrs(attrs))})
            with artifacts.atomic_path(self.path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
                for part in self.parts:
                    writer.write_table(conform_table(pq.read_table(part), schema, text))
            return self.path
        finally:
            shutil.rmtree(self.parts_dir, ignore_errors=True)

    def abort(self) -> None:
        import shutil

        shutil.rmtree(self.parts_dir, ignore_errors=True)


def _unified_schema(schemas: list) -> tuple[Any, set[str]]:
    """One schema for every part, and the columns stored as text because the parts' types
    for them do not unify (nested in one part, text in another)."""
    import pyarrow as pa

    first = schemas[0]
    if all(s.equals(first, check_metadata=False) for s in schemas[1:]):
        return first, set()
    text: set[str] = set()
    names = list(dict.fromkeys(n for s in schemas for n in s.names))
    fields = []
    for name in names:
        types = [s.field(name).type for s in schemas if name in s.names]
        try:
            merged = pa.unify_schemas([pa.schema([pa.field(name, t)]) for t in types],
                                      promote_options="permissive").field(name).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            merged = pa.string()
            text.add(name)
        fields.append(pa.field(name, merged))
    # the pandas metadata of one part describes that part's columns only: keep the rest
    metadata = {k: v for k, v in (first.metadata or {}).items() if k != b"pandas"}
    return pa.schema(fields, metadata=metadata or None), text


def conform_table(table, schema, text: set[str] = frozenset()):
    """A table as ``schema``: absent columns null, ``text`` columns as JSON text, types cast
    (a chunk of a table written part by part, e.g. by :class:`PairsParquetWriter`)."""
    import pyarrow as pa

    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(len(table), field.type))
        elif field.name in text and not pa.types.is_string(table.schema.field(field.name).type):
            values = table.column(field.name).to_pylist()
            columns.append(pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=_plain)
                                     if isinstance(v, (dict, list)) else str(v) for v in values], pa.string()))
        else:
            columns.append(table.column(field.name).cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _jsonable_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """pandas stores ``df.attrs`` in Parquet metadata as JSON: keep only what survives."""
    try:
        return json.loads(artifacts.to_json(attrs))
    except TypeError:
        return {}


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Extra columns Parquet cannot store as they are (mixed nested values, an empty object
    ``{}`` anywhere in them, an integer beyond 64 bits) are stored as JSON strings."""
    import pyarrow as pa

    for col in df.columns:
        if col in PAIR_COLUMNS or df[col].dtype != object:
            continue
        try:  # from_pandas: a NaN where a value is missing (a column only some rows have) is null
            storable = not _has_empty_struct(pa.array(df[col].tolist(), from_pandas=True).type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            storable = False
        if not storable:
            df[col] = [json.dumps(v, ensure_ascii=False, default=_plain)
                       if isinstance(v, (dict, list, tuple, np.ndarray)) else None if pd.isna(v) else str(v)
                       for v in df[col]]
    return df


def _has_empty_struct(arrow_type) -> bool:
    """Whether an Arrow type holds a struct of no field (``{}``), which Parquet cannot write."""
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return arrow_type.num_fields == 0 or any(_has_empty_struct(arrow_type.field(i).type)
                                                 for i in range(arrow_type.num_fields))
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return _has_empty_struct(arrow_type.value_type)
    if pa.types.is_map(arrow_type):
        return _has_empty_struct(arrow_type.key_type) or _has_empty_struct(arrow_type.item_type)
    return False


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


#: The columns :func:`to_trl_dataset` writes.
TRL_COLUMNS = ("prompt", "chosen", "rejected", "pair_id")


def to_trl_dataset(df: pd.DataFrame):
    """The pairs as the ``datasets.Dataset`` TRL 1.16 ``DPOTrainer`` accepts.

    Columns: ``prompt`` (messages), ``chosen`` / ``rejected`` (``[{"role": "assistant",
    "content": ...}]``) and ``pair_id`` (kept so per-pair results can be joined back).
    """
    import datasets

    validate_pairs(df)
    message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
    features = datasets.Features({
        "prompt": datasets.List(message), "chosen": datasets.List(message),
        "rejected": datasets.List(message), "pair_id": datasets.Value("string"),
    })
    data = {
        "prompt": [prompt_turns(m) for m in df["prompt"]],
        "chosen": [[{"role": "assistant", "content": str(c)}] for c in df["chosen"]],
        "rejected": [[{"role": "assistant", "content": str(r)}] for r in df["rejected"]],
        "pair_id": [str(p) for p in df["pair_id"]],
    }
    return datasets.Dataset.from_dict(data, features=features)


#: Suffixes that name a data file of another type: ``--trl --out x.json`` is a mistake, not a
#: directory called ``x.json``.
_OTHER_DATA_SUFFIXES = (".json", ".csv", ".tsv", ".gz", ".bz2", ".xz", ".zst", ".arrow", ".txt")


def _is_saved_dataset_only(path: Path) -> bool:
    """A directory holding a ``Dataset.save_to_disk`` output and nothing else (what this writer
    writes), so replacing it loses nothing of the user's."""
    names = [p.name for p in path.iterdir()]
    if not ({"state.json", "dataset_info.json"} <= set(names) and all(
            n in ("state.json", "dataset_info.json") or n.endswith(".arrow") for n in names)):
        return False
    try:  # and its columns are this writer's: a user's own saved dataset is never replaced
        features = json.loads((path / "dataset_info.json").read_text()).get("features", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(features, dict) and set(features) == set(TRL_COLUMNS)


def write_trl_dataset(df: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write :func:`to_trl_dataset` as .parquet, .jsonl, or a ``save_to_disk`` directory (any
    other name, ``ds.v1`` included).

    An existing output is replaced only with ``overwrite``, and a directory only when it is a
    saved dataset (``datasets.save_to_disk`` output): never a folder of other files.
    """
    path = Path(path)
    if path.is_symlink():  # replacing would follow it (or delete what it points at)
        raise PairDataError("is a symbolic link; not writing through it", file=str(path),
                            hint="name the output's real path, or a new one")
    if path.exists() and not overwrite:
        raise PairDataError("already exists", file=str(path), hint="pass overwrite (--overwrite) to replace it")
    kind = path.suffix.lower()
    if kind not in (".parquet", ".jsonl") and kind in _OTHER_DATA_SUFFIXES:
        raise PairDataError(f"unsupported output type '{path.suffix}'", file=str(path),
                            hint="write .parquet, .jsonl, or a directory (datasets.save_to_disk)")
    if kind in (".parquet", ".jsonl") and path.is_dir() or kind not in (".parquet", ".jsonl") and path.is_file():
        raise PairDataError("is a directory" if path.is_dir() else "is a file", file=str(path),
                            hint="choose another output path")
    if path.is_dir():
        if not _is_saved_dataset_only(path):
            raise PairDataError("is a directory that is not a saved dataset; not replacing it", file=str(path),
                                hint="choose a new directory (or one this command wrote before)")
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one file or folder, written in a moment: no bars on stderr
    try:
        _write_dataset(to_trl_dataset(df), path, kind)
    finally:
        if shown:
            datasets.enable_progress_bars()
    return path


def _write_dataset(dataset, path: Path, kind: str) -> None:
    if kind == ".parquet":
        with artifacts.atomic_path(path) as tmp:
            dataset.to_parquet(str(tmp))
    elif kind == ".jsonl":
        with artifacts.atomic_path(path) as tmp:
            dataset.to_json(str(tmp), lines=True, force_ascii=False)
    else:
        # save_to_disk writes several files: build them in a temp sibling, then move it in
        # whole, so a kill leaves no half-written dataset under ``path``.
        import shutil
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            dataset.save_to_disk(str(tmp / "dataset"))
            if path.is_dir():
                shutil.rmtree(path)
            (tmp / "dataset").rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
