"""The ablation as a step graph, so any executor (local, Ray, Slurm) runs the same steps.

::

    prefill_step     pool + every arm's curation, then ONE reference pass over the pairs
                     any arm trains on and the eval split (fills the shared cache)
      └─ arm_step    one per arm x seed: train, then evaluate (reference read, never computed)
           └─ report_step   base-model evaluation, comparison.json, report.html, tracking

Each step is a plain module-level function of (config, DIR, ...) that reads and writes only
files under DIR and the shared caches, so it can run in another process or on another
machine (Ray pickles it; submitit pickles it; the sbatch scripts of ``--dry-run`` call it
through ``pairlab ablate --step``). A step that finds its output complete skips it, so
re-running a graph resumes it.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .. import artifacts
from ..config import from_dict
from ..dirs import CurateDir
from .config import AblationConfig, Arm, train_config
from .pipeline import Layout

#: Each arm x seed task's record (host, pid, states, seconds), beside its run and eval.
TASK_RECORD = "task.json"
#: The reference prefill's record (what it computed), under DIR/arms/.
PREFILL_RECORD = "reference_prefill.json"


def grid(cfg: AblationConfig) -> list[tuple[str, int]]:
    """The (arm, seed) tasks in a fixed order: the order of a Slurm array's task ids."""
    return [(arm.name, seed) for arm in cfg.arms for seed in cfg.seeds]


def arm_by_name(cfg: AblationConfig, name: str) -> Arm:
    return next(a for a in cfg.arms if a.name == name)


def is_finished(layout: Layout, arm: str, seed: int) -> bool:
    """Trained and evaluated: an executor need not start a task for it."""
    from ..dirs import EvalDir

    return (layout.run(arm, seed) / artifacts.MANIFEST).exists() and EvalDir.is_complete(layout.arm_eval(arm, seed))


def quiet_libraries() -> None:
    """No per-load progress bars from the libraries inside a worker (its log has the story)."""
    import transformers
    from datasets.utils.logging import disable_progress_bar

    transformers.utils.logging.disable_progress_bar()
    disable_progress_bar()


# ---------------------------------------------------------------- the reference prefill

def reference_groups(cfg: AblationConfig) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(model, bare-model EvalConfig fields, arm names) per distinct reference-cache key.

    Arms that differ only in filters (the usual grid) share one group. An arm without the
    cache, or with LD-DPO (TRL weights its reference itself), computes its own and is left out.
    """
    from ..train.config import dpo_settings
    from .pipeline import eval_settings

    groups: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    for arm in cfg.arms:
        tcfg = train_config(cfg, arm, cfg.seeds[0])
        if not tcfg.ref_cache or dpo_settings(tcfg).get("ld_alpha") is not None:
            continue
        settings = eval_settings(cfg, bare=True, arm=arm)
        if tcfg.ref_cache_dir:
            settings["ref_cache_dir"] = tcfg.ref_cache_dir
        key = json.dumps([tcfg.model, settings], sort_keys=True, default=str)
        groups.setdefault(key, (tcfg.model, settings, []))[2].append(arm.name)
    return list(groups.values())


def prefill_reference(cfg: AblationConfig, layout: Layout, eval_pairs: pd.DataFrame) -> dict[str, Any]:
    """Fill the shared reference cache for every pair an arm trains on and every eval pair.

    One model load and one length-sorted pass per reference key; the model is loaded only
    when pairs are missing (a warm cache costs a tokenizer load). Under the cache's lock,
    so a second prefill running at once computes nothing.
    """
    from ..evaluate.config import EvalConfig
    from ..models import load_tokenizer
    from ..policy import load_policy, reference_cache, reference_logps, resolve_setup

    started = time.time()
    out: dict[str, Any] = {"step": "prefill", "groups": []}
    for model, settings, arms in reference_groups(cfg):
        # a drop_flagged arm is curated later (after its source arm's audit); its pairs are a
        # subset of the source arm's, which are prefilled here
        kept = [pd.read_parquet(layout.curate(a) / CurateDir.PAIRS) for a in arms
                if (layout.curate(a) / CurateDir.PAIRS).exists()]
        pairs = pd.concat([*kept, eval_pairs], ignore_index=True).drop_duplicates("pair_id", ignore_index=True)
        ecfg = from_dict(EvalConfig, settings).validate()
        setup = resolve_setup(ecfg, model=model)
        cache = reference_cache(setup, load_tokenizer(setup.model, **(setup.model_options or {})))
        missing = len(cache.missing(pairs["pair_id"].astype(str)))
        stats = {"pairs": len(pairs), "computed": 0, "cache_hits": len(pairs), "key": cache.key}
        if missing:
            policy, tokenizer = load_policy(setup)
            _, got = reference_logps(policy, tokenizer, pairs, setup, cache, batch_size=ecfg.batch_size)
            stats.update(computed=got["computed"], cache_hits=got["cache_hits"])
            del policy
        out["groups"].append({"model": model, "arms": arms, **stats})
    out["computed"] = sum(g["computed"] for g in out["groups"])
    out["seconds"] = round(time.time() - started, 3)
    path = layout.root / "arms" / PREFILL_RECORD
    if out["computed"] or not path.exists():  # a warm rerun keeps the record of the pass that computed
        artifacts.write_json(path, out)
    return out


def prefill_record(layout: Layout) -> dict[str, Any] | None:
    path = layout.root / "arms" / PREFILL_RECORD
    return artifacts.read_json(path) if path.exists() else None


# ---------------------------------------------------------------- the steps

def prefill_step(cfg: AblationConfig, out_dir: str) -> dict[str, Any]:
    """Pool, eval split and every arm's curated subset (skipped when present), then the prefill."""
    from .pipeline import prepare

    quiet_libraries()
    cfg.validate()
    layout, _, eval_pairs = prepare(cfg, out_dir)
    return prefill_reference(cfg, layout, eval_pairs)


