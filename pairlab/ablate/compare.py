"""Gather every arm's curate/train/evaluate outputs into one comparison table.

Reads files only (curate manifest + pairs, run manifest, eval per_pair + metrics), so
it works the same after `pairlab ablate`, or after a scheduler ran the `--plan`
commands on other machines (`--report-only`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..dirs import AblationDir, CurateDir, EvalDir, RunDir
from ..stats import ALPHA, CORRECTION, POWER, paired_bootstrap, paired_comparison, verdict, with_holm
from .config import AblationConfig

COMPARISON = AblationDir.COMPARISON


def _read_eval(eval_dir: Path) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """(metrics, per_pair) of a complete evaluation; None when absent or unfinished (debris counts as missing)."""
    if not EvalDir.is_complete(eval_dir):
        return None
    return artifacts.read_json(eval_dir / EvalDir.METRICS), pd.read_parquet(eval_dir / EvalDir.PER_PAIR)


def _mean_sd(values: list[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    if not vals:
        return {"mean": None, "sd": None}
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}


def _by_longer(metrics: dict[str, Any]) -> dict[str, float]:
    return {row["group"]: row["accuracy"] for row in metrics.get("by_chosen_longer", [])}


def compare_arms(cfg: AblationConfig, layout, pool: pd.DataFrame) -> dict[str, Any]:
    """The comparison table: one entry per arm, its paired comparison with the baseline arm
    (seeds pooled, Holm-corrected across arms, with its MDE) and the verdict."""
    from .pipeline import arm_true_noise

    baseline = cfg.baseline_arm
    evals: dict[tuple[str, int], tuple[dict[str, Any], pd.DataFrame]] = {}
    for arm in cfg.arms:
        for seed in cfg.seeds:
            got = _read_eval(layout.arm_eval(arm.name, seed))
            if got is not None:
                evals[(arm.name, seed)] = got

    arms_out = []
    for arm in cfg.arms:
        curate_dir = layout.curate(arm.name)
        curated = CurateDir.is_complete(curate_dir)
        kept = pd.read_parquet(curate_dir / CurateDir.PAIRS) if curated else None
        cman = artifacts.read_manifest(curate_dir) if curated else {}
        seeds = []
        for seed in cfg.seeds:
            entry: dict[str, Any] = {"seed": seed, "status": "missing"}
            run_dir = layout.run(arm.name, seed)
            if RunDir.is_complete(run_dir):
                rman = artifacts.read_manifest(run_dir)
                entry.update(train_time_s=rman.get("wall_time_s"),
                             steps=rman.get("outputs", {}).get("global_step", rman.get("global_step")))
            if (arm.name, seed) in evals:
                m, pp = evals[(arm.name, seed)]
                entry.update(status="done", accuracy=m["accuracy"], accuracy_ci95=m["accuracy_ci95"],
                             mean_margin=m["mean_margin"], ref_free_accuracy=m["ref_free_accuracy"],
                             true_accuracy=m.get("true_accuracy"), ties=m["ties"],
                             by_chosen_longer=_by_longer(m),
                             eval_report=str(Path(AblationDir.ARMS) / arm.name / f"seed{seed}" / "eval" / EvalDir.REPORT),
                             by_source={r["group"]: r["accuracy"] for r in m.get("by_source", [])})
                base = evals.get((baseline, seed))
                if base is not None and arm.name != baseline:
                    bpp = base[1].set_index("pair_id").loc[pp["pair_id"]]
                    entry["delta_accuracy"] = m["accuracy"] - base[0]["accuracy"]
                    entry["margin_bootstrap"] = paired_bootstrap(bpp["margin"].to_numpy(float),
                                                                 pp["margin"].to_numpy(float), seed=seed)
            seeds.append(entry)
        done = [s for s in seeds if s["status"] == "done"]
        arms_out.append({
            "name": arm.name,
            "filters": arm.filters,
            "train_overrides": arm.train,
            "is_baseline": arm.name == baseline,
            "pairs_kept": None if kept is None else int(len(kept)),
            "pairs_dropped": cman.get("counts", {}).get("dropped"),
            "true_label_noise": None if kept is None else arm_true_noise(kept),
            "curation_report": str(Path(AblationDir.ARMS) / arm.name / "curate" / CurateDir.REPORT),
            "seeds": seeds,
            "accuracy": _mean_sd([s["accuracy"] for s in done]),
            "true_accuracy": _mean_sd([s.get("true_accuracy") for s in done]),
            "mean_margin": _mean_sd([s["mean_margin"] for s in done]),
            "ref_free_accuracy": _mean_sd([s["ref_free_accuracy"] for s in done]),
            "train_time_s": _mean_sd([s.get("train_time_s") for s in done]),
            "vs_baseline": None if arm.name == baseline else vs_baseline(evals, baseline, arm.name, cfg.seeds),
        })
    # Holm over every arm compared with the baseline: "significant" means corrected p < alpha.
    tested = [a for a in arms_out if a["vs_baseline"] is not None]
    for a, corrected in zip(tested, with_holm([a["vs_baseline"] for a in tested], alpha=ALPHA)):
        a["vs_baseline"] = corrected
    base_eval = _read_eval(layout.base_eval)
    return {
        "name": cfg.name,
        "baseline": baseline,
        "budget": {"unit": cfg.budget.unit, "value": cfg.budget.value},
        "seeds": cfg.seeds,
        "pool": {"rows": int(len(pool)), "true_label_noise": arm_true_noise(pool)},
        "eval": {"rows": None if not evals else int(len(next(iter(evals.values()))[1]))},
        "base_model": None if base_eval is None else {
            "accuracy": base_eval[0]["accuracy"], "ref_free_accuracy": base_eval[0]["ref_free_accuracy"],
            "ref_free_accuracy_norm": base_eval[0].get("ref_free_accuracy_norm"),
            "report": str(Path(AblationDir.BASE) / "eval" / EvalDir.REPORT)},
        "arms": arms_out,
        "statistics": {
            "alpha": ALPHA, "power": POWER, "correction": CORRECTION, "n_comparisons": len(tested),
            "test": "McNemar exact on held-out correctness, arm vs baseline on the same pairs; with several "
                    "seeds, pairs x seeds pooled in one stratified McNemar (each seed paired with the "
                    "baseline's same seed)",
            "ci": "percentile bootstrap over pairs (hierarchical over seeds and pairs with several seeds)",
            "mde": "smallest difference detectable with 80% power at alpha = 0.05 given n and the observed "
                   "discordance (Connor 1987)"},
        "verdict": arms_verdict(arms_out, baseline),
        "complete": all(s["status"] == "done" for a in arms_out for s in a["seeds"]),
    }


def vs_baseline(evals: dict[tuple[str, int], tuple[dict[str, Any], pd.DataFrame]], baseline: str, arm: str,
                seeds: list[int]) -> dict[str, Any] | None:
    """The arm against the baseline: one paired comparison over the seeds both have evaluated.

    One seed: McNemar on its pairs. Several: pairs x seeds pooled (rows = seeds, each the
    arm's seed S against the baseline's seed S on the same pairs, aligned by pair_id).
    """
    both = [s for s in seeds if (arm, s) in evals and (baseline, s) in evals]
    if not both:
        return None
    order = evals[(baseline, both[0])][1]["pair_id"]
    base = np.stack([evals[(baseline, s)][1].set_index("pair_id").loc[order, "correct"].to_numpy(bool)
                     for s in both])
    other = np.stack([evals[(arm, s)][1].set_index("pair_id").loc[order, "correct"].to_numpy(bool)
                      for s in both])
    if len(both) == 1:
        return {"seeds": both, **paired_comparison(base[0], other[0], seed=both[0])}
    return {"seeds": both, **paired_comparison(base, other, seeds=both, seed=both[0])}


def arms_verdict(arms: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    """:func:`pairlab.stats.verdict` over the arms' comparisons with the baseline arm (the one
    decision rule), with the ablation's own words while nothing is evaluated yet and each
    winner's training-label noise where the truth is known."""
    done = [a for a in arms if a["accuracy"]["mean"] is not None]
    base = next((a for a in arms if a["name"] == baseline), None)
    tested = [a for a in arms if a.get("vs_baseline")]
    if not done or not tested:
        out = verdict({}, baseline)
        out["text"] = ("No arm has been evaluated yet." if not done else
                       f"Nothing to compare yet: the baseline arm '{baseline}' and at least one other "
                       "arm need an evaluation on the same seed.")
        return out
    return verdict({a["name"]: a["vs_baseline"] for a in tested}, baseline,
                   notes={a["name"]: _noise(a, base) for a in tested})


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _noise(arm: dict[str, Any], base: dict[str, Any] | None) -> str:
    if base is None or arm.get("true_label_noise") is None or base.get("true_label_noise") is None:
        return ""
    return (f"; its training labels were {_pct(arm['true_label_noise'])} wrong vs "
            f"{_pct(base['true_label_noise'])} in the baseline")


def write_comparison(comparison: dict[str, Any], layout) -> Path | None:
    """comparison.json, then the HTML report through pairlab.reports (when it renders)."""
    artifacts.write_json(layout.root / COMPARISON, comparison)
    from ..reports.ablation_report import write_ablation_report

    return write_ablation_report(layout.root)
