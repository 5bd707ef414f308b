"""The eval report: is the aligned model better at ranking held-out pairs, and how?

Reads ``EVAL_DIR/{per_pair.parquet, metrics.json, generations.parquet, manifest.json}``
(and the training run named by ``metrics.json["run"]`` when its directory exists) and
writes one self-contained page: a plain-language verdict over headline metrics with
CIs, training curves, chosen vs rejected reward histograms and the margin
distribution, a calibration plot, per-source / rating-gap / length-bias tables, the
best and worst pairs by margin with their text, base | aligned generations side by
side, the pair explorer, and the config and manifests.

Numbers come from ``metrics.json`` (what `pairlab evaluate` computed); the per-pair
table is used for what is drawn or listed pair by pair, and for the reference-free
comparison with the reference model (its log-probs are in every row).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__, artifacts
from ..dirs import EvalDir
from .explorer import EXPLORER_JS, explorer_data, explorer_texts
from .kinds import ReportError
from .render import figure_to_data_uri, json_safe, pyplot, script_json, write_report
from .run_report import RunInputs, load_run, training_context

PER_PAIR = EvalDir.PER_PAIR
METRICS = EvalDir.METRICS
GENERATIONS = EvalDir.GENERATIONS
#: Pairs listed at each end of the margin ranking.
EXTREMES = 5
#: Prompts shown side by side (all of them are in report.json).
GENERATION_PROMPTS = 12
_CHOSEN, _REJECTED = "#2b6cb0", "#dd6b20"


@dataclass
class EvalInputs:
    dir: Path
    per_pair: pd.DataFrame
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    generations: pd.DataFrame | None
    run: RunInputs | None


def _resolve_run(eval_dir: Path, run: Any) -> Path | None:
    """metrics.json's "run" as an existing directory (absolute, cwd- or eval-relative), else None."""
    if not run:
        return None
    path = Path(str(run))
    for candidate in ([path] if path.is_absolute() else [path, eval_dir / path, eval_dir.parent / path]):
        if candidate.is_dir():
            return candidate
    return None


def load_eval(eval_dir: str | os.PathLike) -> EvalInputs:
    eval_dir = Path(eval_dir)
    for name in (PER_PAIR, METRICS):
        if not (eval_dir / name).exists():
            raise ReportError(f"{name} not found; an eval directory from `pairlab evaluate` has "
                              f"{PER_PAIR} and {METRICS}", file=str(eval_dir))
    per_pair = pd.read_parquet(eval_dir / PER_PAIR)
    missing = [c for c in ("pair_id", "margin", "correct") if c not in per_pair]
    if missing:
        raise ReportError(f"columns {missing} missing", file=str(eval_dir / PER_PAIR),
                          hint="rerun `pairlab evaluate` to rewrite it")
    metrics = artifacts.read_json(eval_dir / METRICS)
    manifest = artifacts.read_manifest(eval_dir) if (eval_dir / artifacts.MANIFEST).exists() else {}
    generations = pd.read_parquet(eval_dir / GENERATIONS) if (eval_dir / GENERATIONS).exists() else None
    run_dir = _resolve_run(eval_dir, metrics.get("run"))
    return EvalInputs(eval_dir, per_pair, metrics, manifest, generations,
                      load_run(run_dir) if run_dir is not None else None)


# ---------------------------------------------------------------- comparisons and the verdict

def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def reference_free_comparison(per_pair: pd.DataFrame, n_boot: int = 2000) -> dict[str, Any] | None:
    """Does the aligned model alone rank chosen above rejected more often than the reference did?

    Both accuracies use summed log-probs of the same pairs (log pi(chosen) > log pi(rejected)),
    so the difference is paired: :func:`pairlab.stats.paired_comparison` (bootstrap CI,
    McNemar's exact test, minimum detectable effect).
    """
    needed = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    if not all(c in per_pair for c in needed) or per_pair.empty:
        return None
    reference = (per_pair["ref_chosen_logps"] > per_pair["ref_rejected_logps"]).to_numpy(bool)
    aligned = (per_pair["policy_chosen_logps"] > per_pair["policy_rejected_logps"]).to_numpy(bool)
    c = _paired(reference, aligned, n_boot)
    return {"reference": c["accuracy_baseline"], "aligned": c["accuracy_other"], **_paired_fields(c)}


