"""Held-out preference metrics: pure functions of per-pair log-probs.

The DPO implicit reward of a completion y is r(y) = beta * (log pi(y|x) - log pi_ref(y|x)),
with log-probs summed over the completion's tokens. A pair is *correct* when
r(chosen) > r(rejected) strictly; exact ties (margin == 0, e.g. before training, when
the policy equals the reference) are counted separately and never as correct, the
same rule as TRL's ``rewards/accuracies``. Accuracy here is the mean over pairs (not
TRL's mean of batch means).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.metrics import brier_score_loss, roc_auc_score

from ..preference import implicit_reward, rating_gap
from .stats import bootstrap_ci

#: Rating-gap buckets for the accuracy-by-difficulty table (edges on the source's scale).
GAP_BUCKETS = [(-np.inf, 0.0), (0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, np.inf)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def per_pair_table(pairs: pd.DataFrame, policy: pd.DataFrame, reference: pd.DataFrame,
                   beta: float) -> pd.DataFrame:
    """Join pairs with policy and reference log-probs and derive every per-pair quantity.

    ``policy`` and ``reference`` have ``pair_id, chosen_logps, rejected_logps,
    chosen_tokens, rejected_tokens`` (summed log-probs over completion tokens).
    """
    pol = policy.set_index("pair_id")
    ref = reference.set_index("pair_id")[["chosen_logps", "rejected_logps"]]
    out = pd.DataFrame({"pair_id": pairs["pair_id"].to_numpy()})
    ids = out["pair_id"]
    missing = set(ids) - set(pol.index) | set(ids) - set(ref.index)
    if missing:
        raise KeyError(f"log-probs missing for {len(missing)} pairs, e.g. {sorted(missing)[:3]}")
    for side in ("chosen", "rejected"):
        out[f"policy_{side}_logps"] = pol.loc[ids, f"{side}_logps"].to_numpy(float)
        out[f"ref_{side}_logps"] = ref.loc[ids, f"{side}_logps"].to_numpy(float)
        out[f"{side}_tokens"] = pol.loc[ids, f"{side}_tokens"].to_numpy(int)
        out[f"policy_{side}_logps_mean"] = out[f"policy_{side}_logps"] / out[f"{side}_tokens"].clip(lower=1)
        out[f"ref_{side}_logps_mean"] = out[f"ref_{side}_logps"] / out[f"{side}_tokens"].clip(lower=1)
        out[f"{side}_reward"] = implicit_reward(out[f"policy_{side}_logps"], out[f"ref_{side}_logps"], beta)
    out["margin"] = out["chosen_reward"] - out["rejected_reward"]
    out["correct"] = out["margin"] > 0
    out["tie"] = out["margin"] == 0
    # Reference-free: does the policy alone give chosen more probability?
    out["ref_free_margin"] = out["policy_chosen_logps"] - out["policy_rejected_logps"]
    out["ref_free_correct"] = out["ref_free_margin"] > 0
    out["ref_free_margin_norm"] = out["policy_chosen_logps_mean"] - out["policy_rejected_logps_mean"]
    out["ref_free_correct_norm"] = out["ref_free_margin_norm"] > 0
    out["chosen_longer"] = out["chosen_tokens"] > out["rejected_tokens"]
    for col in ("source", "score_chosen", "score_rejected", "true_preference_correct"):
        if col in pairs:
            out[col] = pairs[col].to_numpy()
    if "score_chosen" in out:
        out["rating_gap"] = rating_gap(out).to_numpy()
    return out


def accuracy_by(per_pair: pd.DataFrame, key: pd.Series | str) -> list[dict[str, Any]]:
    """Accuracy, count and mean margin per group."""
    groups = per_pair.groupby(key, observed=True, dropna=False)
    table = groups.agg(n=("correct", "size"), accuracy=("correct", "mean"),
                       mean_margin=("margin", "mean"))
    table.index = table.index.astype(str)
    return [{"group": g, **{k: (float(v) if k != "n" else int(v)) for k, v in row.items()}}
            for g, row in table.iterrows()]


def gap_bucket(gap: pd.Series) -> pd.Series:
    labels = [f"[{lo:g}, {hi:g})" for lo, hi in GAP_BUCKETS]
    edges = [GAP_BUCKETS[0][0]] + [hi for _, hi in GAP_BUCKETS]
    return pd.cut(gap, bins=edges, labels=labels, right=False)


def calibration(margin: np.ndarray, n_bins: int = 10, labels: np.ndarray | None = None) -> dict[str, Any]:
    """Calibration of p = sigmoid(margin) as the probability that chosen is preferred.

    With no ground truth every pair's label says "chosen is preferred", so each pair is
    scored twice, symmetrically: (p, 1) and (1 - p, 0). AUROC then measures how well
    the margin separates preferred from dispreferred orderings. When ``labels`` (true
    preference, e.g. the simulator's ``true_preference_correct``) are given, they are
    used directly.
    """
    margin = np.asarray(margin, dtype=float)
    finite = np.isfinite(margin)  # a NaN margin (no completion token scored) is no evidence
    p = sigmoid(margin[finite])
    if labels is None:
        probs = np.concatenate([p, 1.0 - p])
        y = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    else:
        probs, y = p, np.asarray(labels, dtype=float)[finite]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    conf = np.bincount(idx, weights=probs, minlength=n_bins)
    hits = np.bincount(idx, weights=y, minlength=n_bins)
    nonzero = counts > 0
    mean_conf = np.where(nonzero, conf / np.maximum(counts, 1), np.nan)
    frac_pos = np.where(nonzero, hits / np.maximum(counts, 1), np.nan)
    if not len(probs):
        return {"ece": None, "brier": None, "auroc": None, "reliability": [],
                "labels": "symmetrized" if labels is None else "true_preference"}
    ece = float(np.nansum(counts / counts.sum() * np.abs(frac_pos - mean_conf)))
    auroc = float(roc_auc_score(y, probs)) if len(np.unique(y)) == 2 else None
    return {
        "ece": ece,
        "brier": float(brier_score_loss(y, probs)),
        "auroc": auroc,
        "reliability": [{"bin_lo": float(edges[i]), "bin_hi": float(edges[i + 1]), "n": int(counts[i]),
                         "mean_confidence": None if not nonzero[i] else float(mean_conf[i]),
                         "fraction_positive": None if not nonzero[i] else float(frac_pos[i])}
                        for i in range(n_bins)],
        "labels": "symmetrized" if labels is None else "true_preference",
    }


def _finite(value: Any) -> float | None:
    """A float for metrics.json, or None where it is undefined (no pairs, NaN, inf)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _ci(values: np.ndarray, n_boot: int, seed: int) -> list[float | None]:
    if len(values) == 0:
        return [None, None]
    return [_finite(v) for v in bootstrap_ci(values, n_boot=n_boot, seed=seed)]


def scored_pairs(per_pair: pd.DataFrame) -> pd.DataFrame:
    """The pairs a statistic may use: scorable (a completion token left after truncation)
    with finite log-probs on both sides, policy and reference."""
    keep = per_pair["scorable"].to_numpy(bool).copy() if "scorable" in per_pair else np.ones(len(per_pair), bool)
    for col in ("margin", "ref_free_margin", "ref_free_margin_norm"):
        if col in per_pair:
            keep &= np.isfinite(per_pair[col].to_numpy(float))
    return per_pair.loc[keep]


def summarize(per_pair: pd.DataFrame, beta: float, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Aggregate metrics over a per-pair table (the content of ``metrics.json``).

    Only :func:`scored_pairs` enter any statistic; ``n_pairs`` counts them and
    ``n_excluded`` the others, so no NaN reaches a number. A statistic with nothing to
    compute from is None.
    """
    n_in = int(len(per_pair))
    per_pair = scored_pairs(per_pair)
    correct = per_pair["correct"].to_numpy(bool)
    margin = per_pair["margin"].to_numpy(float)
    n = len(per_pair)

    def mean(values) -> float | None:
        return _finite(np.mean(values)) if len(values) else None

    out: dict[str, Any] = {
        "n_pairs": int(n),
        "n_excluded": n_in - int(n),
        "beta": beta,
        "accuracy": mean(correct),
        "accuracy_ci95": _ci(correct.astype(float), n_boot, seed),
        "ties": int(per_pair["tie"].sum()),
        "mean_margin": mean(margin),
        "median_margin": _finite(np.median(margin)) if n else None,
        "mean_margin_over_beta": None if not n else _finite(margin.mean() / beta),
        "mean_chosen_reward": mean(per_pair["chosen_reward"]),
        "mean_rejected_reward": mean(per_pair["rejected_reward"]),
        "accuracy_excluding_ties": (float(correct[~per_pair["tie"].to_numpy(bool)].mean())
                                    if (~per_pair["tie"]).any() else None),
        "ref_free_accuracy": mean(per_pair["ref_free_correct"]),
        "ref_free_accuracy_ci95": _ci(per_pair["ref_free_correct"].to_numpy(float), n_boot, seed),
        "ref_free_accuracy_norm": mean(per_pair["ref_free_correct_norm"]),
        "by_chosen_longer": accuracy_by(per_pair, per_pair["chosen_longer"].map(
            {True: "chosen longer", False: "chosen not longer"})),
        "calibration": calibration(margin) if n else None,
    }
    if "source" in per_pair:
        out["by_source"] = accuracy_by(per_pair, "source")
    if "rating_gap" in per_pair and per_pair["rating_gap"].notna().any():
        gap = per_pair["rating_gap"]
        out["by_rating_gap"] = accuracy_by(per_pair.loc[gap.notna()], gap_bucket(gap[gap.notna()]))
        ok = gap.notna().to_numpy()
        # Undefined when either side is constant (e.g. an untrained model: every margin 0).
        varies = ok.sum() > 2 and np.ptp(margin[ok]) > 0 and np.ptp(gap[ok]) > 0 and np.isfinite(gap[ok]).all()
        rho = sps.spearmanr(margin[ok], gap[ok]).statistic if varies else float("nan")
        out["spearman_margin_rating_gap"] = None if np.isnan(rho) else float(rho)
    if n and "true_preference_correct" in per_pair and per_pair["true_preference_correct"].notna().all():
        truth = per_pair["true_preference_correct"].astype(bool).to_numpy()
        # Accuracy against the true preference: flip the prediction where the label was wrong.
        out["true_accuracy"] = float(np.mean(np.where(truth, correct, margin < 0)))
        out["label_noise_rate"] = float(1.0 - truth.mean())
    return out


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """The one number to read first, and whether it beats chance (its 95% CI above 0.5).

    An untrained model evaluated as its own reference has every margin exactly 0: its
    implicit-reward accuracy is 0 by the tie rule and says nothing, so the headline is
    then the reference-free accuracy (does the model alone give chosen more probability).
    """
    all_ties = summary["n_pairs"] > 0 and summary["ties"] == summary["n_pairs"]
    if summary.get("policy_is_reference") or all_ties:
        name, ci = "ref_free_accuracy", summary["ref_free_accuracy_ci95"]
        why = ("policy equals reference, so every margin is 0 (all ties, none correct); "
               "read the reference-free accuracy")
    else:
        name, ci = "accuracy", summary["accuracy_ci95"]
        why = f"{summary['ties']} of {summary['n_pairs']} pairs tied (counted as not correct)"
    value = summary[name]
    above = None if any(v is None or np.isnan(v) for v in ci) else bool(ci[0] > 0.5)
    below = None if above is None else bool(ci[1] < 0.5)
    state = "above chance" if above else "below chance" if below else "not distinguishable from chance"
    if value is None or above is None:
        text = f"{name.replace('_', ' ')} undefined: no pair could be scored"
    else:
        text = f"{name.replace('_', ' ')} {value:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}): {state}; {why}"
    if summary.get("n_excluded"):
        text += f"; {summary['n_excluded']} pairs excluded (no completion token left after truncation)"
    return {"headline_metric": name, "headline_value": value, "ci95": ci, "all_ties": bool(all_ties),
            "above_chance": above, "text": text}
