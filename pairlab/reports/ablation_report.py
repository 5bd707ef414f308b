"""The ablation report: the arms of `pairlab ablate` side by side, from DIR/comparison.json.

Shows the verdict `pairlab ablate` wrote (significance after Holm correction, and the
minimum detectable effect where nothing was detected), the arms table (pairs kept, true
label noise when known, accuracy with CI, delta vs the baseline arm with its CI, McNemar's p
and Holm-corrected p, MDE, per-seed deltas next to the pooled one, margin, reference-free
accuracy, length-bias split, train time), accuracy vs pairs kept, a per-source
heatmap, and links to every arm's evaluation and curation report.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, artifacts
from ..dirs import AblationDir
from .render import figure_to_data_uri, pyplot, write_report

COMPARISON = AblationDir.COMPARISON


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def verdict(c: dict[str, Any]) -> str:
    """The verdict `pairlab ablate` wrote into comparison.json (winner only where the design detected one)."""
    v = c.get("verdict")
    if isinstance(v, dict) and v.get("text"):
        return v["text"]
    return ("This comparison.json has no verdict with power and multiple-comparison correction; run "
            "`pairlab ablate --config ... --out DIR --report-only` to recompute it.")


def _figures(c: dict[str, Any]) -> list[dict[str, str]]:
    plt = pyplot()
    figs = []
    done = [a for a in c["arms"] if a["accuracy"]["mean"] is not None]
    if done:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for a in done:
            ci = a["seeds"][0].get("accuracy_ci95") or [a["accuracy"]["mean"]] * 2
            err = (a["accuracy"]["sd"] if a["accuracy"]["sd"] is not None else
                   [[a["accuracy"]["mean"] - ci[0]], [ci[1] - a["accuracy"]["mean"]]])
            ax.errorbar([a["pairs_kept"]], [a["accuracy"]["mean"]], yerr=err, fmt="o", capsize=4)
            ax.annotate(a["name"], (a["pairs_kept"], a["accuracy"]["mean"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        if c.get("base_model"):
            ax.axhline(c["base_model"]["ref_free_accuracy"], ls="--", color="#999", lw=1)
            ax.text(ax.get_xlim()[0], c["base_model"]["ref_free_accuracy"], " base ref-free", fontsize=7,
                    color="#666", va="bottom")
        ax.set_xlabel("training pairs kept")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=.3)
        figs.append({"uri": figure_to_data_uri(fig),
                     "caption": "Held-out preference accuracy vs pairs kept (bars: 95% CI, or sd over seeds)."})
    sources = _sources(c)
    if done and sources:
        grid = np.array([[a["seeds"][0].get("by_source", {}).get(s, np.nan) for s in sources] for a in done],
                        dtype=float)
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(sources) + 2), 0.5 * len(done) + 1.5))
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(sources)), sources, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(done)), [a["name"] for a in done], fontsize=8)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i, j] < 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.04)
        figs.append({"uri": figure_to_data_uri(fig), "caption": "Held-out accuracy per source and arm."})
    return figs


def _sources(c: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for a in c["arms"]:
        for s in (a["seeds"][0].get("by_source") or {}):
            if s not in seen:
                seen.append(s)
    return seen


def _filters_text(filters: list[Any]) -> str:
    if not filters:
        return "(none: all pairs)"
    parts = []
    for f in filters:
        if isinstance(f, dict):
            parts.extend(f"{k}: {v}" for k, v in f.items())
        else:
            parts.append(str(f))
    return "; ".join(parts)


def _delta_text(arm: dict[str, Any]) -> str:
    v = arm.get("vs_baseline")
    if not v:
        return "–"
    lo, hi = v["delta_ci95"]
    return f"{100 * v['delta']:+.1f} pts ({100 * lo:+.1f} to {100 * hi:+.1f})"


def _p_text(arm: dict[str, Any]) -> str:
    v = arm.get("vs_baseline")
    if not v:
        return "–"
    holm = f" / {v['p_holm']:.2g}" if v.get("n_comparisons", 1) > 1 else ""
    return f"{v['p_value']:.2g}{holm}" + (" *" if v.get("significant") else "")


def _mde_text(arm: dict[str, Any]) -> str:
    v = arm.get("vs_baseline")
    if not v:
        return "–"
    return "none detectable" if v.get("mde") is None else f"{100 * v['mde']:.1f} pts"


def _seeds_text(arm: dict[str, Any]) -> str:
    """Per-seed deltas next to the pooled one (the spread the pooled test sits on)."""
    v = arm.get("vs_baseline")
    if not v or not v.get("per_seed"):
        return ""
    sd = v.get("per_seed_delta_sd")
    return ("seeds: " + ", ".join(f"{100 * r['delta']:+.1f}" for r in v["per_seed"])
            + ("" if sd is None else f" (sd {100 * sd:.1f})"))


def ablation_summary(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / COMPARISON
    if not path.exists():
        from .kinds import ReportError

        raise ReportError("no comparison.json (the ablation has not gathered its arms yet)", file=str(directory),
                          hint="run `pairlab ablate --config ... --out DIR --report-only`")
    c = artifacts.read_json(path)
    decision = c.get("verdict") if isinstance(c.get("verdict"), dict) else {}
    return {"kind": "ablation", "dir": str(directory), **c, "verdict": verdict(c),
            "winner": decision.get("winner"), "verdict_detail": decision or None}


def write_ablation_report(directory: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    directory = Path(directory)
    c = ablation_summary(directory)
    for a in c["arms"]:
        a["filters_text"] = _filters_text(a["filters"])
        a["delta_text"], a["p_text"] = _delta_text(a), _p_text(a)
        a["mde_text"], a["seeds_text"] = _mde_text(a), _seeds_text(a)
    config_path = directory / AblationDir.CONFIG
    manifest = artifacts.read_manifest(directory) if (directory / artifacts.MANIFEST).exists() else {}
    return write_report(
        Path(out) if out else directory / AblationDir.REPORT, "ablation.html",
        title=f"pairlab ablation: {c['name']}", c=c, root=str(directory), created=manifest.get("created"),
        verdict=c["verdict"], figures=_figures(c), sources=_sources(c),
        has_truth=any(a.get("true_label_noise") is not None for a in c["arms"]),
        config_text=config_path.read_text(encoding="utf-8") if config_path.exists() else "",
        comparison_text=artifacts.to_json({k: v for k, v in c.items() if k != "events"}),
        version=__version__)

