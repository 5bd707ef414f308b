"""`validate()`: the audit checked where the truth is known. Read top to bottom.

simulate (20 % of labels flipped by a noise type; truth known) -> curate -> train (checkpoints
  kept) -> audit against ``n_val`` clean validation pairs (an auxiliary policy trained on them
  gives the LossDiff baselines), apart from the ``n_eval`` eval pairs the arms are measured on
  (1) AUROC of every score for flagging the mislabeled training pairs;
  (2) counterfactual retraining with the same seed and step budget, without the k most
      harmful pairs by the best score, by the best cheap baseline, by TracIn, and without k
      random pairs; held-out accuracy on the clean eval split with bootstrap CIs, and paired
      comparisons against the random removal.

OUT/validation.json (rewritten after each phase, so a long run shows progress; running again
into the same OUT reuses the finished curation, training runs and counterfactual arms of the same
config, under the resume rule ablate shares: :mod:`pairlab.experiments`), and
OUT/{curate, run, audit, cf-*}/ with every stage's own outputs; the audit report in
OUT/audit/audit.html includes the validation results.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import ConfigError, check_ranges, to_dict
from ..dirs import MANIFEST, CurateDir, EvalDir, ValidationDir
from ..experiments import ensure_curated, ensure_evaluated, ensure_trained
from ..preference import sigmoid_loss
from ..stats import verdict
from .baselines import BASELINES
from .pipeline import SCORES, AuditConfig, audit

VALIDATION = ValidationDir.VALIDATION


@dataclass
class ValidateConfig:
    """Defaults: the CI size (64 arithmetic pairs, 16 steps of 4, max_length 80; measured in
    the README). The demo-like size of the issue is ``n=400 max_steps=100 max_length=128``."""

    model: str = field(default="smollm2-135m-instruct", metadata={"help": "model spec to train and audit"})
    quantization: str = field(default="4bit", metadata={"help": (
        "base model while training and auditing: 4bit (QLoRA) or none (full-precision LoRA, "
        "1.7x faster per step on an AVX2-only CPU)")})
    n: int = field(default=64, metadata={"min": 1, "help": "training pairs to simulate (arithmetic, checkable answers)"})
    n_eval: int = field(default=24, metadata={"min": 1, "help": "held-out clean pairs (eval split)"})
    n_val: int = field(default=24, metadata={"min": 1, "help": (
        "clean validation pairs the audit attributes against (influence, TracIn, LossDiff), drawn "
        "apart from the eval split the counterfactual arms are measured on")})
    flip_rate: float = field(default=0.2, metadata={"min": 0, "lt": 1, "help": "share of training labels flipped"})
    noise: str = field(default="uniform", metadata={
        "help": "noise type of the flips: uniform | length | source | marker (pairlab.simulate.NOISE_TYPES)"})
    marker_rate: float = field(default=0.4, metadata={"min": 0, "max": 1, "help": (
        "noise=marker: share of simulated completions carrying a flattery / hedging marker (other types: 0)")})
    lossdiff: bool = field(default=True, metadata={"help": (
        "train an auxiliary policy on the validation pairs for the LossDiff / LossDiff-IRM baselines")})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of simulation, training and projections"})
    topics: dict[str, float] = field(default_factory=lambda: {"arithmetic": 1.0}, metadata={"min": 0,
        "help": "simulator topic mix"})
    max_length: int = field(default=80, metadata={"min": 1, "help": "DPO max_length (prompt + completion tokens)"})
    max_steps: int = field(default=16, metadata={"min": 1, "help": "optimizer steps per training (every arm)"})
    batch_size: int = field(default=4, metadata={"min": 1, "help": "pairs per optimizer step"})
    learning_rate: float = field(default=5e-4, metadata={"gt": 0, "help": "LoRA learning rate"})
    beta: float = field(default=0.1, metadata={"gt": 0, "help": "DPO beta"})
    lora_r: int = field(default=8, metadata={"min": 1, "help": "LoRA rank"})
    save_steps: int = field(default=8, metadata={"min": 1, "help": "checkpoint cadence (TracIn uses each)"})
    proj_dim: int = field(default=16, metadata={"min": 1, "help": "projection size per factor side"})
    max_checkpoints: Optional[int] = field(default=None, metadata={"min": 1, 
        "help": "checkpoints the audit uses, evenly spaced, always the last (null: all)"})
    combine: Optional[list[str]] = field(default=None, metadata={
        "help": "scores rank-averaged into rank_average (null: the audit's default)"})
    k: Optional[int] = field(default=None, metadata={"min": 1, 
        "help": "pairs removed per counterfactual arm (null: the number of mislabeled pairs)"})
    counterfactual: bool = field(default=True, metadata={"help": "run the counterfactual retraining"})
    rankings: list[str] = field(default_factory=lambda: ["best_gradient", "best_baseline", "best"], metadata={
        "help": "counterfactual arms besides random removal: score names, or best (best AUROC of all), "
                "best_gradient (best gradient score or combination), best_baseline; duplicates run once"})
    ref_cache_dir: Optional[str] = field(default=None, metadata={"help": "reference cache root"})

    def validate(self) -> "ValidateConfig":
        check_ranges(self)  # numeric fields: the ranges in their metadata
        from ..simulate.noise import NOISE_TYPES

        if self.noise not in NOISE_TYPES:
            raise ConfigError(f"must be one of {list(NOISE_TYPES)}, got {self.noise!r}", field="noise")
        unknown = [r for r in self.rankings if r not in (*SCORES, *_SYMBOLIC)]
        if unknown:
            raise ConfigError(f"unknown ranking '{unknown[0]}'", field="rankings",
                              hint=f"choose from {[*_SYMBOLIC, *SCORES]}")
        return self


# ---------------------------------------------------------------- pure parts

_SYMBOLIC = ("best", "best_gradient", "best_baseline")
#: The goal of the issue: a score that is not a free baseline reaches this AUROC and beats them all.
GOAL_AUROC = 0.92


def choose_scores(aurocs: dict[str, float | None]) -> dict[str, str]:
    """best / best_gradient (gradient score or combination) / best_baseline by AUROC (ties: first)."""
    ranked = {s: a for s, a in aurocs.items() if a is not None}
    if not ranked:
        raise ValueError("no score has a defined AUROC (are both classes present?)")
    gradient = [s for s in ranked if s not in BASELINES]
    baseline = [s for s in ranked if s in BASELINES]
    out = {"best": max(ranked, key=ranked.get)}
    if gradient:
        out["best_gradient"] = max(gradient, key=ranked.get)
    if baseline:
        out["best_baseline"] = max(baseline, key=ranked.get)
    return out


def goal_status(aurocs: dict[str, float | None], best_baseline: str | None) -> dict[str, Any]:
    """Which non-baseline scores reach :data:`GOAL_AUROC` and beat the best free baseline."""
    bar = aurocs.get(best_baseline) if best_baseline else None
    ranked = {s: a for s, a in aurocs.items() if a is not None and s not in BASELINES}
    met = [s for s, a in ranked.items() if a >= GOAL_AUROC and (bar is None or a > bar)]
    return {"auroc_at_least": GOAL_AUROC, "best_baseline_auroc": bar,
            "beats_best_baseline": [s for s, a in ranked.items() if bar is None or a > bar],
            "met_by": met, "met": bool(met)}


def auroc(flag: np.ndarray, score: np.ndarray) -> float | None:
    """AUROC of ``-score`` (low = suspicious) for the boolean ``flag``; None when undefined."""
    from sklearn.metrics import roc_auc_score

    flag = np.asarray(flag, dtype=bool)
    score = np.asarray(score, dtype=float)
    ok = ~np.isnan(score)
    if ok.sum() < 2 or flag[ok].all() or not flag[ok].any():
        return None
    return float(roc_auc_score(flag[ok], -score[ok]))


def auroc_table(scores: pd.DataFrame, flag: np.ndarray, columns: list[str]) -> dict[str, float | None]:
    return {c: auroc(flag, scores[c].to_numpy(float)) for c in columns if c in scores}


def removal_sets(scores: pd.DataFrame, k: int, rankings: dict[str, str], seed: int) -> dict[str, list[str]]:
    """Arm name -> the k pair_ids it removes: the k lowest of each ranking score, and k random."""
    arms = {f"minus_{name}": scores.nsmallest(k, col)["pair_id"].tolist() for name, col in rankings.items()}
    rng = np.random.default_rng(seed)
    arms["minus_random"] = scores["pair_id"].iloc[rng.choice(len(scores), size=k, replace=False)].tolist()
    return arms


def heldout_loss(margin: np.ndarray) -> np.ndarray:
    """Per-pair held-out DPO loss -log sigmoid(margin) from the implicit reward margin (beta-scaled)."""
    return sigmoid_loss(margin)


def compare_arms(correct: dict[str, np.ndarray], reference_arm: str, seed: int,
                 margins: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Accuracy + CI per arm, and each arm's paired difference / McNemar against ``reference_arm``.

    With ``margins`` (per-pair implicit reward margins), also each arm's mean held-out DPO loss
    with its CI and the paired loss difference (arm - reference; negative = lower loss): a finer
    measure than accuracy when every arm is near the ceiling.
    """
    from ..stats import bootstrap_ci, paired_bootstrap, paired_comparison, with_holm

    out: dict[str, Any] = {}
    for arm, c in correct.items():
        entry: dict[str, Any] = {"accuracy": float(np.mean(c)),
                                 "accuracy_ci95": list(bootstrap_ci(c.astype(float), seed=seed))}
        loss = heldout_loss(margins[arm]) if margins and arm in margins else None
        if loss is not None:
            entry["heldout_loss"] = float(loss.mean())
            entry["heldout_loss_ci95"] = list(bootstrap_ci(loss, seed=seed))
        if arm != reference_arm and reference_arm in correct:
            # delta = arm - reference_arm; Holm across the arms below.
            entry[f"vs_{reference_arm}"] = paired_comparison(correct[reference_arm], c, seed=seed)
            if loss is not None and reference_arm in margins:
                entry[f"vs_{reference_arm}"]["heldout_loss"] = paired_bootstrap(
                    heldout_loss(margins[reference_arm]), loss, seed=seed)
        out[arm] = entry
    key = f"vs_{reference_arm}"
    compared = [arm for arm in out if key in out[arm]]
    for arm, corrected in zip(compared, with_holm([out[arm][key] for arm in compared])):
        out[arm][key] = corrected
    return out


