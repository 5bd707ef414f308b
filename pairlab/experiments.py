"""The step runner the orchestrators share: `ablate` and `audit --validate` (and its suite).

Each ``ensure_*`` makes one stage directory the orchestrator owns hold what its config asks
for, under **one resume rule**:

* **finished, manifest verified, same config and inputs** -> reused (state ``"skipped (finished)"``);
* **debris** (no manifest: a killed step) -> redone; a training run with a complete checkpoint
  resumes from it;
* **finished from another config or other inputs** (the YAML changed, or the step it reads was
  redone after it) -> redone, and the returned ``replaced`` says why. The orchestrator owns the
  directory, and what it must hold is what the config asks for now;
* **finished but changed by hand** (the manifest's hashes no longer match) -> refused with the
  :class:`~pairlab.dirs.StageDirError` saying how to redo it: pairlab never discards a
  directory it cannot vouch for.

"Other inputs": a run whose training pairs file differs from the one it recorded, and an
evaluation that is not of the same eval pairs (every column), config, model weights, run (the
sha256 of the run's manifest as it is now: the run was retrained after it) and prompts file.
That evaluation test is `pairlab evaluate --resume`'s own (``evaluate.runner.finished_evaluation``):
one rule, which `--resume` applies by refusing a difference and a step by redoing it.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from . import artifacts
from .config import to_dict
from .dirs import MANIFEST, CurateDir, EvalDir, RunDir, StageDir, StageDirError, read_manifest

log = logging.getLogger("pairlab.experiments")

SKIPPED = "skipped (finished)"


@contextlib.contextmanager
def run_log(path: Path | None) -> Iterator[None]:
    """Send pairlab/transformers/TRL log records of one step to its own log file (None: no file)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    # pairlab's own records at INFO; the libraries' at their configured level (warnings),
    # so their console output is unchanged and their warnings also land in the file.
    # bitsandbytes' notices and Python warnings (py.warnings, when the CLI routes them to
    # logging) are kept off the console by pairlab.console, and kept here.
    loggers = [logging.getLogger(n) for n in ("pairlab", "transformers", "trl", "peft", "bitsandbytes",
                                              "py.warnings")]
    own, level = loggers[0], loggers[0].level
    own.setLevel(logging.INFO)
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        own.setLevel(level)
        handler.close()


# ---------------------------------------------------------------- the rule

def _plain(value: Any) -> Any:
    """``value`` as its manifest would hold it (JSON round trip: tuples -> lists, paths -> str)."""
    return json.loads(artifacts.to_json(value))


def step_state(kind: type[StageDir], out: Path, *, config: dict[str, Any] | None = None,
               inputs: dict[str, Any] | None = None, after: Path | None = None) -> tuple[str, str | None]:
    """(state, why) of one step's directory under the resume rule.

    state: ``"done"`` (reuse it), ``"stale"`` (finished from another config / inputs: redo it;
    ``why`` says which), or ``"todo"`` (absent or debris). ``config``: the fields the manifest's
    ``config`` must equal (keys the manifest adds, like ``dpo_effective``, are ignored);
    ``inputs``: ``{key: value}`` its ``inputs`` must hold; ``after``: a directory whose manifest
    must be older than this one's (the step it reads). A changed finished directory raises.
    """
    if not (out / MANIFEST).exists():
        return "todo", None
    manifest = kind.verify(out)  # a finished directory changed by hand is refused here
    if config is not None:
        recorded = manifest.get("config") or {}
        wanted = _plain(config)
        changed = sorted(k for k in set(wanted) | set(recorded)
                         if k in wanted and recorded.get(k) != wanted[k])
        if changed:
            return "stale", f"config changed ({', '.join(changed[:3])})"
    for key, value in (inputs or {}).items():
        if value is not None and (manifest.get("inputs") or {}).get(key) != value:
            return "stale", f"input {key} changed"
    if after is not None and (after / MANIFEST).exists() and \
            (after / MANIFEST).stat().st_mtime_ns > (out / MANIFEST).stat().st_mtime_ns:
        return "stale", f"{after.name} was redone after it"
    return "done", None


def _replace(kind: type[StageDir], out: Path, why: str) -> None:
    log.warning("%s: %s; redoing it", out, why)
    kind.clean(out, scratch=True)


