"""`pairlab audit --validate --suite`: the audit validated on every noise type and several seeds.

For each noise type (:data:`pairlab.simulate.noise.NOISE_TYPES`) and seed, one validation
(:func:`pairlab.audit.validate.run_validation`, without its own counterfactual) into
``OUT/runs/<noise>-seed<s>/``: simulate with known truth -> curate -> train -> audit against a
clean validation set -> AUROC, AUPRC and precision@k of every score. Then:

1. **The goal per noise type.** On a systematic type the default audit score must beat the
   best free baseline's AUROC by >= ``margin`` (0.05) on *every* seed; on uniform flips a tie
   (|difference| < margin on every seed) is acceptable and reported as such. ``goal.met_by``
   lists, per type, every non-free score that clears the bar on every seed.
2. **Counterfactual retraining** on the systematic type where the default score leads most
   (mean AUROC lead over seeds), on every seed, same step budget, arms: the full noisy pool,
   the clean pool (same pairs, no flips: the base effect), without the default score's top k,
   without the best free baseline's top k (the baseline with the best mean AUROC on that type),
   without k random pairs (k = the mislabeled count of each seed). Held-out DPO loss and
   accuracy on the clean eval split, pooled across seeds with bootstrap CIs, and paired
   differences (pair-level, pooled across seeds).

``OUT/suite.json`` is rewritten after every run; running again into the same OUT reuses every
finished run and arm (resumable). ``--quick`` is the CI size on tiny-random-llama: it checks the
machinery, not the figures (a random tiny model learns nothing).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import ConfigError, check_ranges, to_dict
from ..dirs import AuditDir, CurateDir, ValidationDir
from .registry import ATTRIBUTION_SCORES

SUITE = "suite.json"
SYSTEMATIC = ("length", "source", "marker")


@dataclass
class SuiteConfig:
    """Defaults: the full suite on SmolLM2-135M, with full-precision LoRA (1.7x faster a step than
    QLoRA on an AVX2-only CPU; the suite validates the scores, not the quantization) and one
    checkpoint, the final adapter (half the gradient passes of two). docs/results/audit-suite.md
    has the measured costs: the whole suite in 1 h 38 min on the 2-core AVX512-BF16 CPU (about
    5 min a run); about 13 min a run on the AVX2-only one before the shared-prompt layout.
    ``quick`` swaps in :data:`QUICK`."""

    model: str = field(default="smollm2-135m-instruct", metadata={"help": "model spec trained and audited"})
    quantization: str = field(default="none", metadata={
        "help": "base model while training and auditing: none (full-precision LoRA) or 4bit (QLoRA)"})
    noise_types: list[str] = field(default_factory=lambda: ["uniform", "length", "source", "marker"],
                                   metadata={"help": "noise types, each run on every seed"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"min": 0, "help": "seeds per noise type"})
    n: int = field(default=160, metadata={"min": 1, "help": "training pairs per run"})
    n_val: int = field(default=32, metadata={"min": 1, "help": "clean validation pairs the audit attributes against"})
    n_eval: int = field(default=200, metadata={"min": 1, "help": "clean eval pairs the counterfactual arms are measured on"})
    flip_rate: float = field(default=0.2, metadata={"min": 0, "lt": 1, "help": "share of labels the noise flips (cap)"})
    max_length: int = field(default=96, metadata={"min": 1, "help": "DPO max_length"})
    max_steps: int = field(default=40, metadata={"min": 1, "help": "optimizer steps per training (every arm)"})
    batch_size: int = field(default=4, metadata={"min": 1, "help": "pairs per optimizer step"})
    save_steps: Optional[int] = field(default=None, metadata={
        "min": 1, "help": "checkpoint cadence (TracIn / influence use each); null: max_steps (the final adapter only)"})
    proj_dim: int = field(default=16, metadata={"min": 1, "help": "projection size per factor side"})
    default_score: Optional[str] = field(default=None, metadata={
        "help": "the audit score the goal is stated for (null: AuditConfig's harmful_score)"})
    margin: float = field(default=0.05, metadata={"min": 0, "help": "AUROC lead over the best free baseline the goal needs"})
    counterfactual: bool = field(default=True, metadata={"help": "run the counterfactual arms"})
    counterfactual_noise: Optional[str] = field(default=None, metadata={
        "help": "noise type of the counterfactual (null: the systematic type where the default score leads most)"})
    lossdiff: bool = field(default=True, metadata={"help": "train the auxiliary validation policy (LossDiff baselines)"})
    ref_cache_dir: Optional[str] = field(default=None, metadata={"help": "reference cache root"})

    def validate(self) -> "SuiteConfig":
        check_ranges(self)
        from ..simulate.noise import NOISE_TYPES

        for name in [*self.noise_types, *([self.counterfactual_noise] if self.counterfactual_noise else [])]:
            if name not in NOISE_TYPES:
                raise ConfigError(f"unknown noise type {name!r}", field="noise_types", hint=f"choose from {list(NOISE_TYPES)}")
        from ..models import QUANTIZATIONS

        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"unknown quantization {self.quantization!r}", field="quantization",
                              hint=f"choose one of {list(QUANTIZATIONS)}")
        if not self.seeds or not self.noise_types:
            raise ConfigError("needs at least one seed and one noise type", field="seeds")
        if self.default_score is not None and self.default_score not in ATTRIBUTION_SCORES:
            raise ConfigError(f"unknown score {self.default_score!r}", field="default_score",
                              hint=f"choose from {list(ATTRIBUTION_SCORES)}")
        return self


#: ``--quick``: tiny-random-llama, three noise types, one seed, two steps, no counterfactual: the
#: CI check that every phase runs and validation.json has every field (the counterfactual
#: machinery has its own test, resuming the quick suite's directory). Sized for CI: on the tiny
#: model the LM head over its 49k-token vocabulary is nearly all the cost, so tokens (pairs x
#: max_length) set the time; 16 pairs of <= 64 tokens keep 3 - 4 mislabeled pairs per run. It keeps
#: QLoRA (4bit), so CI audits the 4-bit path the full suite's default (none) does not take.
QUICK: dict[str, Any] = {"model": "tiny-random-llama", "quantization": "4bit",
                         "noise_types": ["uniform", "length", "marker"], "seeds": [0],
                         "n": 16, "n_val": 4, "n_eval": 4, "max_length": 64, "max_steps": 2, "save_steps": 2,
                         "proj_dim": 8, "counterfactual": False}


def validate_config(cfg: SuiteConfig, noise: str, seed: int):
    from .validate import ValidateConfig

    return ValidateConfig(model=cfg.model, quantization=cfg.quantization, n=cfg.n, n_val=cfg.n_val, n_eval=cfg.n_eval, flip_rate=cfg.flip_rate,
                          noise=noise, seed=seed, max_length=cfg.max_length, max_steps=cfg.max_steps,
                          batch_size=cfg.batch_size, save_steps=cfg.save_steps or cfg.max_steps, proj_dim=cfg.proj_dim,
                          counterfactual=False, lossdiff=cfg.lossdiff, ref_cache_dir=cfg.ref_cache_dir)


# ---------------------------------------------------------------- pure parts

def free_scores() -> list[str]:
    return [n for n, s in ATTRIBUTION_SCORES.items() if s.free]


def best_free(detection: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    """(name, AUROC) of the free baseline with the highest defined AUROC in one run."""
    defined = {s: detection[s]["auroc"] for s in free_scores() if s in detection and detection[s]["auroc"] is not None}
    if not defined:
        return None, None
    name = max(defined, key=defined.get)
    return name, defined[name]


def noise_goal(noise: str, runs: dict[int, dict[str, Any]], default: str, margin: float) -> dict[str, Any]:
    """The AUROC goal on one noise type over its seeds' detection tables."""
    per_seed, leads_by_score = {}, {}
    for seed, detection in runs.items():
        name, bar = best_free(detection)
        mine = detection.get(default, {}).get("auroc")
        per_seed[seed] = {"default_auroc": mine, "best_free": name, "best_free_auroc": bar,
                          "lead": None if mine is None or bar is None else mine - bar}
        for score, spec in ATTRIBUTION_SCORES.items():
            a = detection.get(score, {}).get("auroc")
            if not spec.free:
                leads_by_score.setdefault(score, []).append(None if a is None or bar is None else a - bar)
    leads = [v["lead"] for v in per_seed.values()]
    complete = bool(leads) and all(v is not None for v in leads)
    beats = complete and all(v >= margin for v in leads)
    ties = complete and all(abs(v) < margin for v in leads)
    met_by = [s for s, ls in leads_by_score.items() if ls and all(v is not None and v >= margin for v in ls)]
    if noise in SYSTEMATIC:
        status = "met" if beats else "not met"
    else:  # uniform flips: the free scores see them as well, so a tie is acceptable
        status = "met" if beats else ("tie (acceptable on uniform flips)" if ties else "not met")
    return {"score": default, "margin": margin, "per_seed": per_seed, "met": status.startswith(("met", "tie")),
            "status": status, "met_by": met_by,
            "mean_lead": float(np.mean(leads)) if complete else None, "seeds": len(runs)}


