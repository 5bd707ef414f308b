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
from ..schema import PAIR_COLUMNS, PairDataError, as_messages, validate_pairs

TRL_COLUMNS = ("prompt", "chosen", "rejected", "pair_id")


def write_pairs(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a pairs table atomically; ``.parquet`` (canonical) or ``.jsonl`` by suffix."""
    path = Path(path)
    validate_pairs(df)
    out = df.copy()
    out["prompt"] = [as_messages(m) for m in out["prompt"]]
    out.attrs = _jsonable_attrs(df.attrs)
    if path.suffix == ".parquet":
        return artifacts.write_parquet(path, _arrow_safe(out))
    if path.suffix == ".jsonl":
        # Missing values as JSON null (NaN is not valid JSON; pd.NA is not serialisable).
        for col in out.columns:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
        return artifacts.write_jsonl(path, out)
    raise PairDataError(f"unsupported output type '{path.suffix}'", file=str(path),
                        hint="write .parquet (canonical) or .jsonl")


def _jsonable_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """pandas stores ``df.attrs`` in Parquet metadata as JSON: keep only what survives."""
    try:
        return json.loads(artifacts.to_json(attrs))
    except TypeError:
        return {}


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Extra columns Arrow cannot type (mixed nested values) are stored as JSON strings."""
    import pyarrow as pa

    for col in df.columns:
        if col in PAIR_COLUMNS or df[col].dtype != object:
            continue
        try:
            pa.array(df[col].tolist())
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            df[col] = [None if v is None else json.dumps(v, ensure_ascii=False, default=_plain)
                       if isinstance(v, (dict, list, tuple, np.ndarray)) else str(v)
                       for v in df[col]]
    return df


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


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
        "prompt": [as_messages(m) for m in df["prompt"]],
        "chosen": [[{"role": "assistant", "content": str(c)}] for c in df["chosen"]],
        "rejected": [[{"role": "assistant", "content": str(r)}] for r in df["rejected"]],
        "pair_id": [str(p) for p in df["pair_id"]],
    }
    return datasets.Dataset.from_dict(data, features=features)


def write_trl_dataset(df: pd.DataFrame, path: str | Path) -> Path:
    """Write :func:`to_trl_dataset` as .parquet, .jsonl, or a ``save_to_disk`` directory."""
    path = Path(path)
    dataset = to_trl_dataset(df)
    if path.suffix == ".parquet":
        with artifacts.atomic_path(path) as tmp:
            dataset.to_parquet(str(tmp))
    elif path.suffix == ".jsonl":
        with artifacts.atomic_path(path) as tmp:
            dataset.to_json(str(tmp), lines=True, force_ascii=False)
    elif path.suffix == "":
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
    else:
        raise PairDataError(f"unsupported output type '{path.suffix}'", file=str(path),
                            hint="write .parquet, .jsonl, or a directory (datasets.save_to_disk)")
    return path