def counterfactual_goal(arms: dict[str, Any], gradient: str | None, baseline: str | None,
                        margins: dict[str, np.ndarray] | None = None, seed: int = 0) -> dict[str, Any]:
    """Did removing the gradient score's top k beat removing k random pairs and the best baseline's
    top k? By held-out accuracy (the issue's measure; ties do not count as beating) and, when
    ``margins`` are given, by mean held-out DPO loss, with a paired bootstrap against the baseline arm."""
    def get(score, key):
        entry = arms.get(score if score == "minus_random" else f"minus_{score}") if score else None
        return None if entry is None else entry.get(key)

    def beats(key, other, lower_is_better=False):
        mine, theirs = get(gradient, key), get(other, key)
        if mine is None or theirs is None:
            return None
        return mine < theirs if lower_is_better else mine > theirs

    out = {"score": gradient, "baseline": baseline, "accuracy": get(gradient, "accuracy"),
           "random_accuracy": get("minus_random", "accuracy"), "baseline_accuracy": get(baseline, "accuracy"),
           "beats_random": beats("accuracy", "minus_random"), "beats_best_baseline": beats("accuracy", baseline),
           "heldout_loss": get(gradient, "heldout_loss"), "random_heldout_loss": get("minus_random", "heldout_loss"),
           "baseline_heldout_loss": get(baseline, "heldout_loss"),
           "beats_random_on_loss": beats("heldout_loss", "minus_random", lower_is_better=True),
           "beats_best_baseline_on_loss": beats("heldout_loss", baseline, lower_is_better=True)}
    mine, theirs = f"minus_{gradient}", f"minus_{baseline}"
    if margins and mine in margins and theirs in margins and mine != theirs:
        from ..stats import paired_bootstrap

        out["vs_best_baseline_heldout_loss"] = paired_bootstrap(heldout_loss(margins[theirs]),
                                                                heldout_loss(margins[mine]), seed=seed)
    return out