def choose_default(detections: dict[str, dict[int, dict[str, Any]]], margin: float) -> dict[str, Any]:
    """The audit score to make the default ``harmful_score``, chosen across every seed, never one.

    Per non-free score: its AUROC lead over the best free baseline of the same run, on every run
    of a systematic noise type (all types when none ran). The choice is the score with the
    largest *minimum* lead over those runs (the goal needs the lead on every seed); ties go to
    the larger mean lead. ``wins`` counts the runs where the lead reaches ``margin``.
    """
    runs = [(n, s, d) for n, by_seed in detections.items() for s, d in by_seed.items() if n in SYSTEMATIC]
    runs = runs or [(n, s, d) for n, by_seed in detections.items() for s, d in by_seed.items()]
    table: dict[str, dict[str, Any]] = {}
    for score, spec in ATTRIBUTION_SCORES.items():
        if spec.free:
            continue
        leads = []
        for _, _, detection in runs:
            _, bar = best_free(detection)
            a = detection.get(score, {}).get("auroc")
            leads.append(None if a is None or bar is None else a - bar)
        if leads and all(v is not None for v in leads):
            table[score] = {"min_lead": float(min(leads)), "mean_lead": float(np.mean(leads)),
                            "wins": int(sum(v >= margin for v in leads)), "runs": len(leads)}
    best = max(table, key=lambda k: (table[k]["min_lead"], table[k]["mean_lead"])) if table else None
    return {"score": best, "rule": "largest minimum AUROC lead over the best free baseline across every run "
                                   "(noise type x seed) of the systematic noise types; ties: mean lead",
            "runs": [f"{n}-seed{s}" for n, s, _ in runs], "table": table}


