"""Artifacts on disk: atomic writes, hashing, manifests, run directories.

Every stage writes its outputs through these functions so that an interrupted run
never leaves a half-written file behind (write to a temp file in the same
directory, fsync, then ``os.replace``) and every output directory carries a
``manifest.json`` saying what produced it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
TRACKED_PACKAGES = ("pairlab", "torch", "transformers", "trl", "peft", "bitsandbytes",
                    "accelerate", "datasets", "pandas", "numpy", "pyarrow", "scikit-learn",
                    "matplotlib", "jinja2")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give files the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    import datetime
    import decimal

    import numpy as np
    import pandas as pd

    if obj is pd.NaT or isinstance(obj, np.datetime64) and np.isnat(obj):
        return None
    if isinstance(obj, np.datetime64):  # its .item() is an integer of nanoseconds
        return str(np.datetime_as_string(obj))
    if isinstance(obj, (datetime.date, datetime.time)):  # datetime and pandas Timestamp too
        return obj.isoformat()
    if isinstance(obj, (datetime.timedelta, np.timedelta64)):
        span = pd.Timedelta(obj)
        return None if pd.isna(span) else span.total_seconds()
    if isinstance(obj, decimal.Decimal):
        return float(obj) if obj.is_finite() else None
    if isinstance(obj, (bytes, bytearray, memoryview)):  # text when it is text, else base64
        raw = bytes(obj)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return base64.b64encode(raw).decode("ascii")
    if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:  # arrays, a one-element one too
        return obj.tolist()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def strict_json_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes valid JSON: a NaN or infinite float becomes null (Python's
    NaN / Infinity tokens are not JSON, and strict readers - jq, JavaScript, Go - refuse them)."""
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False, **kwargs)
    except ValueError:  # a non-finite float somewhere (the rare case): replace, then write
        return json.dumps(finite_or_null(obj), default=_json_default, allow_nan=False, **kwargs)


def finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [finite_or_null(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars and arrays
        return finite_or_null(obj.tolist())
    return obj


def to_json(obj: Any) -> str:
    return strict_json_dumps(obj, indent=2, sort_keys=False, ensure_ascii=False)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, to_json(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | os.PathLike, df: pd.DataFrame, *, keep_attrs: bool = False) -> Path:
    """Write ``df`` atomically. pandas stores ``df.attrs`` in the file's metadata, and a read
    leaves incidental ones there (a simulation's temporary file path, read statistics), so the
    same rows would give other bytes and another sha256, which manifests record and resume
    compares. They are dropped unless ``keep_attrs`` (`pairlab convert` keeps its read statistics)."""
    if df.attrs and not keep_attrs:
        df = df.copy(deep=False)
        df.attrs = {}
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_jsonl(path: str | os.PathLike, records: Any) -> Path:
    """Write an iterable of dicts (or a DataFrame) as JSON lines, atomically."""
    if isinstance(records, pd.DataFrame):
        records = records.to_dict(orient="records")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(strict_json_dumps(rec, ensure_ascii=False) + "\n")
    return Path(path)


# ---------------------------------------------------------------- hashing

def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def frame_sha256(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """Content hash of a table (row order matters), via pandas' vectorised row hashing."""
    sub = df if columns is None else df[columns]
    sub = sub.map(lambda v: json.dumps(v, default=_json_default, sort_keys=True)
                  if isinstance(v, (list, dict)) or hasattr(v, "tolist") else v)
    row_hashes = pd.util.hash_pandas_object(sub, index=False).to_numpy()
    h = hashlib.sha256(row_hashes.tobytes())
    h.update(",".join(map(str, sub.columns)).encode())
    return h.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- manifests

def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "packages": package_versions()}


def write_manifest(out_dir: str | os.PathLike, *, stage: str, config: Any,
                   inputs: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None,
                   seed: int | None = None, started: float | None = None,
                   **extra: Any) -> Path:
    """Write ``out_dir/manifest.json``: what ran, with which config, on which data, how long."""
    now = time.time()
    manifest = {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "seed": seed,
        "wall_time_s": None if started is None else round(now - started, 3),
        "config": config,
        "inputs": inputs or {},
        "outputs": outputs or {},
        "environment": environment(),
        **extra,
    }
    return write_json(Path(out_dir) / MANIFEST, manifest)


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(out_dir) / MANIFEST)


def cache_dir() -> Path:
    """pairlab's cache root: ``$PAIRLAB_CACHE`` or ``~/.cache/pairlab``."""
    root = os.environ.get("PAIRLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pairlab")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
