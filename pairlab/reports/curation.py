"""The curation report: what each filter removed, and what the kept data looks like.

One page: counts, a drop waterfall per filter, rating-gap histograms before/after,
chosen vs rejected token lengths, per-source counts, pool-level score counts, and a
few dropped examples per filter with the reason. Input is a ``CurateResult``-like
object (``scores``, ``steps``, ``manifest``, ``dropped``) so the report can also be
rebuilt from a curate output directory (:func:`report_from_dir`).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__, artifacts
from ..dirs import CurateDir
from .render import figure_to_data_uri, pyplot, write_report

#: Boolean scores summarized as pool-level counts, with their table labels.
FLAG_SCORES = {
    "is_tie": "ties (rating_gap == 0)",
    "would_truncate": "would truncate at max_length",
    "chosen_empty": "empty chosen",
    "rejected_empty": "empty rejected",
    "identical": "chosen == rejected (normalized)",
    "near_identical": "near-identical completions",
    "prompt_near_dup": "prompt has a near-duplicate",
    "chosen_refusal": "refusal marker in chosen",
    "rejected_refusal": "refusal marker in rejected",
    "contaminated": "contaminated prompt",
}
EXAMPLES_PER_FILTER = 3
EXCERPT = 300

_BEFORE, _AFTER = "#9aa5b1", "#2b6cb0"


def _excerpt(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= EXCERPT else text[:EXCERPT] + " …"


def waterfall_figure(steps: list[dict[str, Any]], start: int):
    """Rows remaining after each filter, with the drop of each step shaded."""
    plt = pyplot()
    labels = ["train side"] + [s["label"] for s in steps]
    remaining = [start] + [s["rows_out"] for s in steps]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.0))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, remaining, color=_AFTER)
    for i, s in enumerate(steps, start=1):
        ax.barh(y[i], s["dropped"], left=s["rows_out"], color="#e53e3e", alpha=0.6)
        ax.text(max(remaining) * 1.01, y[i], f"-{s['dropped']:,}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("pairs")
    ax.set_xlim(0, max(max(remaining), 1) * 1.15)
    ax.set_title("rows kept after each filter (red: dropped by it)", fontsize=10)
    return fig


def hist_before_after(before: pd.Series, after: pd.Series, title: str, xlabel: str,
                      discrete: bool = False):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    values = before.dropna().to_numpy(float)
    if len(values) == 0:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    else:
        if discrete and len(np.unique(values)) <= 40:
            u = np.unique(values)
            step = np.min(np.diff(u)) if len(u) > 1 else 1.0
            bins = np.append(u - step / 2, u[-1] + step / 2)
        else:
            bins = np.histogram_bin_edges(values, bins=40)
        ax.hist(values, bins=bins, color=_BEFORE, label=f"before ({len(values):,})")
        kept = after.dropna().to_numpy(float)
        ax.hist(kept, bins=bins, color=_AFTER, alpha=0.85, label=f"kept ({len(kept):,})")
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    return fig


def lengths_figure(scores: pd.DataFrame, title: str):
    """Chosen vs rejected completion tokens (log-spaced bins)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    c = scores["chosen_tokens"].to_numpy(float)
    r = scores["rejected_tokens"].to_numpy(float)
    if len(c):
        hi = max(c.max(), r.max(), 2)
        bins = np.unique(np.geomspace(1, hi + 1, 40).round())
        ax.hist(c, bins=bins, histtype="step", linewidth=1.6, color="#2f855a",
                label=f"chosen (median {np.median(c):.0f})")
        ax.hist(r, bins=bins, histtype="step", linewidth=1.6, color="#c53030",
                label=f"rejected (median {np.median(r):.0f})")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("completion tokens")
    ax.set_ylabel("pairs")
    return fig


def source_table(scores: pd.DataFrame) -> list[dict[str, Any]]:
    status = pd.crosstab(scores["source"].replace("", "(unknown)"), scores["status"])
    for col in ("train", "eval", "dropped"):
        if col not in status:
            status[col] = 0
    status["input"] = status[["train", "eval", "dropped"]].sum(axis=1)
    status = status.sort_values("input", ascending=False)
    return [{"source": src, **{k: int(row[k]) for k in ("input", "train", "eval", "dropped")}}
            for src, row in status.iterrows()]


def examples(dropped: pd.DataFrame, labels: list[str]) -> list[dict[str, Any]]:
    out = []
    for label in labels:
        rows = dropped[dropped["dropped_by"] == label].head(EXAMPLES_PER_FILTER)
        for _, row in rows.iterrows():
            out.append({"filter": label, "reason": row.get("drop_reason", ""),
                        "would_drop": row.get("would_drop", ""), "pair_id": row["pair_id"],
                        "prompt": _excerpt(row["prompt_text"]), "chosen": _excerpt(row["chosen"]),
                        "rejected": _excerpt(row["rejected"])})
    return out


def curation_context(result) -> dict[str, Any]:
    """Everything the template shows, from a CurateResult-like object."""
    scores, steps, manifest = result.scores, result.steps, result.manifest
    side = scores[scores["split"] == "train"]
    kept = scores[scores["status"] == "train"]
    counts = manifest["counts"]
    figures = {
        "waterfall": figure_to_data_uri(waterfall_figure(steps, len(side))),
        "rating_gap": figure_to_data_uri(hist_before_after(
            side["rating_gap"], kept["rating_gap"], "rating gap (chosen - rejected)",
            "rating_gap", discrete=True)),
        "lengths_before": figure_to_data_uri(lengths_figure(side, "before filters (train side)")),
        "lengths_after": figure_to_data_uri(lengths_figure(kept, "kept")),
    }
    flags = [{"name": name, "label": label, "pool": int(scores[name].sum()),
              "kept": int(kept[name].sum())} for name, label in FLAG_SCORES.items()
             if name in scores]
    cfg = manifest["config"]
    pool = manifest.get("inputs", {}).get("pool", {})
    return {
        "version": __version__,
        "counts": counts,
        "steps": steps,
        "figures": figures,
        "sources": source_table(scores),
        "flags": flags,
        "examples": examples(result.dropped, [s["label"] for s in steps]),
        "config": {k: cfg.get(k) for k in ("tokenizer", "max_length", "eval_fraction", "seed",
                                           "contamination_file", "near_dup_threshold",
                                           "near_identical_threshold")},
        "split": manifest.get("split", {}),
        # rows in the input file(s) = read + unreadable (when the CLI recorded them)
        "read": {"rows": pool.get("rows_in_input"), "records": pool.get("records_read"),
                 "rejected": pool.get("rejected", 0)},
        "pool_hash": manifest.get("inputs", {}).get("pool", {}).get("content_sha256", ""),
        "score_cache": manifest.get("score_cache", {}),
        "length_bias": {
            "before": float((side["length_diff"] > 0).mean()) if len(side) else float("nan"),
            "after": float((kept["length_diff"] > 0).mean()) if len(kept) else float("nan"),
        },
    }


def write_curation_report(result, path: str | os.PathLike) -> Path:
    """Write ``curation.html`` for a CurateResult (or the same fields read from disk)."""
    return write_report(path, "curation.html", **curation_context(result))


def report_from_dir(out_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Rebuild ``curation.html`` from a curate output directory."""
    out = Path(out_dir)
    manifest = artifacts.read_manifest(out)
    result = SimpleNamespace(scores=pd.read_parquet(out / CurateDir.SCORES),
                             dropped=pd.read_parquet(out / CurateDir.DROPPED),
                             steps=manifest.get("steps", []), manifest=manifest)
    return write_curation_report(result, path or out / CurateDir.REPORT)
