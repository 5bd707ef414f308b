"""curate = score (cached) -> split -> filter in order -> write the audit trail.

Reading order of :func:`curate`:

1. validate the filter spec and config (fails before any work, naming the key);
2. scores for the whole pool, from the cache when this pool was scored before;
3. the eval split, by normalized-prompt hash over *all* rows (so every filter arm over
   one pool has the same eval set), or, with ``eval_pairs``, removal of every pool row
   whose prompt is in that split;
4. the filters, in order, on the train side only. ``dropped_by`` is the first filter
   that drops a row; ``would_drop`` lists every filter that drops it when applied alone
   to the whole train side (plus ``dropped_by`` itself);
5. outputs: ``pairs.parquet`` (kept train rows), ``eval.parquet``, ``dropped.parquet``,
   ``scores.parquet`` (all rows, all scores, where each row went), ``manifest.json``
   and ``curation.html``.

Invariant (checked): train + eval + dropped = input rows, each pair_id exactly once.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import ConfigError, read_yaml
from ..dirs import CurateDir
from ..schema import FLOAT_COLUMNS, PairDataError, validate_pairs
from .config import CurateConfig
from .filters import Filter, FilterContext, parse_filters
from .scores import SCORES_VERSION, compute_scores
from .split import split_masks

#: The pseudo-filter that drops pool rows whose prompt is in the ``eval_pairs`` split.
EVAL_OVERLAP = "eval_overlap"
#: ``dropped_by`` of input rows the reader rejected (they never became pairs).
UNREADABLE = "unreadable"

#: Columns the scores depend on: their content hash keys the score cache.
_CONTENT_COLUMNS = ["pair_id", "prompt_text", "chosen", "rejected", "source", *FLOAT_COLUMNS]


@dataclass
class CurateResult:
    """What :func:`curate` produced (and wrote, when ``out_dir`` was given)."""

    train: pd.DataFrame            # kept pairs (train side)
    eval: pd.DataFrame             # held-out pairs
    dropped: pd.DataFrame          # dropped pairs + dropped_by, drop_reason, would_drop
    scores: pd.DataFrame           # every row: scores + split, status, dropped_by
    steps: list[dict[str, Any]]    # per-filter counts, in order
    manifest: dict[str, Any]
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- score cache

def pool_hash(pairs: pd.DataFrame) -> str:
    """Content hash of a pool: what the scores depend on, in row order."""
    cols = [c for c in _CONTENT_COLUMNS if c in pairs.columns]
    # prompt messages are covered by pair_id (a hash of them) and prompt_text
    row_hashes = pd.util.hash_pandas_object(pairs[cols], index=False).to_numpy()
    return artifacts.text_sha256(row_hashes.tobytes().hex() + ",".join(cols))


def _cache_key(content_hash: str, cfg: CurateConfig) -> str:
    key = cfg.scoring_key()
    if cfg.contamination_file:
        key["contamination_file"] = artifacts.file_sha256(cfg.contamination_file)
    payload = json.dumps({"pool": content_hash, "scoring": key, "version": SCORES_VERSION},
                         sort_keys=True)
    return artifacts.text_sha256(payload)[:32]


def cached_scores(pairs: pd.DataFrame, cfg: CurateConfig, *, tokenizer=None,
                  content_hash: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Scores for a pool, from ``$PAIRLAB_CACHE/scores/<key>.parquet`` when present.

    The entry is written atomically under a lock (``<key>.parquet.lock``): processes
    curating the same pool at once (the arms of a Ray or Slurm grid) score it once; the
    others wait, then read it.
    """
    from filelock import FileLock

    content_hash = content_hash or pool_hash(pairs)
    key = _cache_key(content_hash, cfg)
    path = artifacts.cache_dir() / "scores" / f"{key}.parquet"
    if not cfg.cache:
        return compute_scores(pairs, cfg, tokenizer=tokenizer), {"key": key, "hit": False, "path": None}

    def stored() -> pd.DataFrame | None:
        if not path.exists():
            return None
        scores = pd.read_parquet(path)
        same = len(scores) == len(pairs) and (scores["pair_id"].to_numpy() ==
                                              pairs["pair_id"].astype(str).to_numpy()).all()
        return scores if same else None

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        scores = stored()
        if scores is not None:
            return scores, {"key": key, "hit": True, "path": str(path)}
        scores = compute_scores(pairs, cfg, tokenizer=tokenizer)
        artifacts.write_parquet(path, scores)
    return scores, {"key": key, "hit": False, "path": str(path)}


# ---------------------------------------------------------------- the pipeline

