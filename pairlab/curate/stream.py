"""`curate` on a pool larger than memory: the same result as :func:`~pairlab.curate.curate`,
with the pool read from a pairs Parquet file in chunks of ``chunk_rows`` rows.

Only the scores table (numbers and hashes, no texts: ~0.5 kB per pair) is ever whole in
memory; the texts pass through one chunk at a time, three times:

1. **hash** (columns the scores depend on): the pool's content hash, the score-cache key,
   exactly as :func:`~pairlab.curate.pipeline.pool_hash` (row hashes, in order);
2. **score**: :func:`~pairlab.curate.scores.compute_scores` per chunk, each chunk's scores
   stored in the cache as a part file as soon as it is done, so an interrupted curation
   resumes at the first missing chunk. Most scores are row-local. The prompt-duplicate
   scores are not (``prompt_dup_count``/``rank``, ``prompt_cluster``, ``prompt_near_dup``):
   each chunk adds the MinHash signatures of the prompts not seen before (64 integers per
   distinct prompt, stored with its part), and once every chunk is scored
   :func:`~pairlab.curate.scores.prompt_duplicate_scores` recomputes them over the whole
   pool from the hashes and signatures: the values one in-memory pass gives;
3. the split and the filters run on the scores table, as in memory. The filters that need
   the whole train side (``dedupe_prompts``, ``sample``, ``balance_length``,
   ``keep_quantile``: two-pass by construction, their global statistic, a group's first
   row, a quota, a quantile, comes from the complete scores table) see it whole;
   ``exclude_prompts_from`` reads the ``prompt_text`` column alone;
4. **write**: the pool is read once more, each chunk's rows appended to ``pairs.parquet``,
   ``eval.parquet`` or ``dropped.parquet`` by the decision of step 3; manifest last.

Input: one Parquet file in pairlab's pairs schema (what ``pairlab convert`` or ``pairlab
simulate`` write). ``pairlab curate`` streams a JSONL/CSV/TSV pool (any compression) by
converting it first, chunk by chunk, into such a file in the cache
(:func:`pairlab.io.convert.cached_parquet`); its rejected rows come as ``rejects``. Other
inputs (JSON, directories, datasets) are read whole by ``pairlab.io``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .. import artifacts
from ..dirs import CurateDir
from ..io.read import CHUNK_ROWS
from ..io.sources import count_lines, is_line_file
from ..schema import PairDataError, validate_pairs
from .config import CurateConfig
from .filters import parse_filters
from .pipeline import (_CONTENT_COLUMNS, CurateResult, _apply_filters, _cache_key, _check_requirements,
                       input_records, mark_status, unreadable_rows)
from .scores import compute_scores, prompt_duplicate_scores, prompt_signatures, read_prompts
from .split import split_masks
from .text import normalize_column

#: Pools with more rows than this stream by default (``chunk_rows`` unset). A 60k realistic
#: pool read whole peaked at 5.2 GB; streamed, its peak is the chunk's, not the pool's.
STREAM_ABOVE_ROWS = 50_000
#: Default chunk size (the readers' own): scoring a chunk of 30k realistic pairs peaked at
#: 1.5 GB; 10k keeps it well under.
DEFAULT_CHUNK_ROWS = CHUNK_ROWS
#: Dropped rows kept per filter for the report's examples.
_EXAMPLES = 10


def parquet_rows(path: str | Path) -> int | None:
    """Row count of a Parquet file from its footer (None when ``path`` is not one)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file() or path.suffix != ".parquet":
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # not Parquet after all: the ordinary reader reports it
        return None


def chunk_size(path: str | Path, cfg: CurateConfig) -> int:
    """Rows per chunk for ``path`` under ``cfg.chunk_rows`` (0: read whole, not streamed).

    Unset, a pool streams above :data:`STREAM_ABOVE_ROWS` rows: a Parquet file's row count
    is in its footer; a JSONL/CSV/TSV file's rows are bounded by its lines, counted in one
    fast pass that stops past the threshold (decompressing a .gz at ~200 MB/s).
    """
    if cfg.chunk_rows is not None:
        return cfg.chunk_rows
    rows = parquet_rows(path)
    if rows is None and is_line_file(path):
        rows = count_lines(Path(path), stop_above=STREAM_ABOVE_ROWS)
    return DEFAULT_CHUNK_ROWS if rows is not None and rows > STREAM_ABOVE_ROWS else 0


def _chunks(path: Path, rows: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    import pyarrow as pa

    start = 0
    # pre_buffer=False: with Arrow's default read-ahead the buffers of every row group read
    # stay allocated until the file is closed: +6 MB per 10k-row chunk, 370 MB over a 600k
    # pool per pass (measured with pa.total_allocated_bytes); without it, flat at 59 MB
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=rows, columns=columns):
        frame = batch.to_pandas()
        del batch
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame
        del frame
        pa.default_memory_pool().release_unused()  # give freed chunk buffers back between chunks


