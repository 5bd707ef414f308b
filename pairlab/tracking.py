"""Experiment tracking of an ablation: ``report_to: [tensorboard, wandb]`` in its config.

Each arm x seed is one tracker run, in a group named after the ablation (``name``):

* its training curves (``train_log.jsonl``, one point per optimizer step),
* its final evaluation metrics (``metrics.json``),
* the arm's filters, train overrides and pair counts (the curation manifest),
* the comparison table: TensorBoard hparams (one row per run, with the arm's paired
  comparison with the baseline), a W&B Table in a ``comparison`` run;
* the reports as W&B artifacts (``report.html``, ``comparison.json``, each eval report).

Everything is read from the ablation directory after the run finished, like the reports,
so the tracker shows what the files say, whichever executor ran the step. A run is logged
once: a marker ``tracked-<tracker>.json`` beside it makes reruns skip it.

TensorBoard logs go to ``DIR/tracking/tensorboard/<arm>-seed<S>/`` (``tensorboard
--logdir DIR/tracking/tensorboard``); W&B runs to the project ``$WANDB_PROJECT`` (default
``pairlab``), local files under ``DIR/tracking/``; ``WANDB_MODE=offline`` works without a
network. Needs ``pip install 'pairlab[tracking]'``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from . import artifacts
from .dirs import AblationDir, CurateDir, EvalDir, RunDir
from .extras import require

#: Tracker name -> what it needs (the registry ``report_to`` is checked against).
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}
EVAL_METRICS = ("accuracy", "mean_margin", "ref_free_accuracy", "ties", "true_accuracy")


def tracking_dir(layout) -> Path:
    return layout.root / "tracking"


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


def _marker(layout, arm: str, seed: int, tracker: str) -> Path:
    return layout.seed_dir(arm, seed) / f"tracked-{tracker}.json"


def run_record(cfg, layout, arm_name: str, seed: int) -> dict[str, Any] | None:
    """What a run's tracker entry shows, read from its files; None while it is unfinished."""

    eval_dir = layout.arm_eval(arm_name, seed)
    run_dir = layout.run(arm_name, seed)
    if not EvalDir.is_complete(eval_dir) or not (run_dir / RunDir.TRAIN_LOG).exists():
        return None
    arm = next(a for a in cfg.arms if a.name == arm_name)
    metrics = artifacts.read_json(eval_dir / EvalDir.METRICS)
    curate_manifest = artifacts.read_manifest(layout.curate(arm_name))
    counts = curate_manifest.get("counts", {})
    curves = pd.read_json(run_dir / RunDir.TRAIN_LOG, lines=True)
    return {
        "name": run_name(arm_name, seed),
        "params": {"ablation": cfg.name, "arm": arm_name, "seed": seed, "filters": json.dumps(arm.filters),
                   "train_overrides": json.dumps(arm.train), "pairs_kept": counts.get("train"),
                   "pairs_dropped": counts.get("dropped"), "budget": f"{cfg.budget.value:g} {cfg.budget.unit}",
                   "is_baseline": arm_name == cfg.baseline_arm},
        "metrics": {f"eval/{k}": float(metrics[k]) for k in EVAL_METRICS if metrics.get(k) is not None},
        "curves": curves,
        "reports": [p for p in (eval_dir / EvalDir.REPORT, layout.curate(arm_name) / CurateDir.REPORT) if p.exists()],
    }


# ---------------------------------------------------------------- TensorBoard

