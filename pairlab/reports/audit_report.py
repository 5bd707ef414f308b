"""The audit report: which training pairs helped or hurt held-out preference, from AUDIT_DIR alone.

Reads ``AUDIT_DIR/{attribution.parquet, checkpoints.json, manifest.json}`` and, when the
audit came from ``pairlab audit --validate``, ``validation.json`` (in AUDIT_DIR or its
parent). Shows the top helpful and harmful pairs with their text (autoescaped), the
cartography scatter, score distributions per source and per curation filter, the
correlation matrix of the scores, and the validation results.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__, artifacts
from ..dirs import AuditDir, ValidationDir
from ..audit.registry import ATTRIBUTION_SCORES
from .render import figure_to_data_uri, pyplot, write_report

ATTRIBUTION = AuditDir.ATTRIBUTION
VALIDATION = ValidationDir.VALIDATION
HTML = AuditDir.REPORT
#: Side columns shown beside a flagged pair's own score (training-dynamics measures, not scores).
CONTEXT_COLUMNS = ("confidence",)


def shown_scores(scores: pd.DataFrame) -> list[str]:
    """The registry's scores present (and not all NaN) in ``scores``, in registry order. Read at
    call time, so a score registered with :func:`pairlab.audit.registry.register_attribution_score`
    is shown without an edit here."""
    return [c for c in ATTRIBUTION_SCORES if c in scores and scores[c].notna().any()]
_REGION_COLORS = {"easy": "#2b6cb0", "ambiguous": "#805ad5", "hard-to-learn": "#dd6b20"}


def _validation(directory: Path) -> dict[str, Any] | None:
    for path in (directory / VALIDATION, directory.parent / VALIDATION):
        if path.exists():
            return artifacts.read_json(path)
    return None


def cartography_figure(scores: pd.DataFrame) -> str | None:
    if "confidence" not in scores or scores["confidence"].isna().all():
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    wrong = scores["true_preference_correct"].eq(False) if "true_preference_correct" in scores else None
    for region, color in _REGION_COLORS.items():
        sub = scores[scores["region"] == region]
        ax.scatter(sub["variability"], sub["confidence"], s=14, alpha=0.7, color=color, label=region)
    if wrong is not None and wrong.any():
        sub = scores[wrong]
        ax.scatter(sub["variability"], sub["confidence"], s=40, facecolors="none", edgecolors="#c53030",
                   label="mislabeled (known)")
    ax.set_xlabel("variability (sd of sigmoid(margin))")
    ax.set_ylabel("confidence (mean sigmoid(margin))")
    ax.legend(fontsize=8)
    return figure_to_data_uri(fig)


def distribution_figure(scores: pd.DataFrame, group: str, columns: list[str]) -> str | None:
    """Box plots of each score (percentile ranks, so they share an axis) per group."""
    if group not in scores or scores[group].nunique() < 1:
        return None
    plt = pyplot()
    groups = sorted(scores[group].astype(str).unique())[:12]
    fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 3.4), squeeze=False)
    ranks = scores[columns].rank(pct=True)
    for ax, col in zip(axes[0], columns):
        data = [ranks.loc[scores[group].astype(str) == g, col].dropna().to_numpy() for g in groups]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(groups) + 1), [g[:14] for g in groups], rotation=45, ha="right", fontsize=7)
        ax.set_title(col, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("percentile rank")
    fig.tight_layout()
    return figure_to_data_uri(fig)


def histogram_figure(scores: pd.DataFrame, columns: list[str]) -> str:
    plt = pyplot()
    ncols = min(4, len(columns))
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    wrong = scores["true_preference_correct"].eq(False) if "true_preference_correct" in scores else None
    for ax, col in zip(axes.flat, columns):
        values = scores[col].astype(float)
        if wrong is not None and wrong.any():
            ax.hist([values[~wrong].dropna(), values[wrong].dropna()], bins=20, stacked=True,
                    color=["#2b6cb0", "#c53030"], label=["label right", "mislabeled"])
        else:
            ax.hist(values.dropna(), bins=20, color="#2b6cb0")
        ax.set_title(col, fontsize=9)
        ax.tick_params(labelsize=7)
    if wrong is not None and wrong.any():
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return figure_to_data_uri(fig)


def _pair_rows(frame: pd.DataFrame, score: str, columns: list[str]) -> list[dict[str, Any]]:
    """The pairs with their text and, beside ``score``, the first few other shown scores."""
    others = [c for c in (*columns, *CONTEXT_COLUMNS) if c != score][:4]
    rows = []
    for _, r in frame.iterrows():
        rows.append({"pair_id": r["pair_id"], "score": float(r[score]), "source": r.get("source", ""),
                     "prompt": str(r.get("prompt_text", ""))[:600], "chosen": str(r.get("chosen", ""))[:600],
                     "rejected": str(r.get("rejected", ""))[:600],
                     "truth": None if "true_preference_correct" not in r else
                     ("label right" if bool(r["true_preference_correct"]) else "mislabeled"),
                     "others": {c: float(r[c]) for c in others if c in r}})
    return rows


def audit_context(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    scores = pd.read_parquet(directory / ATTRIBUTION)
    manifest = artifacts.read_manifest(directory) if (directory / artifacts.MANIFEST).exists() else {}
    config = manifest.get("config", {})
    harmful_score = config.get("harmful_score", "tracin_cosine")
    top_k = int(config.get("top_k", 15))
    columns = shown_scores(scores)
    figures = {"histograms": histogram_figure(scores, columns), "cartography": cartography_figure(scores),
               "by_source": distribution_figure(scores, "source", columns[:4])}
    if "would_drop" in scores and scores["would_drop"].ne("").any():
        by_filter = scores.assign(filter=scores["would_drop"].replace("", "(kept by every filter)")
                                  .str.split(";").str[0])
        figures["by_filter"] = distribution_figure(by_filter, "filter", columns[:4])
    corr = scores[columns].corr(method="spearman").round(3)
    regions = scores["region"].value_counts().to_dict() if "region" in scores else {}
    validation = _validation(directory)
    return {
        "title": "pairlab audit report", "version": __version__, "dir": str(directory),
        "created": manifest.get("created"), "n_pairs": len(scores), "harmful_score": harmful_score,
        "inputs": manifest.get("inputs", {}), "throughput": manifest.get("throughput", {}),
        "checkpoints": manifest.get("checkpoints", []), "regions": regions,
        "helpful": _pair_rows(scores.nlargest(top_k, harmful_score), harmful_score, columns),
        "harmful": _pair_rows(scores.nsmallest(top_k, harmful_score), harmful_score, columns),
        "score_help": [{"name": c, "help": ATTRIBUTION_SCORES[c].help, "kind": ATTRIBUTION_SCORES[c].kind}
                       for c in columns],
        "figures": {k: v for k, v in figures.items() if v},
        "correlation": {"columns": columns, "rows": [[c, [corr.loc[c, d] for d in columns]] for c in columns]},
        "validation": validation,
    }


def render_audit(directory: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``audit.html`` (default ``DIR/audit.html``) and return its path."""
    directory = Path(directory)
    return write_report(Path(out) if out else directory / HTML, "audit.html", **audit_context(directory))


def audit_summary(directory: str | os.PathLike, **options: Any) -> dict[str, Any]:
    context = audit_context(directory)
    return {"kind": "audit", "dir": context["dir"], "n_pairs": context["n_pairs"],
            "harmful_score": context["harmful_score"], "regions": context["regions"],
            "harmful": [r["pair_id"] for r in context["harmful"]],
            "helpful": [r["pair_id"] for r in context["helpful"]],
            "throughput": context["throughput"], "validation": context["validation"]}