def _pairs_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The pool's chunks as pairs tables (validated: a bad row fails naming its row)."""
    for chunk in _chunks(path, rows):
        yield validate_pairs(chunk, file=str(path))


def _content_hash(path: Path, rows: int) -> tuple[str, int]:
    """(:func:`pool_hash` of the whole pool, row count), one chunk at a time."""
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(path).schema_arrow.names)
    cols = [c for c in _CONTENT_COLUMNS if c in names]
    hashes = [pd.util.hash_pandas_object(chunk[cols], index=False).to_numpy()
              for chunk in _chunks(path, rows, cols)]
    row_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    return artifacts.text_sha256(row_hashes.tobytes().hex() + ",".join(cols)), len(row_hashes)


def streamed_scores(path: Path, cfg: CurateConfig, rows: int, *, tokenizer=None,
                    content_hash: str, n: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Scores of the pool in ``path``, chunk by chunk through the score cache (resumable)."""
    from filelock import FileLock

    key = _cache_key(content_hash, cfg)
    final = artifacts.cache_dir() / "scores" / f"{key}.parquet"
    # the chunk size is in the name: a resume with another chunk_rows starts over
    parts = final.with_name(f"{key}.parts-{rows}")
    info: dict[str, Any] = {"key": key, "hit": False, "path": str(final) if cfg.cache else None,
                            "chunks": 0, "chunks_resumed": 0}
    final.parent.mkdir(parents=True, exist_ok=True)
    eval_prompts = read_prompts(cfg.contamination_file) if cfg.contamination_file else None
    with FileLock(f"{final}.lock"):  # concurrent curations of one pool score it once
        if cfg.cache and final.exists():
            scores = pd.read_parquet(final)
            if len(scores) == n:
                return scores, {**info, "hit": True}
        if not cfg.cache:
            parts = final.with_name(f"{key}.nocache-parts-{rows}")
            shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True, exist_ok=True)
        # the prompt hashes seen so far, as 64-bit integers (8 bytes each, not a Python str)
        seen = np.zeros(0, dtype=np.uint64)
        frames, signatures = [], []
        for i, chunk in enumerate(_pairs_chunks(path, rows)):
            part, sig_file = parts / f"part-{i:05d}.parquet", parts / f"part-{i:05d}.signatures.npy"
            if part.exists() and sig_file.exists():  # done before an interrupt
                scores = pd.read_parquet(part)
                sig = np.load(sig_file)
                info["chunks_resumed"] += 1
            else:
                scores = compute_scores(chunk, cfg, tokenizer=tokenizer, eval_prompts=eval_prompts)
                hashes = scores["prompt_hash"]
                new = ~hashes.duplicated().to_numpy() & ~np.isin(_as_int(hashes), seen)
                sig = prompt_signatures(normalize_column(chunk["prompt_text"].iloc[np.nonzero(new)[0]]
                                                         .reset_index(drop=True)))
                with artifacts.atomic_path(sig_file) as tmp:  # signatures first, the part last
                    with open(tmp, "wb") as fh:
                        np.save(fh, sig)
                artifacts.write_parquet(part, scores)
            seen = np.union1d(seen, _as_int(scores["prompt_hash"]))
            frames.append(scores)
            signatures.append(sig)
            info["chunks"] += 1
        scores = pd.concat(frames, ignore_index=True)
        del frames
        sig = np.concatenate(signatures) if signatures else np.zeros((0, 64), np.uint64)
        del signatures, seen
        scores = scores.assign(**prompt_duplicate_scores(scores["prompt_hash"], sig, cfg.near_dup_threshold))
        for name in ("prompt_hash", "prompt_cluster"):
            scores[name] = scores[name].astype("str")
        if cfg.cache:
            artifacts.write_parquet(final, scores)
        shutil.rmtree(parts, ignore_errors=True)
    return scores, info


def _as_int(prompt_hash: pd.Series) -> np.ndarray:
    """16-hex-digit prompt hashes as unsigned 64-bit integers."""
    return np.array([int(h, 16) for h in prompt_hash], dtype=np.uint64)


class _Appender:
    """One output Parquet file written chunk by chunk: each chunk to a part file (in
    ``.NAME.stream-parts.tmp``), joined by ``close`` into ``.NAME.stream.tmp`` and renamed
    (named as :func:`pairlab.artifacts.atomic_path` names its temp files, so a rerun's
    :meth:`~pairlab.dirs.StageDir.clean` removes what a killed one left).

    The parts are joined under one schema, as :class:`pairlab.io.write.PairsParquetWriter`
    joins its parts (its ``_unified_schema`` and ``conform_table``): chunks type an extra
    column differently (``{"a": null}`` in one, ``{"a": 1}`` in the next; nested in one and
    stored as JSON text in another, for a ``{}`` or a >64-bit integer), and the file holds
    what the whole-table write holds.

    ``last``: rows ``close`` appends after every chunk (the unreadable input rows of
    ``dropped.parquet``), their columns unified with the chunks' as the in-memory
    ``pd.concat`` of both types them.
    """

    def __init__(self, path: Path, last: pd.DataFrame | None = None):
        self.path, self.tmp, self.rows = path, path.with_name(f".{path.name}.stream.tmp"), 0
        self.parts_dir = path.with_name(f".{path.name}.stream-parts.tmp")
        self.parts: list[Path] = []
        self.last = last if last is not None and len(last) else None

    @staticmethod
    def _table(frame: pd.DataFrame):
        import pyarrow as pa

        from ..io.write import _arrow_safe
        from ..schema import as_messages

        frame = frame.reset_index(drop=True).copy()
        frame["prompt"] = [as_messages(m) for m in frame["prompt"]]
        return pa.Table.from_pandas(_arrow_safe(frame), preserve_index=False)

    def add(self, frame: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        if not self.parts:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            self.parts_dir.mkdir(parents=True)
        part = self.parts_dir / f"part-{len(self.parts):05d}.parquet"
        pq.write_table(self._table(frame), part)
        self.parts.append(part)
        self.rows += len(frame)

    def close(self, empty: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        from ..io.write import _unified_schema, conform_table

        if not self.parts and self.last is not None:  # only the last rows: typed as curate()'s concat
            # (an empty chunk's `prompt` would be a double column no list casts into)
            last, self.last = self.last, None
            self.add(pd.concat([empty, last], ignore_index=True))
        elif not self.parts:  # no row at all: an empty table with the pool's columns
            self.add(empty)
        if self.last is not None:
            self.add(self.last)
        try:
            schema, text = _unified_schema([pq.read_schema(p) for p in self.parts])
            with pq.ParquetWriter(self.tmp, schema) as writer:
                for part in self.parts:  # one part in memory at a time
                    writer.write_table(conform_table(pq.read_table(part), schema, text))
            self.tmp.replace(self.path)
        finally:
            shutil.rmtree(self.parts_dir, ignore_errors=True)


def curate_stream(path: str | Path, filters: Any = None, config: CurateConfig | None = None, *,
                  out_dir: str | Path, eval_pairs: pd.DataFrame | None = None, tokenizer=None,
                  inputs: dict[str, Any] | None = None, overwrite: bool = False,
                  chunk_rows: int | None = None, rejects: pd.DataFrame | None = None,
                  eval_inputs: dict[str, Any] | None = None) -> CurateResult:
    """:func:`~pairlab.curate.curate` of the pairs Parquet file ``path``, streamed (see module doc).

    Writes ``out_dir`` exactly as :func:`curate` does. ``rejects``: the input rows the
    reader rejected (a JSONL/CSV pool converted in chunks by
    :func:`pairlab.io.convert.cached_parquet`), appended to ``dropped.parquet`` as
    ``unreadable`` and counted, as :func:`curate` does. The returned :class:`CurateResult`
    holds the scores, steps and manifest; ``train`` and ``eval`` are None (they are on disk)
    and ``dropped`` holds the first rows each filter dropped (the report's examples).
    """
    started = time.time()
    cfg = (config or CurateConfig()).validate()
    rows = chunk_rows or cfg.chunk_rows or DEFAULT_CHUNK_ROWS
    parsed = parse_filters(filters)
    _check_requirements(parsed, cfg)
    path, out = Path(path), Path(out_dir)
    inputs = {"spec": str(path), **(inputs or {})}
    CurateDir.prepare(out, overwrite=overwrite, inputs=[inputs.get("spec"), cfg.contamination_file])
    if eval_pairs is not None:
        eval_pairs = validate_pairs(eval_pairs).reset_index(drop=True)

    t0 = time.time()
    content_hash, n = _content_hash(path, rows)
    scores, cache_info = streamed_scores(path, cfg, rows, tokenizer=tokenizer, content_hash=content_hash, n=n)
    if scores["pair_id"].duplicated().any():
        row = int(np.argmax(scores["pair_id"].duplicated().to_numpy()))
        raise PairDataError(f"pair_id {scores['pair_id'].iloc[row]!r} occurs more than once", file=str(path),
                            field="pair_id", row=row,
                            hint="pair_ids must be unique; rebuild the table with pairlab's reader")
    timings = {"scores_s": time.time() - t0}

    t0 = time.time()
    in_eval, overlap = split_masks(scores["prompt_hash"], cfg, eval_pairs)
    # only exclude_prompts_from reads the pairs themselves, and only their prompts
    prompts = (pd.read_parquet(path, columns=["prompt_text"])
               if any(f.name == "exclude_prompts_from" for f in parsed) else None)
    dropped_by, would, steps = _apply_filters(prompts, scores, parsed, cfg, ~in_eval, overlap)
    del prompts
    kept = ~in_eval & (dropped_by == "")
    timings["filters_s"] = time.time() - t0

    scores, status, reasons = mark_status(scores, in_eval, kept, dropped_by, would, parsed)
    unreadable = unreadable_rows(rejects) if rejects is not None and len(rejects) else None
    n_unreadable = 0 if unreadable is None else len(unreadable)
    counts = {"input": n, "train": int(kept.sum()), "eval": int(in_eval.sum()),
              "dropped": int((status == "dropped").sum()), "unreadable": n_unreadable}
    import dataclasses

    manifest = {
        "stage": "curate", "seed": cfg.seed, "config": dataclasses.asdict(cfg),
        "filters": [f.spec() for f in parsed],
        "inputs": input_records(n, n_unreadable, content_hash, inputs, eval_pairs, eval_inputs),
        "counts": counts, "steps": steps, "score_cache": cache_info,
        "split": ({"by": "prompt_hash", "eval_fraction": cfg.eval_fraction, "seed": cfg.seed}
                  if eval_pairs is None else {"by": "eval_from", "overlap_dropped": int(overlap.sum())}),
        "streamed": {"chunk_rows": rows, "chunks": cache_info["chunks"]},
        # where a long curation's time went (the write pass follows; total_s is in the result)
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }

    # Write: the pool once more, each chunk's rows to their file; manifest last.
    t0 = time.time()
    CurateDir.start(out, overwrite=overwrite, inputs=[inputs.get("spec")])
    files = {"train": _Appender(out / CurateDir.PAIRS), "eval": _Appender(out / CurateDir.EVAL),
             "dropped": _Appender(out / CurateDir.DROPPED, last=unreadable)}
    examples: list[pd.DataFrame] = []
    shown: dict[str, int] = {}
    empty = None
    for chunk in _pairs_chunks(path, rows):
        where = status[chunk.index.to_numpy()]
        empty = chunk.iloc[:0] if empty is None else empty
        for name in ("train", "eval"):
            if name == "eval" and eval_pairs is not None:
                continue
            if (where == name).any():
                files[name].add(chunk[where == name])
        gone = chunk[where == "dropped"].copy()
        if len(gone):
            by = dropped_by[gone.index.to_numpy()]
            gone["dropped_by"] = by
            gone["drop_reason"] = pd.Series(by).map(reasons).to_numpy()
            gone["would_drop"] = would[gone.index.to_numpy()]
            files["dropped"].add(gone)
            firsts = gone[[shown.get(b, 0) < _EXAMPLES for b in by]]
            firsts = firsts.groupby("dropped_by", sort=False).head(_EXAMPLES)
            for label, size in firsts["dropped_by"].value_counts().items():
                shown[label] = shown.get(label, 0) + int(size)
            examples.append(firsts)
    if unreadable is not None:  # after the pairs, as curate() puts them
        examples.append(unreadable.head(_EXAMPLES))
    empty = empty if empty is not None else pd.DataFrame(columns=["pair_id", "prompt"])
    files["train"].close(empty)
    if eval_pairs is not None:
        from ..io import write_pairs

        write_pairs(eval_pairs, out / CurateDir.EVAL)
        files["eval"].rows = len(eval_pairs)
    else:
        files["eval"].close(empty)
    files["dropped"].close(empty.assign(dropped_by="", drop_reason="", would_drop=""))
    artifacts.write_parquet(out / CurateDir.SCORES, scores)
    sample = pd.concat(examples, ignore_index=True) if examples else empty.assign(dropped_by="", drop_reason="",
                                                                                   would_drop="")
    result = CurateResult(None, None, sample, scores, steps, manifest, out, timings)
    report = cfg.report
    if report:
        from ..rendering import render

        render("curation", result, out / CurateDir.REPORT)
    written = {CurateDir.PAIRS: files["train"].rows, CurateDir.EVAL: files["eval"].rows,
               CurateDir.DROPPED: files["dropped"].rows, CurateDir.SCORES: len(scores)}
    extra = {k: v for k, v in manifest.items() if k not in ("stage", "seed", "config", "inputs")}
    CurateDir.finish(out, config=manifest["config"], inputs=manifest["inputs"], rows=written,
                     report=CurateDir.REPORT if report else None, seed=cfg.seed, started=started, **extra)
    timings["write_s"] = time.time() - t0
    timings["total_s"] = time.time() - started
    return result