def _summary_writer(logdir: Path):
    require("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(logdir))


def tensorboard_run(layout, record: dict[str, Any]) -> None:
    writer = _summary_writer(tracking_dir(layout) / "tensorboard" / record["name"])
    try:
        curves = record["curves"]
        for col in curves.columns:
            if col in ("step", "epoch") or not pd.api.types.is_numeric_dtype(curves[col]):
                continue
            for step, value in zip(curves["step"], curves[col]):
                if pd.notna(value):
                    writer.add_scalar(f"train/{col}", float(value), int(step))
        last = int(curves["step"].max()) if len(curves) else 0
        for key, value in record["metrics"].items():
            writer.add_scalar(key, value, last)
        writer.add_text("arm", "\n\n".join(f"**{k}**: {v}" for k, v in record["params"].items()), last)
    finally:
        writer.close()


def tensorboard_comparison(layout, rows: pd.DataFrame, records: dict[str, dict[str, Any]]) -> None:
    """The comparison table as TensorBoard hparams: one row per arm x seed run."""
    for _, row in rows.iterrows():
        record = records.get(run_name(row["arm"], int(row["seed"])))
        if record is None:
            continue
        hparams = {k: ("" if v is None else v) for k, v in record["params"].items()}
        metrics = {f"hparam/{k}": float(row[k]) for k in ("accuracy", "mean_margin", "delta_accuracy",
                                                          "vs_baseline.delta", "vs_baseline.p_value")
                   if k in row and pd.notna(row[k]) and isinstance(row[k], (int, float))}
        writer = _summary_writer(tracking_dir(layout) / "tensorboard" / record["name"])
        try:  # run_name=".": in the run's own directory, so its scalars and its hparams row meet
            writer.add_hparams(hparams, metrics or {"hparam/accuracy": float("nan")}, run_name=".")
        finally:
            writer.close()


# ---------------------------------------------------------------- Weights & Biases

def _wandb_init(cfg, layout, *, name: str, job_type: str, config: dict[str, Any]):
    wandb = require("wandb")
    directory = tracking_dir(layout)
    directory.mkdir(parents=True, exist_ok=True)
    return wandb, wandb.init(project=os.environ.get("WANDB_PROJECT", "pairlab"), group=cfg.name, name=name,
                             job_type=job_type, config=config, dir=str(directory), reinit="create_new")


def wandb_run(cfg, layout, record: dict[str, Any]) -> None:
    wandb, run = _wandb_init(cfg, layout, name=record["name"], job_type="arm", config=record["params"])
    try:
        curves = record["curves"]
        numeric = [c for c in curves.columns if c != "step" and pd.api.types.is_numeric_dtype(curves[c])]
        for _, row in curves.iterrows():
            run.log({f"train/{c}": row[c] for c in numeric if pd.notna(row[c])}, step=int(row["step"]))
        run.summary.update(record["metrics"])
        if record["reports"]:
            art = wandb.Artifact(f"{_slug(cfg.name)}-{record['name']}-reports", type="report")
            for path in record["reports"]:
                art.add_file(str(path), name=Path(path).name)
            run.log_artifact(art)
    finally:
        run.finish()


def wandb_comparison(cfg, layout, rows: pd.DataFrame) -> None:
    wandb, run = _wandb_init(cfg, layout, name="comparison", job_type="comparison",
                             config={"ablation": cfg.name, "baseline": cfg.baseline_arm})
    try:
        table = rows.astype(object).where(rows.notna(), None)
        run.log({"comparison": wandb.Table(dataframe=table.map(
            lambda v: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)))})
        art = wandb.Artifact(f"{_slug(cfg.name)}-report", type="report")
        for name in (AblationDir.REPORT, AblationDir.COMPARISON, AblationDir.COMPARISON_TABLE):
            if (layout.root / name).exists():
                art.add_file(str(layout.root / name), name=name)
        run.log_artifact(art)
    finally:
        run.finish()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:64] or "ablation"


# ---------------------------------------------------------------- entry points (called by ablate)

def log_arm_run(cfg, layout, arm: str, seed: int) -> list[str]:
    """Log one finished arm x seed to every tracker that has not logged it yet; the trackers it logged to."""
    record = run_record(cfg, layout, arm, seed)
    if record is None:
        return []
    logged = []
    for tracker in cfg.report_to:
        marker = _marker(layout, arm, seed, tracker)
        if marker.exists():
            continue
        if tracker == "tensorboard":
            tensorboard_run(layout, record)
        else:
            wandb_run(cfg, layout, record)
        artifacts.write_json(marker, {"tracker": tracker, "run": record["name"]})
        logged.append(tracker)
    return logged


def log_ablation(cfg, layout, comparison: dict[str, Any]) -> None:
    """Log the runs not logged yet (a local ablation logs them all here), then the comparison."""
    from .ablate.table import comparison_table

    for tracker in cfg.report_to:  # fail before any logging when an extra is missing
        require(TRACKERS[tracker])
    records = {}
    for arm in cfg.arms:
        for seed in cfg.seeds:
            log_arm_run(cfg, layout, arm.name, seed)
            record = run_record(cfg, layout, arm.name, seed)
            if record is not None:
                records[record["name"]] = record
    rows = comparison_table(comparison)
    if rows.empty:
        return
    if "tensorboard" in cfg.report_to:
        tensorboard_comparison(layout, rows, records)
    if "wandb" in cfg.report_to:
        wandb_comparison(cfg, layout, rows)


__all__ = ["TRACKERS", "log_ablation", "log_arm_run", "run_record"]