# ---------------------------------------------------------------- the run

def simulate_data(cfg: ValidateConfig, *, flip_rate: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held-out): ``n`` training pairs with ``flip_rate`` flipped by ``noise``, and
    ``n_val + n_eval`` clean held-out pairs (:func:`split_held_out` separates them).
    ``flip_rate=0`` gives the same pairs with no flips (the clean pool)."""
    from ..simulate import simulate_pairs

    held = cfg.n_val + cfg.n_eval
    share = held / (cfg.n + held)
    records = int(np.ceil((cfg.n + held) * 1.15))  # a few records yield no pair (ties)
    train, held_out = simulate_pairs(n=records, seed=cfg.seed, topics=cfg.topics, length="short",
                                     label_flip_rate=cfg.flip_rate if flip_rate is None else flip_rate,
                                     eval_fraction=share, noise=cfg.noise,
                                     marker_rate=cfg.marker_rate if cfg.noise == "marker" else 0.0)
    return train.head(cfg.n).reset_index(drop=True), held_out.head(held).reset_index(drop=True)


def split_held_out(held_out: pd.DataFrame, n_val: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validation, eval): the held-out pairs split by prompt, so no prompt is in both."""
    prompts = held_out["prompt_id"].astype(str)
    val_prompts = set(prompts.drop_duplicates().head(n_val))
    in_val = prompts.isin(val_prompts).to_numpy()
    val = held_out[in_val].head(n_val).reset_index(drop=True)
    return val, held_out[~in_val].reset_index(drop=True)