def load_filter_file(path: str | Path) -> tuple[list[Filter], dict[str, Any]]:
    """A filters YAML: a list of filters, or ``{filters: [...], config: {...}}``.

    Returns the validated filters and the ``config`` overrides it carries.
    """
    data = read_yaml(path)
    config: dict[str, Any] = {}
    if isinstance(data, dict):
        unknown = [k for k in data if k not in ("filters", "config")]
        if unknown:
            raise ConfigError("unknown top-level key; use 'filters' and 'config'",
                              file=str(path), field=unknown[0])
        config = data.get("config") or {}
        if not isinstance(config, dict):
            raise ConfigError("expected a mapping", file=str(path), field="config")
        names = sorted(f.name for f in dataclasses.fields(CurateConfig))
        unknown = [k for k in config if k not in names]
        if unknown:  # named here, with this file: merged with the flags, it would name none
            raise ConfigError(f"unknown key; valid keys: {names}", file=str(path), field=f"config.{unknown[0]}")
        data = data.get("filters") or []
    return parse_filters(data, source=str(path)), config


def _check_pairs(pairs: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    validate_pairs(pairs)
    pairs = pairs.reset_index(drop=True)
    dup = pairs["pair_id"].duplicated()
    if dup.any():
        row = int(np.argmax(dup.to_numpy()))
        raise PairDataError(f"pair_id {pairs['pair_id'].iloc[row]!r} occurs more than once",
                            file=source, field="pair_id", row=row,
                            hint="pair_ids must be unique; rebuild the table with pairlab's reader")
    return pairs


def _check_requirements(filters: list[Filter], cfg: CurateConfig) -> None:
    for f in filters:
        if f.name == "drop_contaminated" and not cfg.contamination_file:
            raise ConfigError("drop_contaminated needs config contamination_file", field=f.key,
                              hint="set contamination_file (CLI: --contamination-file)")
    if cfg.contamination_file and not Path(cfg.contamination_file).exists():
        raise ConfigError(f"file not found: {cfg.contamination_file}", field="contamination_file")


def curate(pairs: pd.DataFrame, filters: Any = None, config: CurateConfig | None = None, *,
           out_dir: str | Path | None = None, eval_pairs: pd.DataFrame | None = None,
           tokenizer=None, inputs: dict[str, Any] | None = None,
           overwrite: bool = False, rejects: pd.DataFrame | None = None,
           eval_inputs: dict[str, Any] | None = None) -> CurateResult:
    """Score, split and filter a pool of pairs; optionally write the audit trail.

    Parameters
    ----------
    pairs : the pool (a pairs table).
    filters : a filter spec (list of names / one-key mappings) or parsed filters.
    config : :class:`CurateConfig` (defaults when None).
    out_dir : write ``pairs.parquet``, ``eval.parquet``, ``dropped.parquet``,
        ``scores.parquet``, ``manifest.json`` and ``curation.html`` here.
    eval_pairs : an existing eval split; pool rows sharing a prompt with it are dropped
        (``dropped_by = eval_overlap``) and it is written as ``eval.parquet``.
    tokenizer : an already-loaded tokenizer (else ``config.tokenizer`` is loaded).
    inputs : what to record about the input in the manifest (spec, file hash).
    overwrite : replace a finished curation in ``out_dir`` (else it is refused; an
        interrupted one is always redone). Checked before any work.
    rejects : the input rows the reader rejected (``pairlab.io.read_pairs_with_rejects``);
        they go to ``dropped.parquet`` with ``dropped_by = unreadable`` and the reason,
        and are counted as ``counts["unreadable"]``, so every input row is accounted for.

    Returns
    -------
    :class:`CurateResult`.
    """
    started = time.time()
    cfg = (config or CurateConfig()).validate()
    parsed = parse_filters(filters)
    _check_requirements(parsed, cfg)
    if out_dir is not None:
        CurateDir.prepare(out_dir, overwrite=overwrite,
                          inputs=[(inputs or {}).get("spec"), cfg.contamination_file])
    pairs = _check_pairs(pairs, (inputs or {}).get("spec"))
    if eval_pairs is not None:
        eval_pairs = validate_pairs(eval_pairs).reset_index(drop=True)

    t0 = time.time()
    content_hash = pool_hash(pairs)
    scores, cache_info = cached_scores(pairs, cfg, tokenizer=tokenizer, content_hash=content_hash)
    timings = {"scores_s": time.time() - t0}

    t0 = time.time()
    n = len(pairs)
    in_eval, overlap = split_masks(scores["prompt_hash"], cfg, eval_pairs)
    dropped_by, would, steps = _apply_filters(pairs, scores, parsed, cfg, ~in_eval, overlap)
    kept = ~in_eval & (dropped_by == "")
    timings["filters_s"] = time.time() - t0

    scores, status, reasons = mark_status(scores.copy(), in_eval, kept, dropped_by, would, parsed)
    train = pairs[kept].reset_index(drop=True)
    eval_out = pairs[in_eval].reset_index(drop=True) if eval_pairs is None else eval_pairs
    is_dropped = status == "dropped"
    dropped = pairs[is_dropped].copy()
    dropped["dropped_by"] = dropped_by[is_dropped]
    dropped["drop_reason"] = pd.Series(dropped_by[is_dropped]).map(reasons).to_numpy()
    dropped["would_drop"] = would[is_dropped]
    dropped = dropped.reset_index(drop=True)
    n_unreadable = 0 if rejects is None else len(rejects)
    if n_unreadable:
        dropped = pd.concat([dropped, unreadable_rows(rejects)], ignore_index=True)

    # counts are pairs; unreadable rows never became pairs and are counted beside them
    counts = {"input": n, "train": int(kept.sum()), "eval": int(in_eval.sum()),
              "dropped": int(is_dropped.sum()), "unreadable": n_unreadable}
    if counts["train"] + counts["eval"] + counts["dropped"] != n:  # pragma: no cover
        raise AssertionError(f"accounting broken: {counts}")
    manifest = {
        "stage": "curate",
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "filters": [f.spec() for f in parsed],
        "inputs": input_records(n, n_unreadable, content_hash, inputs, eval_pairs, eval_inputs),
        "counts": counts,
        "steps": steps,
        "score_cache": cache_info,
        "split": ({"by": "prompt_hash", "eval_fraction": cfg.eval_fraction, "seed": cfg.seed}
                  if eval_pairs is None else {"by": "eval_from", "overlap_dropped": int(overlap.sum())}),
    }
    result = CurateResult(train, eval_out, dropped, scores, steps, manifest, None, timings)
    if out_dir is not None:
        t0 = time.time()
        write_result(result, out_dir, started=started, overwrite=overwrite)
        timings["write_s"] = time.time() - t0
    timings["total_s"] = time.time() - started
    return result


def input_records(n: int, n_unreadable: int, content_hash: str, inputs: dict[str, Any] | None,
                  eval_pairs: pd.DataFrame | None, eval_inputs: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``inputs``: the pool and ``--eval-from`` each with its own counts (the
    unreadable rows of both go to dropped.parquet; each input says how many were its own)."""
    from_eval = int((eval_inputs or {}).get("unreadable", 0))
    records = {"pool": {"rows": n, "content_sha256": content_hash, **(inputs or {}),
                        "unreadable": n_unreadable - from_eval}}
    if eval_pairs is not None:
        records["eval_from"] = {"rows": len(eval_pairs), **(eval_inputs or {}), "unreadable": from_eval}
    return records


def unreadable_rows(rejects: pd.DataFrame) -> pd.DataFrame:
    """Rejected input rows as ``dropped.parquet`` rows.

    They have no prompt or answers to show (the row did not parse into a pair), so the
    pair columns are empty and the rejects table's columns follow as ``reject_*`` (file,
    line, row, field, reason, record). ``pair_id`` is ``unreadable-`` + a hash of where
    the row sits, unique and stable across reruns.
    """
    where = [f"{f}\x00{line}\x00{row}" for f, line, row in
             zip(rejects["file"], rejects["line"], rejects["row"])]
    n = len(rejects)
    out = pd.DataFrame({
        "pair_id": ["unreadable-" + artifacts.text_sha256(w)[:16] for w in where],
        "prompt_id": "", "prompt": [[] for _ in range(n)], "prompt_text": "",
        "chosen": "", "rejected": "", **{col: np.nan for col in FLOAT_COLUMNS},
        "source": "", "chosen_model": "", "rejected_model": "", "flags": UNREADABLE,
        "dropped_by": UNREADABLE,
        "drop_reason": [f"{UNREADABLE}: {_where(r)}{r['reason']}" for r in rejects.to_dict("records")],
        "would_drop": UNREADABLE,
    }, index=range(n))
    for col in rejects.columns:
        out[f"reject_{col}"] = rejects[col].reset_index(drop=True)  # keeps Int64 line/row
    return out


def _where(reject: dict[str, Any]) -> str:
    parts = [str(reject["file"])]
    for key, label in (("line", "line {}"), ("row", "row {}"), ("field", "field '{}'")):
        if not pd.isna(reject[key]):
            parts.append(label.format(reject[key]))
    return ", ".join(parts) + ": "



def mark_status(scores: pd.DataFrame, in_eval: np.ndarray, kept: np.ndarray, dropped_by: np.ndarray,
                would: np.ndarray, parsed: list[Filter]) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    """Write each row's split, status, dropping filter and would-drop list into ``scores`` (in
    place), and return it with the status array and each filter's reason."""
    status = np.where(in_eval, "eval", np.where(kept, "train", "dropped"))
    scores["split"] = np.where(in_eval, "eval", "train")
    scores["status"] = status
    scores["dropped_by"] = dropped_by
    scores["would_drop"] = would
    reasons = {f.label: f.reason for f in parsed}
    reasons[EVAL_OVERLAP] = "prompt occurs in the --eval-from split"
    return scores, status, reasons


