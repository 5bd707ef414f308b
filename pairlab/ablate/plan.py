"""Planning an ablation: how many eval pairs and seeds detect a target difference, at what cost.

`pairlab power` and `pairlab ablate --plan` print the same table. For a target accuracy
difference δ and a discordance rate ψ (the share of eval pairs on which two arms disagree),
Connor's formula (:func:`pairlab.stats.pairs_needed`) gives the paired observations
needed for 80% power at α = 0.05. With K arms compared with the baseline, Holm's
correction tests the smallest p at α / K, so the plan uses α / K (conservative for the
other arms). Observations are pairs × seeds, since seeds are pooled in one stratified test.

Every extra seed retrains every arm while an extra eval pair costs a fraction of a second
per arm, so the plan lists 1, 2, 3 and 5 seeds and recommends the fewest seeds whose pairs
the eval split can supply: evaluation pairs before training runs.

ψ comes from an existing ablation's ``per_pair.parquet`` files when there are any (arms
against the baseline, same seed), else from :data:`DEFAULT_DISCORDANCE`. Time comes from
the ``manifest.json`` of the runs and evaluations found under a directory of this machine
(seconds per optimizer step, per-run overhead, seconds per eval pair, per-evaluation
overhead), else from :data:`DEFAULT_TIMINGS`, labelled as defaults.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .. import artifacts
from ..dirs import AblationDir, EvalDir
from ..stats import ALPHA, POWER, mde, pairs_needed

#: Assumed discordance when no ablation has been evaluated yet: two fine-tunes of one base
#: model on overlapping data disagree on roughly a quarter to a third of held-out pairs
#: (a guess; measure yours with `pairlab power --from DIR` after a first small ablation).
DEFAULT_DISCORDANCE = 0.3

#: Per-step and per-pair costs when no manifest of this machine says better, for SmolLM2-135M
#: in 4-bit, batch 4, max_length 160 on the slow 2-core AVX2-only CPU: 11 s per optimizer step
#: is the figure examples/ablation-demo.yaml was sized with; the per-run overhead (model load,
#: GGUF conversion, adapter save), the per-pair cost (policy + reference forward of one short
#: pair) and the per-evaluation overhead (model load, two greedy generations, report) are
#: rough guesses. They are labelled as defaults wherever printed; `--timings DIR` replaces them.
DEFAULT_TIMINGS = {"seconds_per_step": 11.0, "run_overhead_s": 40.0, "seconds_per_pair": 0.5,
                   "eval_overhead_s": 30.0}
SEED_OPTIONS = (1, 2, 3, 5)


@dataclass
class Timings:
    seconds_per_step: float
    run_overhead_s: float
    seconds_per_pair: float
    eval_overhead_s: float
    source: str

    @classmethod
    def default(cls) -> "Timings":
        return cls(**DEFAULT_TIMINGS, source="documented defaults (SmolLM2-135M 4-bit on a 2-core AVX2 CPU), "
                                             "not measured on this machine")


def _manifests(root: Path) -> Iterable[dict[str, Any]]:
    for path in sorted(root.rglob(artifacts.MANIFEST)):
        try:
            yield artifacts.read_json(path)
        except (OSError, ValueError):  # unreadable or half-written: not a measurement
            continue


def measured_timings(root: str | Path | None, model: str | None = None) -> Timings:
    """Median per-step / per-pair costs from the train and evaluate manifests under ``root``
    (the given model's only, when named); the defaults for whatever is not found."""
    default = Timings.default()
    if root is None or not Path(root).is_dir():
        return default
    steps, run_over, pairs, eval_over = [], [], [], []
    for m in _manifests(Path(root)):
        timing = m.get("timing") or {}
        if m.get("stage") == "train" and timing.get("seconds_per_step"):
            if model and (m.get("config") or {}).get("model") not in (None, model):
                continue
            steps.append(timing["seconds_per_step"])
            if m.get("wall_time_s") is not None:
                run_over.append(max(0.0, m["wall_time_s"] - timing.get("train_runtime_s", 0.0)))
        elif m.get("stage") == "evaluate" and timing.get("logps_s_per_pair") is not None:
            if model and (m.get("settings") or {}).get("model") not in (None, model):
                continue
            n = ((m.get("inputs") or {}).get("eval") or {}).get("n_pairs") or 0
            pairs.append(timing["logps_s_per_pair"])
            if timing.get("total_s") is not None:
                eval_over.append(max(0.0, timing["total_s"] - timing["logps_s_per_pair"] * n))
    if not steps and not pairs:
        return default
    what = []
    if steps:
        what.append(f"{len(steps)} training run(s)")
    if pairs:
        what.append(f"{len(pairs)} evaluation(s)")
    missing = "" if steps and pairs else "; the rest are defaults"
    return Timings(
        seconds_per_step=float(np.median(steps)) if steps else default.seconds_per_step,
        run_overhead_s=float(np.median(run_over)) if run_over else default.run_overhead_s,
        seconds_per_pair=float(np.median(pairs)) if pairs else default.seconds_per_pair,
        eval_overhead_s=float(np.median(eval_over)) if eval_over else default.eval_overhead_s,
        source=f"measured on this machine: medians of {' and '.join(what)} under {root}{missing}")


def measured_discordance(root: str | Path | None) -> dict[str, Any] | None:
    """Share of eval pairs on which an arm and the baseline (same seed) disagree, pooled over
    the arms and seeds of the ablation in ``root``; None when nothing is evaluated there."""
    import pandas as pd
    import yaml

    if root is None:
        return None
    root = Path(root)
    config = root / AblationDir.CONFIG
    if not config.exists():
        return None
    cfg = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    names = [a["name"] for a in cfg.get("arms", [])]
    baseline = cfg.get("baseline") or (names[0] if names else None)
    disagree = total = 0
    for arm in names:
        if arm == baseline:
            continue
        for seed in cfg.get("seeds", [0]):
            files = [root / AblationDir.ARMS / a / f"seed{seed}" / "eval" / EvalDir.PER_PAIR for a in (baseline, arm)]
            if not all(f.exists() for f in files):
                continue
            base, other = (pd.read_parquet(f, columns=["pair_id", "correct"]).set_index("pair_id")["correct"]
                           for f in files)
            other = other.reindex(base.index)
            disagree += int((base.astype(bool) != other.astype(bool)).sum())
            total += len(base)
    if not total:
        return None
    return {"discordance": disagree / total, "observations": total, "source": f"measured in {root}"}


def design_table(target_diff: float, discordance: float, *, n_arms: int, steps_per_run: float,
                 timings: Timings, available_pairs: int | None = None, evaluate_base: bool = True,
                 seed_options: Iterable[int] = SEED_OPTIONS, alpha: float = ALPHA,
                 power: float = POWER) -> dict[str, Any]:
    """Observations needed, and per seed count the eval pairs and the estimated wall time."""
    comparisons = max(1, n_arms - 1)
    alpha_plan = alpha / comparisons
    needed = pairs_needed(target_diff, discordance, alpha=alpha_plan, power=power)
    rows = []
    for seeds in seed_options:
        pairs = None if needed is None else math.ceil(needed / seeds)
        runs = n_arms * seeds
        evals = runs + (1 if evaluate_base else 0)
        train_s = runs * (steps_per_run * timings.seconds_per_step + timings.run_overhead_s)
        eval_s = None if pairs is None else evals * (pairs * timings.seconds_per_pair + timings.eval_overhead_s)
        rows.append({"seeds": seeds, "eval_pairs": pairs,
                     "fits": None if pairs is None or available_pairs is None else pairs <= available_pairs,
                     "train_s": train_s, "eval_s": eval_s,
                     "total_s": None if eval_s is None else train_s + eval_s})
    fitting = [r for r in rows if r["eval_pairs"] is not None and r["fits"] is not False]
    return {"target_diff": target_diff, "discordance": discordance, "alpha": alpha, "alpha_plan": alpha_plan,
            "power": power, "n_comparisons": comparisons, "observations_needed": needed, "rows": rows,
            "recommended": fitting[0]["seeds"] if fitting else None, "available_pairs": available_pairs}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def format_plan(table: dict[str, Any], *, timings: Timings, discordance_source: str,
                current: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """Plain lines (each starting with ``prefix``, e.g. '# ' so a shell ignores them)."""
    t = table
    holm = (f"Holm over {t['n_comparisons']} comparisons with the baseline: planned at α/{t['n_comparisons']} = "
            f"{t['alpha_plan']:.3g}" if t["n_comparisons"] > 1 else f"α = {t['alpha']}")
    lines = [f"power: detect a {100 * t['target_diff']:.1f}-point accuracy difference with "
             f"{100 * t['power']:.0f}% power ({holm}; McNemar, Connor 1987)",
             f"discordance (share of eval pairs two arms disagree on): {t['discordance']:.3f}, {discordance_source}"]
    if current is not None:
        cur = current
        found = mde(cur["pairs"] * cur["seeds"], t["discordance"], alpha=t["alpha"], power=t["power"])
        lines.append(f"this config: {cur['pairs']:,} eval pairs × {_seeds(cur['seeds'])} "
                     + (f"cannot detect any difference with {100 * t['power']:.0f}% power at this discordance"
                        if found is None else f"detects only differences ≥ {100 * found:.1f} points")
                     + (f" (at α = {t['alpha']}, before Holm)" if t["n_comparisons"] > 1 else ""))
    if t["observations_needed"] is None:
        lines.append(f"no design detects {100 * t['target_diff']:.1f} points at this discordance: two arms that "
                     f"disagree on {100 * t['discordance']:.0f}% of pairs cannot differ by more than that")
        return [prefix + line for line in lines]
    lines.append(f"needed: {t['observations_needed']:,} paired observations (eval pairs × seeds)")
    lines.append(f"{'seeds':>5}  {'eval pairs/seed':>15}  {'train':>8}  {'evaluate':>8}  {'total':>8}")
    for r in t["rows"]:
        fits = "" if r["fits"] is None else ("" if r["fits"] else
                                              f"  (the eval split has only {t['available_pairs']:,})")
        lines.append(f"{r['seeds']:>5}  {r['eval_pairs']:>15,}  {_duration(r['train_s']):>8}  "
                     f"{_duration(r['eval_s']):>8}  {_duration(r['total_s']):>8}{fits}")
    lines.append(f"time: {timings.seconds_per_step:.2f} s/step + {timings.run_overhead_s:.0f} s per run, "
                 f"{timings.seconds_per_pair:.3f} s/eval pair + {timings.eval_overhead_s:.0f} s per evaluation; "
                 f"{timings.source}")
    first = t["rows"][0]
    if t["recommended"] is not None:
        rec = next(r for r in t["rows"] if r["seeds"] == t["recommended"])
        lines.append(f"recommended: {_seeds(rec['seeds'])} × {rec['eval_pairs']:,} eval pairs "
                     f"(~{_duration(rec['total_s'])})" + (
                         ": more eval pairs are cheaper than more seeds, each of which retrains every arm"
                         if rec is first else
                         f", the fewest seeds the eval split allows; a larger eval split would be cheaper: "
                         f"{_seeds(first['seeds'])} × {first['eval_pairs']:,} pairs (~{_duration(first['total_s'])})"))
    else:
        lines.append("recommended: enlarge the eval split (pool.max_eval_pairs, the simulator's n / "
                     "eval_fraction, or pool.eval_from); no seed count listed fits in it")
    return [prefix + line for line in lines]


def steps_per_run(cfg, kept: list[int] | None = None) -> float:
    """Optimizer steps of one run: the budget, or for an epochs budget the mean over arms of
    ceil(kept pairs / effective batch) x epochs (the pool size when arms are not curated yet)."""
    from .config import train_config

    if cfg.budget.unit == "steps":
        return float(cfg.budget.value)
    tcfg = train_config(cfg, cfg.arms[0], cfg.seeds[0])
    batch = int(tcfg.dpo.get("per_device_train_batch_size", 8)) * int(tcfg.dpo.get("gradient_accumulation_steps", 1))
    sizes = kept or [0]
    return float(np.mean([math.ceil(k / batch) * cfg.budget.value for k in sizes]))


def plan_lines(cfg, *, target_diff: float, eval_pairs: int, root: str | Path | None,
               timings_dir: str | Path | None = None, kept: list[int] | None = None,
               discordance: float | None = None, alpha: float = ALPHA, power: float = POWER,
               prefix: str = "") -> list[str]:
    """The power and cost plan of an ablation config (what `ablate --plan` prints)."""
    from .config import train_config

    model = train_config(cfg, cfg.arms[0], cfg.seeds[0]).model
    timings = measured_timings(timings_dir if timings_dir is not None else root, model)
    found = None if discordance is not None else measured_discordance(root)
    if discordance is not None:
        psi, source = discordance, "given"
    elif found is not None:
        psi, source = found["discordance"], f"{found['source']} ({found['observations']:,} observations)"
    else:
        psi, source = DEFAULT_DISCORDANCE, "assumed default (no evaluated arms yet; see pairlab.ablate.plan)"
    table = design_table(target_diff, psi, n_arms=len(cfg.arms), steps_per_run=steps_per_run(cfg, kept),
                         timings=timings, available_pairs=eval_pairs, evaluate_base=cfg.evaluate_base,
                         alpha=alpha, power=power)
    return format_plan(table, timings=timings, discordance_source=source,
                       current={"pairs": eval_pairs, "seeds": len(cfg.seeds)}, prefix=prefix)


__all__ = ["DEFAULT_DISCORDANCE", "DEFAULT_TIMINGS", "Timings", "design_table", "format_plan",
           "measured_discordance", "measured_timings", "plan_lines", "steps_per_run"]