def baseline_comparison(per_pair: pd.DataFrame, baseline: pd.DataFrame, n_boot: int = 2000) -> dict[str, Any]:
    """Accuracy of this eval vs a baseline eval on the pairs they share (paired by pair_id)."""
    joined = per_pair[["pair_id", "correct"]].merge(baseline[["pair_id", "correct"]], on="pair_id",
                                                    suffixes=("", "_baseline"))
    if joined.empty:
        raise ReportError("the baseline eval shares no pair_id with this one",
                          hint="compare evaluations of the same eval split")
    c = _paired(joined["correct_baseline"].to_numpy(bool), joined["correct"].to_numpy(bool), n_boot)
    return {"n_shared": int(len(joined)), "baseline_all_ties": bool((baseline["margin"] == 0).all()),
            "baseline_accuracy": c["accuracy_baseline"], "accuracy": c["accuracy_other"], **_paired_fields(c)}


def _paired(baseline: np.ndarray, other: np.ndarray, n_boot: int) -> dict[str, Any]:
    from ..stats import paired_comparison

    return paired_comparison(baseline, other, n_boot=n_boot)


def _paired_fields(c: dict[str, Any]) -> dict[str, Any]:
    """The shared comparison under the report's names (difference = other - baseline)."""
    return {"difference": c["delta"], "difference_ci95": c["delta_ci95"], "mcnemar_p": c["p_value"],
            "mde": c["mde"], "n_pairs": c["n_pairs"], "n_discordant": c["n_discordant"]}


def _change(what: str, before: str, after: str, diff: float, ci: list[float], extra: str = "",
            p: float | None = None, mde: float | None = None, n: int | None = None) -> str:
    """'DPO raised WHAT from A to B (+d points, 95% CI ...)', or 'did not significantly change'.

    Significant means McNemar's p < 0.05 when a p is given (else the CI excludes 0); a
    non-significant change says what the design could have detected (its MDE).
    """
    from ..stats import ALPHA

    lo, hi = ci
    stats = f"{_pts(diff)} points, 95% CI {_pts(lo)} to {_pts(hi)}" + (f"; {extra}" if extra else "")
    significant = p < ALPHA if p is not None else (lo > 0 or hi < 0)
    if significant:
        return f"DPO {'raised' if diff > 0 else 'lowered'} {what} from {before} to {after} ({stats})"
    if n is not None:
        stats += (f"; with {n:,} pairs this design detects only differences ≥ {100 * mde:.0f} points"
                  if mde is not None else f"; with {n:,} pairs this design cannot detect a difference")
    return f"DPO did not significantly change {what}: {before}, then {after} ({stats})"


def is_untrained(metrics: dict[str, Any]) -> bool:
    """Policy == reference: every margin is exactly 0 (accuracy is 0 by the tie rule)."""
    n = int(metrics.get("n_pairs", 0))
    return bool(metrics.get("policy_is_reference")) or (n > 0 and int(metrics.get("ties", 0)) == n)


