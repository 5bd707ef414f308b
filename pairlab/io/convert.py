"""A JSONL/CSV/TSV file (any compression) to a pairs Parquet, chunk by chunk, in bounded memory.

* :func:`convert_chunked` - read with :func:`~pairlab.io.iter_pairs_chunks`, each chunk written
  as it is read (:class:`~pairlab.io.write.PairsParquetWriter`): ``pairlab convert``.
* :func:`cached_parquet` - the same into pairlab's cache, keyed by the input file's sha256 and
  the read options, so a pool larger than memory is converted once and then streamed from
  Parquet (``pairlab curate``); the rejected rows are kept beside it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .. import artifacts
from . import fields
from ..schema import PairDataError
from .read import CHUNK_ROWS, iter_pairs_chunks
from .rejects import RejectLog, write_rejects
from .write import PairsParquetWriter

#: Bump when reading a file may give other pairs than before: cached conversions are redone.
#: 2: CSV/TSV quotes that are text and lone CRs, tool calls, the reader flags, the sides layouts,
#: unnamed CSV columns, split words inside file names, a lone-brace .jsonl.
CONVERSION_VERSION = 2


def convert_chunked(spec: str | Path, out: str | Path, *, chunk_rows: int = CHUNK_ROWS,
                    format: str = "auto", mapping: Mapping[str, str] | Iterable[str] | None = None,
                    binarize: str = "mean-aspects", pairing: str = "best-vs-random", seed: int = 0,
                    strict: bool = False, split: str | None = None,
                    **hub: Any) -> tuple[Path, dict[str, Any], pd.DataFrame]:
    """Read ``spec`` in chunks into the pairs Parquet ``out``: ``(out, read_stats, rejects)``.

    ``out`` appears whole, atomically, once the last chunk is read (an error midway leaves
    none); read back it is what ``write_pairs(read_pairs(spec), out)`` writes. The rejects
    table is held whole (the rows to fix: few, unless the layout is wrong).
    """
    writer = PairsParquetWriter(out)
    stats: dict[str, Any] = {}
    rejects = []
    try:
        for pairs, chunk_rejects in iter_pairs_chunks(spec, format, mapping, split, binarize, pairing, seed,
                                                      strict=strict, chunk_rows=chunk_rows, **hub):
            writer.add(pairs)
            stats = pairs.attrs["read_stats"]
            if len(chunk_rejects):
                rejects.append(chunk_rejects)
    except BaseException as err:
        writer.abort()
        if isinstance(err, PairDataError) and getattr(err, "rejects", None) is not None and rejects:
            err.rejects = pd.concat([*rejects, err.rejects], ignore_index=True)  # every chunk's rows
        raise
    path = writer.close({"read_stats": stats})
    return path, stats, pd.concat(rejects, ignore_index=True) if rejects else RejectLog().frame()


def cached_parquet(spec: str | Path, *, chunk_rows: int = CHUNK_ROWS, format: str = "auto",
                   mapping: Mapping[str, str] | Iterable[str] | None = None,
                   binarize: str = "mean-aspects", pairing: str = "best-vs-random", seed: int = 0,
                   strict: bool = False, file_sha256: str | None = None, split: str | None = None
                   ) -> tuple[Path, dict[str, Any], pd.DataFrame]:
    """:func:`convert_chunked` into ``$PAIRLAB_CACHE/pools/<key>.parquet``, or the entry there.

    The key: the input file's sha256 and the options that change what is read (format,
    ``--map``, raw binarization, strict); not the chunk size (it changes nothing read).
    Under a lock, so concurrent curations of one file convert it once; the rejects are
    written first and the pool last, so an interrupted conversion is redone, never half used.
    ``file_sha256``: the input's, when the caller has it already. Returns (pool Parquet,
    read_stats, rejects).
    """
    from filelock import FileLock

    from .. import __version__

    options = {"format": format, "mapping": fields.parse_mapping(mapping), "binarize": binarize,
               "pairing": pairing, "seed": int(seed), "strict": bool(strict)}
    if split is not None:  # (only a JSON document named .jsonl has splits inside; keys stay as they were)
        options["split"] = split
    payload = json.dumps({"file_sha256": file_sha256 or artifacts.file_sha256(spec), "options": options,
                          "pairlab": __version__, "version": CONVERSION_VERSION}, sort_keys=True)
    key = artifacts.text_sha256(payload)[:32]
    root = artifacts.cache_dir() / "pools"
    root.mkdir(parents=True, exist_ok=True)
    pool, rejects_file = root / f"{key}.parquet", root / f"{key}.rejects.parquet"
    with FileLock(f"{pool}.lock"):
        if pool.exists() and rejects_file.exists():
            return (pool, *_named(spec, _read_stats(pool), pd.read_parquet(rejects_file)))
        pool.unlink(missing_ok=True)
        tmp = root / f"{key}.converting.parquet"  # the pool appears under its name last
        for stale in root.glob(f".{tmp.name}.*"):  # a killed conversion's parts (we hold the lock)
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        _, stats, rejects = convert_chunked(spec, tmp, chunk_rows=chunk_rows, **options)
        write_rejects(rejects, rejects_file)
        tmp.replace(pool)
    return pool, stats, rejects


def _named(spec: str | Path, stats: dict[str, Any], rejects: pd.DataFrame
           ) -> tuple[dict[str, Any], pd.DataFrame]:
    """A cached conversion's stats and rejects naming ``spec``: the key is the file's content,
    so the entry may have been made from a copy under another path (its rejects would name
    that path, and dropped.parquet's unreadable ids hash where a row sits)."""
    name = str(Path(spec).expanduser())
    rejects = rejects.assign(file=name) if len(rejects) else rejects
    stats = {**stats, "spec": str(spec), "files": [name],
             "layouts": {name: layout for layout in stats.get("layouts", {}).values()},
             "rejects": [{**r, "file": name} for r in stats.get("rejects", [])]}
    return stats, rejects


def _read_stats(pool: Path) -> dict[str, Any]:
    """The read_stats a conversion stored in its Parquet (as ``df.attrs``), without the rows."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(pool).metadata or {}
    return json.loads(metadata.get(b"PANDAS_ATTRS", b"{}")).get("read_stats", {})


__all__ = ["CONVERSION_VERSION", "cached_parquet", "convert_chunked"]