def train_config(cfg: ValidateConfig, **overrides: Any):
    from ..train import load_train_config

    values = {"model": cfg.model, "quantization": cfg.quantization, "seed": cfg.seed, "save_steps": cfg.save_steps, "save_total_limit": None,
              "lora.r": cfg.lora_r, "lora.alpha": 2 * cfg.lora_r, "dpo.max_length": cfg.max_length,
              "dpo.max_steps": cfg.max_steps, "dpo.per_device_train_batch_size": cfg.batch_size,
              "dpo.learning_rate": cfg.learning_rate, "dpo.beta": cfg.beta, "logging_steps": 1}
    if cfg.ref_cache_dir:
        values["ref_cache_dir"] = cfg.ref_cache_dir
    values.update(overrides)
    return load_train_config(None, values)


def _write_train_pairs(pairs: pd.DataFrame, out: Path) -> Path:
    """OUT/pairs.parquet, rewritten only when the pairs differ (a rerun keeps the file its run recorded).

    Compared after a Parquet round trip: a fresh simulation holds its prompts as lists, a file
    reads them back as arrays, and the same rows must count as the same."""
    import io

    path = out / ValidationDir.TRAIN_PAIRS
    pairs = pairs.reset_index(drop=True)
    if path.exists():
        buffer = io.BytesIO()
        pairs.to_parquet(buffer, index=False)
        if pd.read_parquet(path).equals(pd.read_parquet(buffer)):
            return path
    artifacts.write_parquet(path, pairs)
    return path


def _train_once(pairs: pd.DataFrame, out: Path, tcfg) -> Path:
    """Train OUT/run on ``pairs`` under the shared resume rule (:func:`pairlab.experiments.ensure_trained`)."""
    ensure_trained(_write_train_pairs(pairs, out), tcfg, out / "run")
    return out / "run"


def _train_and_eval(pairs: pd.DataFrame, eval_pairs: pd.DataFrame, out: Path, tcfg) -> pd.DataFrame:
    """OUT/run trained on ``pairs``, then its per-pair results on ``eval_pairs`` (each step reused when finished)."""
    _train_once(pairs, out, tcfg)
    return _evaluate_run(out, eval_pairs)