def verdict(metrics: dict[str, Any], reference_free: dict[str, Any] | None = None,
            baseline: dict[str, Any] | None = None) -> str:
    """One plain-language sentence on the headline result."""
    n = int(metrics.get("n_pairs", 0))
    if n == 0:
        return "No pairs were evaluated."
    acc = float(metrics["accuracy"])
    lo, hi = metrics.get("accuracy_ci95") or [float("nan"), float("nan")]
    if baseline is not None:
        change = _change("held-out preference accuracy", _pct(baseline["baseline_accuracy"]),
                         _pct(baseline["accuracy"]), baseline["difference"], baseline["difference_ci95"],
                         f"McNemar p = {baseline['mcnemar_p']:.2g}", p=baseline.get("mcnemar_p"),
                         mde=baseline.get("mde"), n=baseline.get("n_pairs"))
        why = (" (the baseline is an untrained model: all its margins are 0, so its accuracy is 0 by "
               "the tie rule)" if baseline.get("baseline_all_ties") else "")
        return f"{change} on {baseline['n_shared']:,} shared pairs{why}."
    if is_untrained(metrics):
        rf_ci = metrics.get("ref_free_accuracy_ci95")
        ci = f", 95% CI {_pct(rf_ci[0])} to {_pct(rf_ci[1])}" if rf_ci else ""
        return ("This is the untrained reference model: the policy equals the reference, so every "
                "implicit-reward margin is 0 and DPO preference accuracy is 0 by definition (ties count "
                "as wrong). Reference-free accuracy, how often the model alone gives the chosen response "
                f"more probability, is {_pct(metrics.get('ref_free_accuracy'))}{ci} "
                f"({_pct(metrics.get('ref_free_accuracy_norm'))} per token) on {n:,} pairs.")
    if reference_free is not None:
        change = _change("held-out reference-free preference accuracy",
                         f"{_pct(reference_free['reference'])} (reference model)",
                         _pct(reference_free["aligned"]), reference_free["difference"],
                         reference_free["difference_ci95"],
                         f"McNemar p = {reference_free['mcnemar_p']:.2g}" if "mcnemar_p" in reference_free else "",
                         p=reference_free.get("mcnemar_p"), mde=reference_free.get("mde"),
                         n=reference_free.get("n_pairs"))
        return (f"{change}; implicit-reward accuracy is {_pct(acc)} (95% CI {_pct(lo)} to {_pct(hi)}) "
                f"on {n:,} pairs.")
    where = ("better than chance: the aligned model's implicit reward ranks the chosen response higher "
             "on most held-out pairs" if lo > 0.5 else
             "worse than chance: the implicit reward prefers the rejected response more often" if hi < 0.5 else
             "not distinguishable from chance (50%)")
    return f"Held-out preference accuracy is {_pct(acc)} (95% CI {_pct(lo)} to {_pct(hi)}) on {n:,} pairs, {where}."