def _apply_filters(pairs: pd.DataFrame, scores: pd.DataFrame, filters: list[Filter],
                   cfg: CurateConfig, train_side: np.ndarray, overlap: np.ndarray):
    """Run the chain on the train side. Returns (dropped_by, would_drop, steps) per row."""
    n = len(scores)
    ctx = FilterContext(pairs=pairs, scores=scores, seed=cfg.seed,
                        contamination_threshold=cfg.contamination_threshold,
                        contamination_ngram=cfg.contamination_ngram)
    dropped_by = np.full(n, "", dtype=object)
    dropped_by[overlap] = EVAL_OVERLAP
    kept = train_side & ~overlap
    side_idx = np.nonzero(train_side)[0]
    side_scores = scores.iloc[side_idx]
    would = np.full(n, "", dtype=object)
    would[overlap] = EVAL_OVERLAP + ";"
    steps: list[dict[str, Any]] = []
    if overlap.any():
        steps.append({"filter": EVAL_OVERLAP, "label": EVAL_OVERLAP, "stateful": False,
                      "rows_in": int(train_side.sum()), "dropped": int(overlap.sum()),
                      "rows_out": int(kept.sum()), "would_drop": int(overlap.sum()),
                      "reason": "prompt occurs in the --eval-from split"})
    for f in filters:
        # alone: the filter applied to the whole train side (defines would_drop)
        alone = np.ones(n, dtype=bool)
        alone[side_idx] = f.keep(side_scores, ctx)
        if f.definition.stateful:
            idx = np.nonzero(kept)[0]
            chain = np.ones(n, dtype=bool)
            chain[idx] = f.keep(scores.iloc[idx], ctx)
        else:
            chain = alone  # row-local: the same answer whatever else is kept
        newly = kept & ~chain
        rows_in = int(kept.sum())
        dropped_by[newly] = f.label
        kept &= chain
        label = np.array(f.label + ";", dtype=object)
        would = would + np.where(~alone | newly, label, "")
        steps.append({"filter": f.name, "label": f.label, "params": f.spec()[f.name],
                      "stateful": f.definition.stateful, "rows_in": rows_in,
                      "dropped": int(newly.sum()), "rows_out": int(kept.sum()),
                      "would_drop": int((~alone & train_side).sum()), "reason": f.reason})
    would = np.array([w[:-1] for w in would], dtype=object)  # strip the trailing ';'
    return dropped_by, would, steps