def run_validation(cfg: ValidateConfig | None, out_dir: str | Path) -> dict[str, Any]:
    """Run the whole validation; returns (and writes) the content of ``validation.json``."""
    started = time.time()
    cfg = (cfg or ValidateConfig()).validate()
    out = Path(out_dir)
    ValidationDir.prepare(out, resume=True)  # a rerun reuses what is finished; never another stage's dir
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()  # incomplete again until this run ends
    ValidationDir.mark_started(out)
    result: dict[str, Any] = {"config": to_dict(cfg), "status": "running"}
    if (out / VALIDATION).exists():  # a rerun reuses finished phases: keep what the earlier runs cost
        previous = artifacts.read_json(out / VALIDATION)
        result["earlier_runs"] = [*previous.get("earlier_runs", []),
                                  {k: previous.get(k) for k in ("status", "wall_time_s", "timing")}]

    def save() -> None:
        result["wall_time_s"] = round(time.time() - started, 1)
        artifacts.write_json(out / VALIDATION, result)

    # Simulate and curate (exact duplicates, empties; flips must survive to be found).
    from ..curate.config import CurateConfig

    train_pairs, held_out = simulate_data(cfg)
    val_pairs, eval_pairs = split_held_out(held_out, cfg.n_val)
    ensure_curated(train_pairs, ["drop_empty", "drop_identical"],
                   CurateConfig(seed=cfg.seed, max_length=cfg.max_length, eval_fraction=0.0, cache=False),
                   out / "curate")
    pairs_path = out / "curate" / CurateDir.PAIRS
    curated_train = pd.read_parquet(pairs_path)  # read back: the same table whether curated now or reused
    mislabeled = ~curated_train["true_preference_correct"].astype(bool).to_numpy()
    result["data"] = {"n_train": len(curated_train), "n_val": len(val_pairs), "n_eval": len(eval_pairs),
                      "n_mislabeled": int(mislabeled.sum()),
                      "n_flipped": int(curated_train["flipped"].sum()), "noise": cfg.noise}
    artifacts.write_parquet(out / ValidationDir.EVAL_PAIRS, eval_pairs)
    artifacts.write_parquet(out / "val_pairs.parquet", val_pairs)

    # Train the audited run, keeping every checkpoint.
    t0 = time.time()
    tcfg = train_config(cfg)
    ensure_trained(pairs_path, tcfg, out / "run")  # a rerun into the same OUT reuses (or resumes) it
    result["timing"] = {"train_s": round(time.time() - t0, 1)}
    save()

    # Audit it and score every score against the truth.
    t0 = time.time()
    audit_cfg = AuditConfig(proj_dim=cfg.proj_dim, seed=cfg.seed, report=False, max_checkpoints=cfg.max_checkpoints)
    if cfg.combine:
        audit_cfg.combine = list(cfg.combine)
    if cfg.lossdiff:  # LossDiff's auxiliary policy: the same recipe on the clean validation pairs
        val_steps = max(1, int(np.ceil(len(val_pairs) / cfg.batch_size)))
        _train_once(val_pairs, out / "val-run", train_config(cfg, **{"dpo.max_steps": val_steps,
                                                                       "save_steps": val_steps}))
        audit_cfg.validation_run = str(out / "val-run" / "run")
    audited = audit(out / "run", val_pairs, out / "audit", config=audit_cfg, overwrite=True)
    result["timing"]["audit_s"] = round(time.time() - t0, 1)
    result["throughput"] = audited.throughput
    scores = audited.scores.set_index("pair_id").loc[curated_train["pair_id"].astype(str)].reset_index()
    flipped = curated_train["flipped"].astype(bool).to_numpy()
    result["auroc_mislabeled"] = auroc_table(scores, mislabeled, SCORES)
    result["auroc_flipped"] = auroc_table(scores, flipped, SCORES)
    from .detection import detection_table

    result["detection"] = detection_table(scores, mislabeled, SCORES)
    chosen = choose_scores(result["auroc_mislabeled"])
    result["best_score"] = chosen["best"]
    result["best_gradient_score"] = chosen.get("best_gradient")
    result["best_baseline"] = chosen.get("best_baseline")
    result["goal"] = goal_status(result["auroc_mislabeled"], chosen.get("best_baseline"))
    save()

    # Counterfactual retraining: same seed, same step budget, k pairs fewer.
    if cfg.counterfactual:
        t0 = time.time()
        k = cfg.k or max(int(mislabeled.sum()), 1)
        rankings: dict[str, str] = {}
        for name in cfg.rankings:
            score = chosen.get(name, name)
            if score in SCORES and score not in rankings.values():
                rankings[score] = score
        arms = removal_sets(scores, k, rankings, seed=cfg.seed)
        eval_ids = eval_pairs["pair_id"].astype(str)
        correct, margins = {}, {}

        def record(arm: str, per_pair: pd.DataFrame) -> None:  # aligned on the eval pairs' order
            per_pair = per_pair.set_index(per_pair["pair_id"].astype(str)).loc[eval_ids]
            correct[arm] = per_pair["correct"].to_numpy(bool)
            margins[arm] = per_pair["margin"].to_numpy(float)

        record("full", _evaluate_run(out, eval_pairs))
        removed_mislabeled = {}
        for arm, removed in arms.items():
            keep = ~curated_train["pair_id"].astype(str).isin(removed)
            removed_mislabeled[arm] = int((~keep & pd.Series(mislabeled)).sum())
            record(arm, _train_and_eval(curated_train[keep.to_numpy()], eval_pairs, out / f"cf-{arm}", tcfg))
            arms_table = compare_arms(correct, "minus_random", cfg.seed, margins)
            result["counterfactual"] = {"k": k, "removed_mislabeled": removed_mislabeled, "arms": arms_table,
                                        "verdict": verdict({a: e.get("vs_minus_random") for a, e in arms_table.items()},
                                                           "minus_random")}
            save()
        result["goal"]["counterfactual"] = counterfactual_goal(
            result["counterfactual"]["arms"], chosen.get("best_gradient"), chosen.get("best_baseline"),
            margins, seed=cfg.seed)
        result["timing"]["counterfactual_s"] = round(time.time() - t0, 1)
    result["status"] = "done"
    save()
    ValidationDir.finish(out, config=to_dict(cfg), seed=cfg.seed, started=started)
    from .pipeline import write_report

    write_report(out / "audit")
    return result


def _evaluate_run(out: Path, eval_pairs: pd.DataFrame) -> pd.DataFrame:
    """Per-pair held-out results of OUT/run (OUT/eval reused when it evaluated this run)."""
    from ..evaluate.config import EvalConfig

    ensure_evaluated(eval_pairs, out / "eval", EvalConfig(generate=False).validate(), run=out / "run")
    return pd.read_parquet(out / "eval" / EvalDir.PER_PAIR)
