"""Independent re-computations of pairlab.stats, for tests: other libraries, other methods.

* MDE: root of statsmodels' ``normal_power_het`` (the power function Connor's formula comes
  from) instead of pairlab's closed form;
* Holm: the step-down rule written out by hand instead of statsmodels ``multipletests``;
* the pooled-seed test: Cochran-Mantel-Haenszel over (pair, seed) strata through
  statsmodels ``StratifiedTable``, and McNemar's exact test through statsmodels ``mcnemar``.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from statsmodels.stats.contingency_tables import StratifiedTable, mcnemar
from statsmodels.stats.power import normal_power_het


def mde_by_root(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    def gap(delta):
        return normal_power_het(delta, n, alpha, std_null=np.sqrt(discordance),
                                std_alternative=np.sqrt(discordance - delta * delta)) - power

    if n == 0 or discordance == 0 or gap(discordance * (1 - 1e-12)) < 0:
        return None
    return float(brentq(gap, 1e-9, discordance * (1 - 1e-12), xtol=1e-12))


def holm_by_hand(p: list[float]) -> list[float]:
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def mcnemar_counts(baseline: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """(baseline-only-correct, other-only-correct) over every cell."""
    baseline, other = np.asarray(baseline, bool), np.asarray(other, bool)
    return int((baseline & ~other).sum()), int((~baseline & other).sum())


def mcnemar_exact_p(baseline: np.ndarray, other: np.ndarray) -> float:
    b, c = mcnemar_counts(baseline, other)
    both = int((np.asarray(baseline, bool) & np.asarray(other, bool)).sum())
    neither = int(np.asarray(baseline, bool).size) - b - c - both
    return float(mcnemar([[both, b], [c, neither]], exact=True).pvalue)


def cmh_statistic(baseline: np.ndarray, other: np.ndarray) -> float:
    """Mantel-Haenszel chi-square over (pair, seed) strata, each a 2x2 table arm x correct."""
    base, oth = np.asarray(baseline, bool).ravel(), np.asarray(other, bool).ravel()
    tables = np.zeros((2, 2, base.size))
    tables[0, 0], tables[0, 1] = oth, ~oth
    tables[1, 0], tables[1, 1] = base, ~base
    informative = base != oth  # concordant strata add nothing (their variance is 0)
    return float(StratifiedTable(tables[:, :, informative]).test_null_odds(correction=False).statistic)


def recompute_ablation(out) -> dict:
    """Every arm's comparison with the baseline and the winner, from the per_pair.parquet files
    and ablation.yaml alone (pairs x seeds pooled; Holm by hand; MDE by root finding)."""
    from pathlib import Path

    import pandas as pd
    import yaml

    out = Path(out)
    cfg = yaml.safe_load((out / "ablation.yaml").read_text(encoding="utf-8"))
    names = [a["name"] for a in cfg["arms"]]
    baseline, seeds = cfg.get("baseline") or names[0], cfg["seeds"]

    def correct(arm, seed):
        pp = pd.read_parquet(out / "arms" / arm / f"seed{seed}" / "eval" / "per_pair.parquet")
        return pp.set_index("pair_id")["correct"].astype(bool)

    order = correct(baseline, seeds[0]).index
    arms = {}
    for arm in names:
        if arm == baseline:
            continue
        base = np.stack([correct(baseline, s).loc[order].to_numpy() for s in seeds])
        other = np.stack([correct(arm, s).loc[order].to_numpy() for s in seeds])
        b, c = mcnemar_counts(base, other)
        n = base.size
        arms[arm] = {"n": n, "delta": float(other.mean() - base.mean()), "b": b, "c": c,
                     "p": mcnemar_exact_p(base, other), "mde": mde_by_root(n, (b + c) / n),
                     "cmh": cmh_statistic(base, other) if b + c else None,
                     "per_seed_delta": [float(other[i].mean() - base[i].mean()) for i in range(len(seeds))]}
    for arm, p in zip(arms, holm_by_hand([a["p"] for a in arms.values()])):
        arms[arm]["p_holm"] = p
        arms[arm]["significant"] = p < 0.05
    better = [a for a in arms if arms[a]["significant"] and arms[a]["delta"] > 0]
    worse = [a for a in arms if arms[a]["significant"] and arms[a]["delta"] < 0]
    winner = (max(better, key=lambda a: arms[a]["delta"]) if better
              else baseline if arms and len(worse) == len(arms) else None)
    return {"arms": arms, "winner": winner, "baseline": baseline, "seeds": seeds}


def assert_comparison_matches(out) -> dict:
    """comparison.json against :func:`recompute_ablation`: delta, discordant counts (baseline-only,
    other-only), p, MDE, Holm p, pooled-seed test, per-seed deltas and the verdict's winner."""
    import json
    from pathlib import Path

    from pytest import approx

    expected = recompute_ablation(out)
    comparison = json.loads((Path(out) / "comparison.json").read_text(encoding="utf-8"))
    got = {a["name"]: a for a in comparison["arms"]}
    assert got[expected["baseline"]]["vs_baseline"] is None
    for arm, e in expected["arms"].items():
        v = got[arm]["vs_baseline"]
        assert v["n_pairs"] == e["n"] and v["seeds"] == expected["seeds"]
        assert v["delta"] == approx(e["delta"])
        assert (v["baseline_only_correct"], v["other_only_correct"]) == (e["b"], e["c"])
        assert v["p_value"] == approx(e["p"])
        assert (v["mde"] is None) == (e["mde"] is None)
        if e["mde"] is not None:
            assert v["mde"] == approx(e["mde"], abs=1e-6)
        assert v["p_holm"] == approx(e["p_holm"]) and v["significant"] == e["significant"]
        assert v["correction"] == "holm" and v["n_comparisons"] == len(expected["arms"])
        if e["cmh"] is not None:  # the pooled test is the Mantel-Haenszel test over (pair, seed) strata
            assert (e["c"] - e["b"]) ** 2 / (e["b"] + e["c"]) == approx(e["cmh"])
        if len(expected["seeds"]) > 1:
            assert v["n_seeds"] == len(expected["seeds"]) and "stratified" in v["test"]
            assert [r["delta"] for r in v["per_seed"]] == approx(e["per_seed_delta"])
        else:
            assert "per_seed" not in v
        assert ("not significant" in v["verdict"]) == (not e["significant"])
    assert comparison["verdict"]["winner"] == expected["winner"]
    assert comparison["statistics"]["correction"] == "holm"
    return {"expected": expected, "comparison": comparison}