def headline(metrics: dict[str, Any], reference_free: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The metric cards: label, value, detail line."""
    if is_untrained(metrics):
        reference_free = None  # the policy is the reference: nothing to compare
    cards = [
        {"label": "preference accuracy", "value": _pct(metrics.get("accuracy")),
         "detail": "95% CI {} – {}".format(*map(_pct, metrics.get("accuracy_ci95") or [None, None]))},
        {"label": "reference-free accuracy", "value": _pct(metrics.get("ref_free_accuracy")),
         "detail": (f"reference model {_pct(reference_free['reference'])}" if reference_free else
                    f"per token {_pct(metrics.get('ref_free_accuracy_norm'))}")},
        {"label": "mean margin", "value": f"{metrics.get('mean_margin', float('nan')):.3g}",
         "detail": f"median {metrics.get('median_margin', float('nan')):.3g}; "
                   f"/β {metrics.get('mean_margin_over_beta', float('nan')):.3g}"},
        {"label": "pairs", "value": f"{int(metrics.get('n_pairs', 0)):,}",
         "detail": f"{int(metrics.get('ties', 0)):,} ties (margin 0)"},
    ]
    truncation = metrics.get("truncation")
    if truncation:
        cards.append({"label": "truncated pairs", "value": f"{truncation['truncated']:,}",
                      "detail": f"of {truncation['pairs']:,} at max_length {truncation['max_length']}; "
                                f"{truncation['excluded']:,} excluded (no completion token left)"})
    cal = metrics.get("calibration") or {}
    if cal:
        auroc = cal.get("auroc")
        cards.append({"label": "calibration ECE", "value": f"{cal.get('ece', float('nan')):.3f}",
                      "detail": f"Brier {cal.get('brier', float('nan')):.3f}; AUROC "
                                + ("n/a" if auroc is None else f"{auroc:.3f}")})
    if metrics.get("true_accuracy") is not None:
        noise = f"label noise {_pct(metrics.get('label_noise_rate'))}"
        cards.append({"label": "true-preference accuracy", "value": _pct(metrics["true_accuracy"]),
                      "detail": f"0 by the tie rule; {noise}" if is_untrained(metrics) else noise})
    return cards


# ---------------------------------------------------------------- figures

def rewards_figure(per_pair: pd.DataFrame):
    """Chosen vs rejected implicit rewards, and the margin distribution."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.0))
    chosen = per_pair["chosen_reward"].to_numpy(float) if "chosen_reward" in per_pair else np.array([])
    rejected = per_pair["rejected_reward"].to_numpy(float) if "rejected_reward" in per_pair else np.array([])
    both = np.concatenate([chosen, rejected])
    both = both[np.isfinite(both)]
    if len(both) and np.ptp(both) > 0:
        bins = np.histogram_bin_edges(both, bins=40)
        left.hist(chosen, bins=bins, color=_CHOSEN, alpha=0.65, label="chosen")
        left.hist(rejected, bins=bins, color=_REJECTED, alpha=0.55, label="rejected")
        left.legend(fontsize=7, frameon=False)
    else:
        left.text(0.5, 0.5, "all rewards are 0\n(policy = reference)", ha="center", va="center",
                  transform=left.transAxes, fontsize=9)
    left.set_title("implicit reward β·(log π − log π_ref)", fontsize=9)
    left.set_ylabel("pairs", fontsize=8)
    margin = per_pair["margin"].to_numpy(float)
    margin = margin[np.isfinite(margin)]  # evaluate writes scored pairs only; stay safe on older dirs
    if len(margin) and np.ptp(margin) > 0:
        right.hist(margin, bins=40, color="#4a5568")
        right.axvline(float(np.mean(margin)), color=_CHOSEN, lw=1.2, label=f"mean {np.mean(margin):.3g}")
        right.legend(fontsize=7, frameon=False)
    else:
        right.text(0.5, 0.5, "all margins are 0", ha="center", va="center", transform=right.transAxes, fontsize=9)
    right.axvline(0.0, color="#444", lw=0.8, ls="--")
    right.set_title("margin = chosen − rejected reward (right of 0: correct)", fontsize=9)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def calibration_figure(calibration: dict[str, Any]):
    """Reliability diagram of sigmoid(margin) with the share of pairs per bin underneath."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.2, 4.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    bins = [b for b in calibration.get("reliability", []) if b.get("n")]
    top.plot([0, 1], [0, 1], color="#aaa", lw=0.8, ls="--", label="perfectly calibrated")
    if bins:
        conf = [b["mean_confidence"] for b in bins]
        frac = [b["fraction_positive"] for b in bins]
        top.plot(conf, frac, marker="o", color=_CHOSEN, lw=1.3, ms=4, label="model")
        all_bins = calibration.get("reliability", [])
        centers = [(b["bin_lo"] + b["bin_hi"]) / 2 for b in all_bins]
        width = (all_bins[0]["bin_hi"] - all_bins[0]["bin_lo"]) * 0.9 if all_bins else 0.1
        bottom.bar(centers, [b["n"] for b in all_bins], width=width, color="#9aa5b1")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("observed frequency", fontsize=8)
    labels = calibration.get("labels", "symmetrized")
    top.set_title(f"calibration of σ(margin) ({labels} labels)", fontsize=9)
    top.legend(fontsize=7, frameon=False, loc="upper left")
    bottom.set_xlabel("predicted probability chosen is preferred", fontsize=8)
    bottom.set_ylabel("count", fontsize=8)
    for ax in (top, bottom):
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- pairs and generations

def _pair_record(row: pd.Series, rank_by: str) -> dict[str, Any]:
    def get(key: str) -> Any:
        value = row.get(key)
        return None if value is None or (isinstance(value, float) and not np.isfinite(value)) else value

    return {"pair_id": str(row["pair_id"]), "source": get("source"), "rating_gap": get("rating_gap"),
            "margin": get("margin"), "rank_value": get(rank_by), "chosen_reward": get("chosen_reward"),
            "rejected_reward": get("rejected_reward"), "chosen_tokens": get("chosen_tokens"),
            "rejected_tokens": get("rejected_tokens"), "prompt": get("prompt_text") or "",
            "chosen": get("chosen") or "", "rejected": get("rejected") or ""}


def extremes(per_pair: pd.DataFrame, k: int = EXTREMES) -> dict[str, Any]:
    """The k pairs with the largest and the smallest margin.

    When every margin is 0 (an untrained model) the ranking would be arbitrary, so the
    reference-free margin (log pi(chosen) - log pi(rejected)) ranks them instead.
    """
    rank_by = "margin"
    if (per_pair["margin"].fillna(0) == 0).all() and "ref_free_margin" in per_pair:
        rank_by = "ref_free_margin"
    ranked = per_pair.sort_values(rank_by, ascending=False, kind="stable")
    k = min(k, len(ranked) // 2) if len(ranked) > 1 else len(ranked)
    return {"rank_by": rank_by,
            "best": [_pair_record(r, rank_by) for _, r in ranked.head(k).iterrows()],
            "worst": [_pair_record(r, rank_by) for _, r in ranked.tail(k).iloc[::-1].iterrows()]}


def generations_context(generations: pd.DataFrame | None, limit: int = GENERATION_PROMPTS) -> dict[str, Any] | None:
    """Base | aligned text per prompt (greedy where present), and mean length / reward per model."""
    if generations is None or generations.empty:
        return None
    gens = generations.copy()
    for col, default in (("mode", "greedy"), ("seed", 0)):
        if col not in gens:
            gens[col] = default
    summary = []
    for (model, mode), g in gens.groupby(["model", "mode"], sort=True, dropna=False):
        summary.append({"model": model, "mode": mode, "n": int(len(g)),
                        "mean_tokens": float(g["n_tokens"].mean()) if "n_tokens" in g else None,
                        "mean_reward": float(g["implicit_reward"].mean())
                        if "implicit_reward" in g and g["implicit_reward"].notna().any() else None})
    mode = "greedy" if (gens["mode"] == "greedy").any() else str(gens["mode"].iloc[0])
    shown = gens[gens["mode"] == mode]
    if shown["seed"].notna().any():  # sampled: the first seed; greedy rows have no seed
        shown = shown[shown["seed"] == shown["seed"].min()]
    prompts = []
    for prompt_id, g in shown.groupby("prompt_id", sort=False):
        by_model = {m: json_safe(r) for m, r in zip(g["model"], g.to_dict(orient="records"))}
        prompts.append({"prompt_id": str(prompt_id), "prompt": str(g["prompt_text"].iloc[0]),
                        "base": by_model.get("base"), "aligned": by_model.get("aligned")})
    return {"mode": mode, "summary": summary, "prompts": prompts[:limit], "n_prompts": len(prompts)}


def length_bias(metrics: dict[str, Any], per_pair: pd.DataFrame) -> dict[str, Any] | None:
    """Accuracy when chosen is longer vs not, in words."""
    rows = {r["group"]: r for r in metrics.get("by_chosen_longer", [])}
    longer, shorter = rows.get("chosen longer"), rows.get("chosen not longer")
    share = float(per_pair["chosen_longer"].mean()) if "chosen_longer" in per_pair else None
    if not longer or not shorter:
        return {"share_chosen_longer": share, "gap": None, "sentence": None}
    gap = longer["accuracy"] - shorter["accuracy"]
    sentence = (f"Chosen is the longer response in {_pct(share)} of pairs. Accuracy is "
                f"{_pct(longer['accuracy'])} when it is and {_pct(shorter['accuracy'])} when it is not "
                f"({_pts(gap)} points); a large positive gap means the reward leans on length.")
    return {"share_chosen_longer": share, "gap": gap, "sentence": sentence}


def truncation_context(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """metrics.json's truncation counts, with the sentence the report shows."""
    t = metrics.get("truncation")
    if not t:
        return None
    kinds = t.get("by_kind", {})
    kept = "first" if t["truncation_mode"] == "keep_start" else "last"
    sentence = (f"At max_length {t['max_length']} ({t['truncation_mode']}: the {kept} max_length tokens of "
                f"prompt + response are kept, as in training), {t['truncated']:,} of {t['pairs']:,} pairs were "
                f"truncated ({kinds.get('completion', 0):,} lost the end of a response, "
                f"{kinds.get('both', 0) + kinds.get('prompt', 0):,} lost part of the prompt). "
                f"{t['excluded']:,} had no response token left and are excluded from every number "
                f"in this report; {t['scored']:,} pairs were scored.")
    return {**t, "sentence": sentence}


# ---------------------------------------------------------------- context, summary, render

def _comparisons(inputs: EvalInputs, baseline_dir: str | os.PathLike | None):
    reference_free = reference_free_comparison(inputs.per_pair)
    baseline = None
    if baseline_dir is not None:
        baseline = baseline_comparison(inputs.per_pair, load_eval(baseline_dir).per_pair)
        baseline["dir"] = str(baseline_dir)
    return reference_free, baseline


def eval_summary(eval_dir: str | os.PathLike, baseline: str | os.PathLike | None = None) -> dict[str, Any]:
    """Machine-readable summary (``pairlab report EVAL_DIR --format json``)."""
    from .run_report import run_summary

    inputs = load_eval(eval_dir)
    reference_free, base = _comparisons(inputs, baseline)
    ext = extremes(inputs.per_pair)
    gens = generations_context(inputs.generations, limit=10**9)
    return {
        "kind": "eval", "dir": str(inputs.dir), "model": inputs.metrics.get("model"),
        "verdict": verdict(inputs.metrics, reference_free, base),
        "headline": {c["label"]: {"value": c["value"], "detail": c["detail"]}
                     for c in headline(inputs.metrics, reference_free)},
        "reference_free": reference_free, "baseline": base,
        "length_bias": length_bias(inputs.metrics, inputs.per_pair),
        "truncation": truncation_context(inputs.metrics),
        "best_pairs": [p["pair_id"] for p in ext["best"]],
        "worst_pairs": [p["pair_id"] for p in ext["worst"]], "ranked_by": ext["rank_by"],
        "generations": None if gens is None else {"mode": gens["mode"], "summary": gens["summary"],
                                                  "n_prompts": gens["n_prompts"]},
        "training": None if inputs.run is None else run_summary(inputs.run.dir),
        "metrics": inputs.metrics, "manifest": inputs.manifest,
    }


def render_eval_report(eval_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                       baseline: str | os.PathLike | None = None) -> Path:
    inputs = load_eval(eval_dir)
    out = Path(out) if out is not None else inputs.dir / EvalDir.REPORT
    reference_free, base = _comparisons(inputs, baseline)
    metrics, per_pair = inputs.metrics, inputs.per_pair
    tables = {key: metrics.get(key) or [] for key in ("by_source", "by_rating_gap", "by_chosen_longer")}
    context = {
        "version": __version__,
        "title": f"pairlab eval report: {inputs.dir.name}",
        "dir": str(inputs.dir), "model": metrics.get("model"), "run_dir": metrics.get("run"),
        "created": inputs.manifest.get("created"),
        "verdict": verdict(metrics, reference_free, base),
        "cards": headline(metrics, reference_free),
        "reference_free": None if is_untrained(metrics) else reference_free, "baseline": base,
        "metrics": metrics,
        "training": None if inputs.run is None else training_context(inputs.run),
        "rewards_figure": figure_to_data_uri(rewards_figure(per_pair)),
        "calibration": metrics.get("calibration") or {},
        "calibration_figure": (figure_to_data_uri(calibration_figure(metrics["calibration"]))
                               if metrics.get("calibration") else None),
        "tables": tables, "spearman": metrics.get("spearman_margin_rating_gap"),
        "length_bias": length_bias(metrics, per_pair),
        "truncation": truncation_context(metrics),
        "extremes": extremes(per_pair),
        "generations": generations_context(inputs.generations),
        "explorer_json": script_json(explorer_data(per_pair)),
        "explorer_texts": explorer_texts(per_pair),
        "explorer_js": EXPLORER_JS, "n_pairs": int(len(per_pair)),
        "manifest": artifacts.to_json(inputs.manifest) if inputs.manifest else None,
        "timing": artifacts.to_json(metrics["timing"]) if metrics.get("timing") else None,
        "eval_settings": artifacts.to_json(metrics["eval"]) if metrics.get("eval") else None,
    }
    return write_report(out, "eval.html", scripts=(EXPLORER_JS,), **context)
