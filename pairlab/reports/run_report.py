"""The run report: what a `pairlab train` run did, from its directory alone.

Reads ``RUN_DIR/{manifest.json, train_log.jsonl, dynamics.parquet}`` and shows the
training curves (loss, reward accuracy, margins, chosen/rejected rewards, learning
rate), a per-epoch summary of the per-pair dynamics, how each pair's margin moved
from its first to its last sighting, and the config and manifest. The eval report
reuses :func:`load_run`, :func:`training_figure` and :func:`training_context` when
the evaluated run's directory is at hand.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__, artifacts
from ..dirs import RunDir
from .render import figure_to_data_uri, pyplot, write_report

TRAIN_LOG = RunDir.TRAIN_LOG
DYNAMICS = RunDir.DYNAMICS

#: train_log.jsonl keys plotted, one panel each (keys absent from the log are skipped).
CURVES: list[tuple[str, tuple[str, ...], str]] = [
    ("loss", ("loss",), "DPO loss"),
    ("accuracy", ("rewards/accuracies",), "reward accuracy (margin > 0)"),
    ("margins", ("rewards/margins",), "mean reward margin"),
    ("rewards", ("rewards/chosen", "rewards/rejected"), "mean implicit reward"),
    ("learning_rate", ("learning_rate",), "learning rate"),
    ("grad_norm", ("grad_norm",), "gradient norm"),
]
_CHOSEN, _REJECTED, _LINE = "#2b6cb0", "#dd6b20", "#2d3748"


@dataclass
class RunInputs:
    dir: Path
    manifest: dict[str, Any]
    train_log: pd.DataFrame
    dynamics: pd.DataFrame | None


def read_train_log(path: Path) -> pd.DataFrame:
    """``train_log.jsonl`` -> one row per logged step (blank lines skipped)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame.from_records(records)


def load_run(run_dir: str | os.PathLike) -> RunInputs:
    run_dir = Path(run_dir)
    manifest = artifacts.read_manifest(run_dir) if (run_dir / artifacts.MANIFEST).exists() else {}
    log_path = run_dir / TRAIN_LOG
    train_log = read_train_log(log_path) if log_path.exists() else pd.DataFrame()
    dyn_path = run_dir / DYNAMICS
    dynamics = pd.read_parquet(dyn_path) if dyn_path.exists() else None
    return RunInputs(run_dir, manifest, train_log, dynamics)


# ---------------------------------------------------------------- figures

