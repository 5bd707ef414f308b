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
from ..evaluate.stats import mcnemar_exact, paired_bootstrap
from .config import AblationConfig

COMPARISON = "comparison.json"


def _read_eval(eval_dir: Path) -> tuple[dict[str, Any], pd.DataFrame] | None:
    if not (eval_dir / "metrics.json").exists() or not (eval_dir / "per_pair.parquet").exists():
        return None
    return artifacts.read_json(eval_dir / "metrics.json"), pd.read_parquet(eval_dir / "per_pair.parquet")


def _mean_sd(values: list[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    if not vals:
        return {"mean": None, "sd": None}
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}


def _by_longer(metrics: dict[str, Any]) -> dict[str, float]:
    return {row["group"]: row["accuracy"] for row in metrics.get("by_chosen_longer", [])}


def compare_arms(cfg: AblationConfig, layout, pool: pd.DataFrame) -> dict[str, Any]:
    """The comparison table: one entry per arm, seeds aggregated, deltas vs the baseline arm."""
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
        kept = pd.read_parquet(curate_dir / "pairs.parquet") if (curate_dir / "pairs.parquet").exists() else None
        cman = artifacts.read_manifest(curate_dir) if (curate_dir / artifacts.MANIFEST).exists() else {}
        seeds = []
        for seed in cfg.seeds:
            entry: dict[str, Any] = {"seed": seed, "status": "missing"}
            run_dir = layout.run(arm.name, seed)
            if (run_dir / artifacts.MANIFEST).exists():
                rman = artifacts.read_manifest(run_dir)
                entry.update(train_time_s=rman.get("wall_time_s"),
                             steps=rman.get("outputs", {}).get("global_step", rman.get("global_step")))
            if (arm.name, seed) in evals:
                m, pp = evals[(arm.name, seed)]
                entry.update(status="done", accuracy=m["accuracy"], accuracy_ci95=m["accuracy_ci95"],
                             mean_margin=m["mean_margin"], ref_free_accuracy=m["ref_free_accuracy"],
                             true_accuracy=m.get("true_accuracy"), ties=m["ties"],
                             by_chosen_longer=_by_longer(m),
                             eval_report=str(Path("arms") / arm.name / f"seed{seed}" / "eval" / "report.html"),
                             by_source={r["group"]: r["accuracy"] for r in m.get("by_source", [])})
                base = evals.get((baseline, seed))
                if base is not None and arm.name != baseline:
                    bpp = base[1].set_index("pair_id").loc[pp["pair_id"]]
                    entry["delta_accuracy"] = m["accuracy"] - base[0]["accuracy"]
                    entry["mcnemar"] = mcnemar_exact(pp["correct"].to_numpy(bool), bpp["correct"].to_numpy(bool))
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
            "curation_report": str(Path("arms") / arm.name / "curate" / "curation.html"),
            "seeds": seeds,
            "accuracy": _mean_sd([s["accuracy"] for s in done]),
            "true_accuracy": _mean_sd([s.get("true_accuracy") for s in done]),
            "mean_margin": _mean_sd([s["mean_margin"] for s in done]),
            "ref_free_accuracy": _mean_sd([s["ref_free_accuracy"] for s in done]),
            "delta_accuracy": _mean_sd([s.get("delta_accuracy") for s in done]),
            "train_time_s": _mean_sd([s.get("train_time_s") for s in done]),
        })
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
            "report": str(Path("base") / "eval" / "report.html")},
        "arms": arms_out,
        "complete": all(s["status"] == "done" for a in arms_out for s in a["seeds"]),
    }


def write_comparison(comparison: dict[str, Any], layout) -> Path | None:
    """comparison.json, then the HTML report through pairlab.reports (when it renders)."""
    artifacts.write_json(layout.root / COMPARISON, comparison)
    from ..reports.ablation_report import write_ablation_report

    return write_ablation_report(layout.root)