def summarize_detection(runs: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """score -> mean and per-seed AUROC / AUPRC / precision@k over a noise type's seeds."""
    out: dict[str, dict[str, Any]] = {}
    for score in ATTRIBUTION_SCORES:
        entry: dict[str, Any] = {}
        for metric in ("auroc", "auprc", "precision_at_k"):
            values = [runs[s].get(score, {}).get(metric) for s in runs]
            defined = [v for v in values if v is not None]
            entry[metric] = float(np.mean(defined)) if defined else None
            entry[f"{metric}_per_seed"] = values
        out[score] = entry
    return out


def pooled_arms(per_seed: dict[int, dict[str, pd.DataFrame]], reference: str, seed: int = 0) -> dict[str, Any]:
    """Arm -> held-out loss and accuracy pooled over seeds (CIs), and paired differences against
    ``reference`` and between every pair of removal arms, pooled at the pair level."""
    from ..stats import bootstrap_ci, mcnemar_exact, paired_bootstrap
    from .validate import heldout_loss

    arms = sorted({a for frames in per_seed.values() for a in frames})
    seeds = [s for s in per_seed if all(a in per_seed[s] for a in arms)]
    pooled = {a: pd.concat([per_seed[s][a] for s in seeds], ignore_index=True) for a in arms}
    out: dict[str, Any] = {"seeds": seeds, "n_pairs": int(len(next(iter(pooled.values())))) if pooled else 0,
                           "arms": {}}
    for arm, frame in pooled.items():
        loss = heldout_loss(frame["margin"].to_numpy(float))
        correct = frame["correct"].to_numpy(bool)
        entry = {"heldout_loss": float(loss.mean()), "heldout_loss_ci95": list(bootstrap_ci(loss, seed=seed)),
                 "accuracy": float(correct.mean()), "accuracy_ci95": list(bootstrap_ci(correct.astype(float), seed=seed)),
                 "per_seed": {s: {"heldout_loss": float(heldout_loss(per_seed[s][arm]["margin"].to_numpy(float)).mean()),
                                  "accuracy": float(per_seed[s][arm]["correct"].mean())} for s in seeds}}
        if arm != reference and reference in pooled:
            ref = pooled[reference]
            entry[f"vs_{reference}"] = {
                "heldout_loss": paired_bootstrap(heldout_loss(ref["margin"].to_numpy(float)), loss, seed=seed),
                "accuracy": paired_bootstrap(ref["correct"].to_numpy(float), correct.astype(float), seed=seed),
                "mcnemar": mcnemar_exact(ref["correct"].to_numpy(bool), correct)}
        out["arms"][arm] = entry
    return out


def counterfactual_goal(pooled: dict[str, Any], default_arm: str, baseline_arm: str) -> dict[str, Any]:
    """Removing the default score's top k lowers held-out loss more than removing the best
    baseline's top k, with the pooled 95 % CI of the paired difference below 0."""
    from ..stats import paired_bootstrap

    arms = pooled.get("frames", {})
    if default_arm not in arms or baseline_arm not in arms:
        return {"met": False, "status": "not run"}
    from .validate import heldout_loss

    mine = heldout_loss(arms[default_arm]["margin"].to_numpy(float))
    theirs = heldout_loss(arms[baseline_arm]["margin"].to_numpy(float))
    diff = paired_bootstrap(theirs, mine)  # mine - theirs: negative = the default's removal helped more
    met = diff["ci95"][1] < 0
    return {"met": bool(met), "status": "met" if met else "not met", "default_arm": default_arm,
            "baseline_arm": baseline_arm, "heldout_loss_difference": diff}


# ---------------------------------------------------------------- the run

def run_suite(cfg: SuiteConfig | None, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the suite; returns and writes ``OUT/suite.json`` (also ``validation.json``)."""
    from .pipeline import AuditConfig
    from .validate import run_validation

    started = time.time()
    cfg = (cfg or SuiteConfig()).validate()
    out = Path(out_dir)
    default = cfg.default_score or AuditConfig().harmful_score
    result: dict[str, Any] = {"config": to_dict(cfg), "status": "running", "default_score": default,
                              "free_scores": free_scores(), "runs": {}, "timing": {}}

    def save() -> None:
        result["wall_time_s"] = round(time.time() - started, 1)
        artifacts.write_json(out / SUITE, result)
        artifacts.write_json(out / ValidationDir.VALIDATION, result)

    detections: dict[str, dict[int, dict[str, Any]]] = {}
    for noise in cfg.noise_types:
        for seed in cfg.seeds:
            t0 = time.time()
            vcfg, run_dir = validate_config(cfg, noise, seed), out / "runs" / f"{noise}-seed{seed}"
            run = _finished(run_dir, vcfg) or run_validation(vcfg, run_dir)
            detections.setdefault(noise, {})[seed] = run["detection"]
            result["runs"][f"{noise}-seed{seed}"] = {"data": run["data"], "wall_time_s": round(time.time() - t0, 1)}
            save()
    result["detection"] = {noise: summarize_detection(runs) for noise, runs in detections.items()}
    goals = {noise: noise_goal(noise, runs, default, cfg.margin) for noise, runs in detections.items()}
    result["goal"] = {"auroc": goals, "met_by": {n: g["met_by"] for n, g in goals.items()},
                      "met": {n: g["status"] for n, g in goals.items()}}
    result["default_choice"] = choose_default(detections, cfg.margin)
    save()

    if cfg.counterfactual:
        result["counterfactual"] = _counterfactual(cfg, out, detections, goals, default)
        result["goal"]["counterfactual"] = result["counterfactual"].pop("goal")
    result["status"] = "done"
    save()
    artifacts.write_manifest(out, stage="audit-validate-suite", config=to_dict(cfg), seed=cfg.seeds[0],
                             started=started, outputs={"suite": SUITE, "runs": "runs"})
    return result


def _finished(run_dir: Path, vcfg) -> dict[str, Any] | None:
    """An earlier suite's finished validation of exactly this config (resume), else None."""
    path = run_dir / ValidationDir.VALIDATION
    if not path.exists():
        return None
    done = artifacts.read_json(path)
    same = done.get("status") == "done" and done.get("config") == json.loads(artifacts.to_json(to_dict(vcfg)))
    return done if same and "detection" in done else None


def _counterfactual(cfg: SuiteConfig, out: Path, detections, goals, default: str) -> dict[str, Any]:
    from .validate import _evaluate_run, _train_and_eval, removal_sets, simulate_data, train_config

    systematic = [n for n in cfg.noise_types if n in SYSTEMATIC and goals[n]["mean_lead"] is not None]
    noise = cfg.counterfactual_noise or (max(systematic, key=lambda n: goals[n]["mean_lead"]) if systematic
                                         else cfg.noise_types[0])
    summary = summarize_detection(detections[noise])
    baseline = max((s for s in free_scores() if summary[s]["auroc"] is not None),
                   key=lambda s: summary[s]["auroc"], default=None)
    per_seed: dict[int, dict[str, pd.DataFrame]] = {}
    removed: dict[int, dict[str, int]] = {}
    for seed in cfg.seeds:
        vcfg = validate_config(cfg, noise, seed)
        run_dir = out / "runs" / f"{noise}-seed{seed}"
        scores = pd.read_parquet(run_dir / "audit" / AuditDir.ATTRIBUTION)
        train = pd.read_parquet(run_dir / "curate" / CurateDir.PAIRS)
        eval_pairs = pd.read_parquet(run_dir / ValidationDir.EVAL_PAIRS)
        scores = scores.set_index("pair_id").loc[train["pair_id"].astype(str)].reset_index()
        mislabeled = ~train["true_preference_correct"].astype(bool).to_numpy()
        k = max(int(mislabeled.sum()), 1)
        rankings = {f"default_{default}": default, **({f"baseline_{baseline}": baseline} if baseline else {})}
        arms = removal_sets(scores, k, rankings, seed=seed)
        tcfg = train_config(vcfg)
        frames = {"full": _evaluate_run(run_dir, eval_pairs)}
        removed[seed] = {"k": k}
        for arm, ids in arms.items():
            keep = ~train["pair_id"].astype(str).isin(ids).to_numpy()
            removed[seed][arm] = int((~keep & mislabeled).sum())
            frames[arm] = _train_and_eval(train[keep], eval_pairs, run_dir / f"cf-{arm}", tcfg)
        # the base effect: the same pairs with no flips
        clean_train, _ = simulate_data(vcfg, flip_rate=0.0)
        clean_train = clean_train[clean_train["pair_id"].isin(train.get("original_pair_id", train["pair_id"]))
                                  | clean_train["pair_id"].isin(train["pair_id"])]
        frames["clean"] = _train_and_eval(clean_train.reset_index(drop=True), eval_pairs, run_dir / "cf-clean", tcfg)
        # paired: the eval pairs every arm scored (evaluation skips pairs truncated to nothing)
        ids = [i for i in eval_pairs["pair_id"].astype(str)
               if all(i in set(f["pair_id"].astype(str)) for f in frames.values())]
        per_seed[seed] = {a: f.set_index(f["pair_id"].astype(str)).loc[ids].reset_index(drop=True)
                          for a, f in frames.items()}
    pooled = pooled_arms(per_seed, "minus_random")
    default_arm, baseline_arm = f"minus_default_{default}", f"minus_baseline_{baseline}"
    frames = {a: pd.concat([per_seed[s][a] for s in pooled["seeds"]], ignore_index=True)
              for a in per_seed[cfg.seeds[0]]}
    goal = counterfactual_goal({"frames": frames}, default_arm, baseline_arm)
    full, clean = pooled["arms"].get("full"), pooled["arms"].get("clean")
    from ..stats import paired_bootstrap
    from .validate import heldout_loss

    base_effect = {"accuracy_noisy": full["accuracy"], "accuracy_clean": clean["accuracy"],
                   "accuracy": paired_bootstrap(frames["clean"]["correct"].to_numpy(float),
                                                frames["full"]["correct"].to_numpy(float)),
                   "heldout_loss": paired_bootstrap(heldout_loss(frames["clean"]["margin"].to_numpy(float)),
                                                    heldout_loss(frames["full"]["margin"].to_numpy(float)))}
    base_effect["measurable"] = bool(base_effect["accuracy"]["ci95"][1] < 0)
    return {"noise": noise, "default_score": default, "best_free_baseline": baseline, "removed": removed,
            **pooled, "base_effect": base_effect, "goal": goal}


def results_markdown(result: dict[str, Any], scores: list[str] | None = None) -> str:
    """``suite.json`` as Markdown: per noise type, one row per seed with every score's AUROC, the
    best free baseline, the default score's lead and whether the goal held; then the default choice.
    What the docs' results page publishes (``python -m pairlab.audit.suite OUT`` prints it)."""
    runs = {}
    for name, run_dir in result.get("runs", {}).items():
        noise, seed = name.rsplit("-seed", 1)
        runs.setdefault(noise, []).append(int(seed))
    names = scores or [s for s in ATTRIBUTION_SCORES if s != "rank_average"]
    default = result.get("default_score")
    lines = []
    for noise, table in result.get("detection", {}).items():
        goal = result.get("goal", {}).get("auroc", {}).get(noise, {})
        bar = (f"{default} ≥ best free + {goal.get('margin')} on every seed" if noise != "uniform" else
               f"{default} ≥ best free + {goal.get('margin')}, or a tie (|lead| < {goal.get('margin')}), on every seed")
        lines += [f"**{noise}** — goal ({bar}): "
                  f"**{goal.get('status')}**; met by: {', '.join(goal.get('met_by') or []) or 'none'}", "",
                  "| seed | mislabeled / n | " + " | ".join(f"`{s}`" for s in names) + " | best free | lead |",
                  "|---" * (len(names) + 4) + "|"]
        seeds = sorted(runs.get(noise, []))
        for i, seed in enumerate(seeds):
            data = result["runs"][f"{noise}-seed{seed}"]["data"]
            cells = []
            for s in names:
                values = table.get(s, {}).get("auroc_per_seed") or []
                v = values[i] if i < len(values) else None
                cells.append("—" if v is None else f"{v:.3f}")
            per = goal.get("per_seed", {}).get(seed) or goal.get("per_seed", {}).get(str(seed)) or {}
            lead = per.get("lead")
            lines.append(f"| {seed} | {data['n_mislabeled']} / {data['n_train']} | " + " | ".join(cells)
                         + f" | {per.get('best_free')} | {'—' if lead is None else f'{lead:+.3f}'} |")
        lines.append("")
    choice = result.get("default_choice") or {}
    if choice.get("table"):
        lines += [f"Default `harmful_score` by the suite's rule ({choice['rule']}): **{choice['score']}**", "",
                  "| score | min lead | mean lead | runs with lead ≥ margin |", "|---|---|---|---|"]
        for s, row in sorted(choice["table"].items(), key=lambda kv: -kv[1]["min_lead"]):
            lines.append(f"| `{s}` | {row['min_lead']:+.3f} | {row['mean_lead']:+.3f} | {row['wins']} / {row['runs']} |")
    lines += _counterfactual_markdown(result)
    return "\n".join(lines) + "\n"


def _counterfactual_markdown(result: dict[str, Any]) -> list[str]:
    """The counterfactual arms (pooled held-out loss and accuracy with CIs, per-seed accuracy,
    mislabeled pairs each removal took out) and its goal line; nothing when it did not run."""
    cf = result.get("counterfactual") or {}
    arms = cf.get("arms") or {}
    if not arms:
        return []
    seeds = [str(s) for s in cf.get("seeds", [])]
    removed = cf.get("removed") or {}

    def ci(value, bounds, pct=False):
        f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
        return f"{f(value)}{'%' if pct else ''} ({f(bounds[0])}–{f(bounds[1])})" if bounds else f(value)

    lines = ["", f"**counterfactual ({cf.get('noise')})**, {cf.get('n_pairs')} held-out pairs over seeds "
             f"{', '.join(seeds)}: default `{cf.get('default_score')}`, best free `{cf.get('best_free_baseline')}`", "",
             "| arm | mislabeled removed / k, per seed | held-out DPO loss (95% CI) | accuracy (95% CI) | "
             "accuracy per seed |", "|---|---|---|---|---|"]
    for name, arm in arms.items():
        taken = ", ".join(f"{removed[s][name]}/{removed[s]['k']}" if name in removed.get(s, {}) else "–"
                           for s in seeds)
        per = ", ".join(f"{100 * arm['per_seed'][s]['accuracy']:.1f}" for s in seeds if s in arm.get("per_seed", {}))
        lines.append(f"| {name} | {taken} | {ci(arm['heldout_loss'], arm.get('heldout_loss_ci95'))} | "
                     f"{ci(arm['accuracy'], arm.get('accuracy_ci95'), pct=True)} | {per} |")
    goal = (result.get("goal") or {}).get("counterfactual") or {}
    diff = goal.get("heldout_loss_difference") or {}
    if diff:
        lines += ["", f"Goal ({goal.get('default_arm')} lowers held-out loss more than {goal.get('baseline_arm')}, "
                  f"pooled 95% CI excluding 0): **{goal.get('status')}**; loss difference (default − baseline) "
                  f"{diff['mean_difference']:+.3f} ({diff['ci95'][0]:+.3f} to {diff['ci95'][1]:+.3f}), "
                  f"p = {diff['p_value']:.3g}"]
    base = cf.get("base_effect") or {}
    if base.get("accuracy"):
        acc = base["accuracy"]
        lines += ["", f"Base effect (noisy pool against clean pool): accuracy {100 * acc['mean_difference']:+.1f} points "
                  f"({100 * acc['ci95'][0]:+.1f} to {100 * acc['ci95'][1]:+.1f}); "
                  f"{'measurable' if base.get('measurable') else 'not measurable'}"]
    return lines


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(results_markdown(artifacts.read_json(Path(sys.argv[1]) / SUITE)))