def arm_step(cfg: AblationConfig, out_dir: str, arm_name: str, seed: int, *after: Any) -> dict[str, Any]:
    """Train and evaluate one arm x seed (each skipped when finished); record the task.

    ``after`` is ignored: executors pass the prefill's result there to order the graph.
    """
    from .pipeline import build_pool, evaluate_dir, train_arm

    quiet_libraries()
    started = time.time()
    layout = Layout(Path(out_dir))
    _, eval_pairs = build_pool(cfg, layout)  # written by the prefill step: read back here
    arm = arm_by_name(cfg, arm_name)
    trained = train_arm(cfg, arm, seed, layout)
    evaluated = evaluate_dir(cfg, eval_pairs, layout.arm_eval(arm_name, seed), eval_spec=str(layout.eval),
                             run=layout.run(arm_name, seed), log_path=layout.log(arm_name, seed))
    event = {"arm": arm_name, "seed": seed, "train": trained, "evaluate": evaluated,
             "host": socket.gethostname(), "pid": os.getpid(), "seconds": round(time.time() - started, 3),
             "executor": os.environ.get("PAIRLAB_EXECUTOR") or os.environ.get("SUBMITIT_EXECUTOR") or "local"}
    artifacts.write_json(layout.seed_dir(arm_name, seed) / TASK_RECORD, event)
    if cfg.report_to:
        from ..tracking import log_arm_run

        log_arm_run(cfg, layout, arm_name, seed)
    return event


def task_events(cfg: AblationConfig, layout: Layout) -> list[dict[str, Any]]:
    """The task records the arm steps left (wherever they ran), in grid order."""
    events = []
    for arm, seed in grid(cfg):
        path = layout.seed_dir(arm, seed) / TASK_RECORD
        if path.exists():
            events.append(artifacts.read_json(path))
    return events


def report_step(cfg: AblationConfig, out_dir: str, *after: Any) -> dict[str, Any]:
    """Base evaluation, comparison and report: ``ablate`` over a DIR whose runs are finished
    (it skips them), with the executor's task records as the events."""
    from .pipeline import ablate

    quiet_libraries()
    return ablate(cfg, out_dir, progress=False, executed=task_events(cfg, Layout(Path(out_dir))))


__all__ = ["PREFILL_RECORD", "TASK_RECORD", "arm_step", "grid", "is_finished", "prefill_record",
           "prefill_reference", "prefill_step",
           "reference_groups", "report_step", "task_events"]