# ---------------------------------------------------------------- writing

def write_result(result: CurateResult, out_dir: str | Path, *, started: float | None = None,
                 overwrite: bool = False) -> Path:
    """Write the audit trail of a :class:`CurateResult` into ``out_dir``, manifest last.

    The old manifest, tables and report go first (a finished directory only with
    ``overwrite``), so a kill midway leaves no manifest and no stale curation.html.
    """
    from ..io import write_pairs

    from concurrent.futures import ThreadPoolExecutor

    out = Path(out_dir)
    CurateDir.start(out, overwrite=overwrite, inputs=[result.manifest["inputs"]["pool"].get("spec")])
    rows = {CurateDir.PAIRS: len(result.train), CurateDir.EVAL: len(result.eval),
            CurateDir.DROPPED: len(result.dropped), CurateDir.SCORES: len(result.scores)}
    result.out_dir = out
    # Parquet encoding releases the GIL: write the four tables in threads while this
    # thread draws the report (re-curating a cached 60k pool is mostly this writing).
    with ThreadPoolExecutor(max_workers=4) as pool:
        writes = [pool.submit(write_pairs, result.train, out / CurateDir.PAIRS),
                  pool.submit(write_pairs, result.eval, out / CurateDir.EVAL),
                  pool.submit(write_pairs, result.dropped, out / CurateDir.DROPPED),
                  pool.submit(artifacts.write_parquet, out / CurateDir.SCORES, result.scores)]
        report = result.manifest["config"].get("report", True)
        if report:
            from ..rendering import render

            render("curation", result, out / CurateDir.REPORT)
        for write in writes:
            write.result()
    manifest = {k: v for k, v in result.manifest.items() if k not in ("stage", "seed", "config")}
    inputs = manifest.pop("inputs")
    CurateDir.finish(out, config=result.manifest["config"], inputs=inputs, rows=rows,
                     report=CurateDir.REPORT if report else None, seed=result.manifest["seed"],
                     started=started, **manifest)
    return out


__all__ = ["CurateResult", "EVAL_OVERLAP", "UNREADABLE", "cached_scores", "curate",
           "input_records", "load_filter_file", "pool_hash", "unreadable_rows", "write_result"]