# ---------------------------------------------------------------- the steps

def ensure_curated(pool: pd.DataFrame, filters: list, config, out: Path, **curate_kwargs: Any) -> dict[str, Any]:
    """``curate(pool, filters, config, out_dir=out, ...)`` unless ``out`` already holds exactly that."""
    from .curate import curate
    from .curate.filters import parse_filters
    from .curate.pipeline import pool_hash

    out = Path(out)
    state, why = step_state(CurateDir, out, config=to_dict(config))
    if state == "done":
        manifest = read_manifest(out)
        same_filters = manifest.get("filters") == _plain([f.spec() for f in parse_filters(filters)])
        same_pool = (manifest.get("inputs") or {}).get("pool", {}).get("content_sha256") == pool_hash(pool)
        if same_filters and same_pool:
            return {"state": SKIPPED}
        state, why = "stale", "filters changed" if not same_filters else "pool changed"
    if state == "stale":
        _replace(CurateDir, out, why)
    curate(pool, filters, config, out_dir=out, **curate_kwargs)  # debris: curate cleans and redoes it
    return {"state": "curated", **({"replaced": why} if why else {})}


def ensure_trained(pairs_path: Path, config, run_dir: Path, *, log_path: Path | None = None,
                   label: str = "", **train_kwargs: Any) -> dict[str, Any]:
    """``train(pairs_path, config, run_dir)`` unless ``run_dir`` is a finished run of exactly that;
    an interrupted run resumes from its last complete checkpoint."""
    from .train import train
    from .train.pipeline import interrupted_run_mismatch
    from .train.resume import latest_checkpoint

    run_dir, pairs_path = Path(run_dir), Path(pairs_path)
    state, why = step_state(RunDir, run_dir, config=to_dict(config),
                            inputs={"pairs_sha256": artifacts.file_sha256(pairs_path) if pairs_path.is_file() else None})
    if state == "done":
        return {"state": SKIPPED}
    if state == "todo" and pairs_path.is_file():  # an interrupted run of another config: redo it
        mismatch = interrupted_run_mismatch(pairs_path, config, run_dir)
        if mismatch:
            state, why = "stale", f"interrupted run {mismatch}"
    if state == "stale":
        _replace(RunDir, run_dir, why)
    partial = latest_checkpoint(run_dir / RunDir.CHECKPOINTS) is not None
    with run_log(log_path):
        log.info("%straining (%s)", f"{label}: " if label else "", "resumed" if partial else "new")
        result = train(pairs_path, config, run_dir, resume=True, **train_kwargs)
    return {"state": "resumed" if partial else "trained", "steps": result.global_step,
            "wall_time_s": result.wall_time_s, **({"replaced": why} if why else {})}


def ensure_evaluated(eval_pairs: pd.DataFrame, out: Path, config, *, run: Path | None = None,
                     model: str | None = None, eval_spec: str | None = None,
                     log_path: Path | None = None) -> dict[str, Any]:
    """``evaluate(eval_pairs, out, run=run | model=model, config=config)`` unless ``out`` already
    holds that evaluation of the run as it is now (an evaluation older than its run is redone)."""
    from .evaluate.runner import evaluate

    out = Path(out)
    state, why = step_state(EvalDir, out)  # verified (a directory changed by hand raises), or todo
    if state == "done":
        # One resume rule with `pairlab evaluate --resume` (evaluate.runner.finished_evaluation):
        # the same eval pairs (every column), config, model weights, run (its manifest as it is now)
        # and prompts file. --resume refuses a difference; a step redoes it.
        try:
            evaluate(eval_pairs, out, run=run, model=model, config=config, eval_spec=eval_spec, resume=True)
            return {"state": SKIPPED}
        except StageDirError as err:
            state, why = "stale", err.message
    if state == "stale":
        _replace(EvalDir, out, why)
    with run_log(log_path):
        evaluate(eval_pairs, out, run=run, model=model, config=config, eval_spec=eval_spec)
    return {"state": "evaluated", **({"replaced": why} if why else {})}


__all__ = ["SKIPPED", "ensure_curated", "ensure_evaluated", "ensure_trained", "run_log", "step_state"]