def training_figure(log: pd.DataFrame):
    """One panel per logged curve against the optimizer step; None when nothing was logged."""
    if log.empty or "step" not in log:
        return None
    panels = [(name, [k for k in keys if k in log and log[k].notna().any()], title)
              for name, keys, title in CURVES]
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    ncols = 2  # two columns stay legible at phone width
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.5 * nrows), squeeze=False)
    step = log["step"].to_numpy(float)
    for ax, (name, keys, title) in zip(axes.flat, panels):
        for key in keys:
            color = _REJECTED if key.endswith("rejected") else _CHOSEN if key.endswith("chosen") else _LINE
            label = key.split("/")[-1] if len(keys) > 1 else None
            ax.plot(step, log[key].to_numpy(float), color=color, lw=1.3, label=label,
                    marker="o" if len(step) < 30 else None, ms=3)
        if name in ("accuracy",):
            ax.set_ylim(-0.02, 1.02)
            ax.axhline(0.5, color="#aaa", lw=0.8, ls="--")
        if name in ("margins", "rewards"):
            ax.axhline(0.0, color="#aaa", lw=0.8, ls="--")
        if len(keys) > 1:
            ax.legend(fontsize=7, frameon=False)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def margin_shift_figure(per_pair_moves: pd.DataFrame):
    """Histogram of each pair's margin at its first and at its last sighting in training."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    first, last = per_pair_moves["first_margin"].to_numpy(float), per_pair_moves["last_margin"].to_numpy(float)
    both = np.concatenate([first, last])
    both = both[np.isfinite(both)]
    bins = np.histogram_bin_edges(both, bins=40) if len(both) and np.ptp(both) > 0 else 20
    ax.hist(first, bins=bins, color="#9aa5b1", alpha=0.8, label="first sighting")
    ax.hist(last, bins=bins, color=_CHOSEN, alpha=0.6, label="last sighting")
    ax.axvline(0.0, color="#444", lw=0.8, ls="--")
    ax.set_xlabel("implicit reward margin (chosen - rejected)", fontsize=8)
    ax.set_ylabel("pairs", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("per-pair margin during training (before each step's update)", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- tables

def dynamics_summary(dynamics: pd.DataFrame | None) -> dict[str, Any] | None:
    """Per-epoch rows and first-vs-last-sighting counts from ``dynamics.parquet``."""
    if dynamics is None or dynamics.empty:
        return None
    by_epoch = dynamics.groupby("epoch")
    epochs = [{"epoch": int(e), "rows": int(len(g)), "pairs": int(g["pair_id"].nunique()),
               "mean_margin": float(g["margin"].mean()), "margin_positive": float((g["margin"] > 0).mean()),
               "mean_loss": float(g["loss"].mean()) if "loss" in g and g["loss"].notna().any() else None}
              for e, g in by_epoch]
    ordered = dynamics.sort_values(["step", "micro_step"] if "micro_step" in dynamics else ["step"], kind="stable")
    per_pair = ordered.groupby("pair_id", sort=False)["margin"].agg(first_margin="first", last_margin="last",
                                                                    sightings="size")
    first_pos, last_pos = per_pair["first_margin"] > 0, per_pair["last_margin"] > 0
    moves = {"pairs": int(len(per_pair)), "rows": int(len(dynamics)),
             "steps": int(dynamics["step"].nunique()),
             "mean_sightings": float(per_pair["sightings"].mean()),
             "last_margin_positive": float(last_pos.mean()),
             "learned": int((~first_pos & last_pos).sum()),
             "unlearned": int((first_pos & ~last_pos).sum()),
             "mean_margin_change": float((per_pair["last_margin"] - per_pair["first_margin"]).mean())}
    return {"epochs": epochs, "moves": moves, "per_pair": per_pair}


def _dig(mapping: dict[str, Any], dotted: str) -> Any:
    value: Any = mapping
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


#: (label, dotted path in the train manifest) shown as the run's headline settings.
HIGHLIGHTS = [
    ("model", "config.model"), ("quantization", "config.quantization"), ("LoRA r", "config.lora.r"),
    ("loss", "config.dpo_effective.loss_type"), ("beta", "config.dpo_effective.beta"),
    ("learning rate", "config.dpo_effective.learning_rate"),
    ("epochs", "config.dpo_effective.num_train_epochs"), ("max steps", "config.dpo_effective.max_steps"),
    ("pairs", "inputs.n_pairs"), ("global step", "global_step"), ("device", "device"),
    ("wall time (s)", "wall_time_s"), ("peak RSS (MB)", "memory.peak_rss_mb"),
    ("peak CUDA (MB)", "memory.peak_cuda_allocated_mb"), ("resumed from", "resumed_from"),
]


def highlights(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for label, path in HIGHLIGHTS:
        value = _dig(manifest, path)
        if value is None and path == "config.dpo_effective.beta":
            value = _dig(manifest, "config.dpo.beta")
        if value is not None and value != [] and value != -1:
            out.append({"label": label, "value": value if not isinstance(value, list) else ", ".join(map(str, value))})
    return out


def final_step(log: pd.DataFrame) -> dict[str, Any] | None:
    if log.empty:
        return None
    row = log.iloc[-1].to_dict()
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}


# ---------------------------------------------------------------- context, summary, render

def training_context(run: RunInputs) -> dict[str, Any]:
    """The training section shared by run and eval reports."""
    fig = training_figure(run.train_log)
    dyn = dynamics_summary(run.dynamics)
    return {
        "dir": str(run.dir),
        "highlights": highlights(run.manifest),
        "curves": None if fig is None else figure_to_data_uri(fig),
        "n_steps": int(len(run.train_log)),
        "final": final_step(run.train_log),
        "dynamics": None if dyn is None else {"epochs": dyn["epochs"], "moves": dyn["moves"]},
        # Pairs seen once have one margin: a first-vs-last histogram would show two equal bars.
        "margin_shift": None if dyn is None or dyn["moves"]["mean_sightings"] <= 1
        else figure_to_data_uri(margin_shift_figure(dyn["per_pair"])),
        "manifest": artifacts.to_json(run.manifest) if run.manifest else None,
    }


def run_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Machine-readable summary (``pairlab report RUN_DIR --format json``)."""
    run = load_run(run_dir)
    dyn = dynamics_summary(run.dynamics)
    return {"kind": "run", "dir": str(run.dir),
            "settings": {h["label"]: h["value"] for h in highlights(run.manifest)},
            "n_logged_steps": int(len(run.train_log)), "final_step": final_step(run.train_log),
            "train_log": run.train_log.to_dict(orient="records"),
            "dynamics": None if dyn is None else {"epochs": dyn["epochs"], "moves": dyn["moves"]},
            "manifest": run.manifest}


def render_run_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    run = load_run(run_dir)
    out = Path(out) if out is not None else run.dir / RunDir.REPORT
    return write_report(out, "run.html", version=__version__, title=f"pairlab run report: {run.dir.name}",
                        training=training_context(run), created=run.manifest.get("created"))
