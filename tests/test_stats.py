"""pairlab.stats: MDE, the pooled-seed test, Holm and the wording, against hand-computed
cases, scipy and statsmodels."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import normal_power_het

from pairlab import stats
from stats_reference import cmh_statistic, holm_by_hand, mcnemar_exact_p, mde_by_root


def test_mde_hand_computed_case():
    # n = 100, psi = 0.3, alpha = .05, power = .8:
    # A = 1.959964 * sqrt(.3) = 1.073516, B = 0.841621, B^2 = 0.708326
    # delta = (A*10 + B*sqrt(100.708326*.3 - A^2)) / 100.708326
    #       = (10.73516 + 0.841621*sqrt(30.212498 - 1.152437)) / 100.708326 = 15.27213 / 100.708326
    assert stats.mde(100, 0.3) == pytest.approx(0.151647, abs=2e-6)
    # statsmodels evaluates the same (heterogeneous-variance normal) power function: 80% there.
    d = stats.mde(100, 0.3)
    assert normal_power_het(d, 100, 0.05, math.sqrt(0.3), math.sqrt(0.3 - d * d)) == pytest.approx(0.8, abs=1e-5)


@pytest.mark.parametrize("n, psi", [(48, 0.4), (48, 0.25), (200, 0.1), (1000, 0.05), (30, 0.5)])
def test_mde_matches_the_root_of_statsmodels_power(n, psi):
    assert stats.mde(n, psi) == pytest.approx(mde_by_root(n, psi), abs=1e-6)


def test_pairs_needed_hand_case_and_round_trip():
    # (1.959964*sqrt(.3) + 0.841621*sqrt(.3 - .0025))^2 / .0025 = 1.532571^2 / .0025 = 939.5 -> 940
    assert stats.pairs_needed(0.05, 0.3) == 940
    assert stats.mde(940, 0.3) <= 0.05 < stats.mde(939, 0.3)
    assert stats.pairs_needed(0.4, 0.3) is None  # accuracy cannot differ by more than the discordance


def test_mde_is_none_when_too_few_pairs_differ():
    # (n + B^2) psi < A^2: (3 + 0.708) * 0.2 = 0.74 < 1.96^2 * 0.2 = 0.77: no delta reaches 80%
    assert stats.mde(3, 0.2) is None and mde_by_root(3, 0.2) is None
    assert stats.mde(100, 0.0) is None and stats.mde(0, 0.3) is None


def test_exact_mcnemar_has_about_the_planned_power_at_the_mde():
    """Simulate the design at its MDE: the exact test (slightly conservative) rejects ~80%."""
    n, psi = 200, 0.3
    d = stats.mde(n, psi)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(n, [(psi - d) / 2, (psi + d) / 2, 1 - psi], size=20000)
    b, c = counts[:, 0], counts[:, 1]
    p = np.minimum(1.0, 2 * sps.binom.cdf(np.minimum(b, c), b + c, 0.5))
    assert 0.74 < np.mean(p < 0.05) < 0.82


def test_paired_comparison_orientation_and_counts():
    baseline = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 0], bool)
    other = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    c = stats.paired_comparison(baseline, other, n_boot=500)
    assert c["delta"] == pytest.approx(0.2) and c["accuracy_other"] == 0.8
    assert (c["baseline_only_correct"], c["other_only_correct"], c["n_discordant"]) == (1, 3, 4)
    assert c["p_value"] == pytest.approx(0.625)  # 2 * P(X <= 1 | 4, .5) = 2 * 5/16
    assert c["p_value"] == pytest.approx(sps.binomtest(1, 4, 0.5).pvalue)
    assert c["p_value"] == pytest.approx(mcnemar_exact_p(baseline, other))
    assert c["discordance_rate"] == 0.4 and c["mde"] == stats.mde(10, 0.4)
    assert c["delta_ci95"][0] <= 0.2 <= c["delta_ci95"][1]
    swapped = stats.paired_comparison(other, baseline, n_boot=500)
    assert swapped["delta"] == pytest.approx(-0.2) and swapped["baseline_only_correct"] == 3


def test_pooled_seeds_is_one_stratified_mcnemar():
    rng = np.random.default_rng(4)
    baseline = rng.random((3, 60)) < 0.6
    other = np.where(rng.random((3, 60)) < 0.3, ~baseline, baseline) | (rng.random((3, 60)) < 0.15)
    c = stats.paired_comparison(baseline, other, seeds=[0, 1, 2], n_boot=500)
    b_tot = sum(int((baseline[s] & ~other[s]).sum()) for s in range(3))
    c_tot = sum(int((~baseline[s] & other[s]).sum()) for s in range(3))
    assert (c["baseline_only_correct"], c["other_only_correct"]) == (b_tot, c_tot)
    assert c["n_pairs"] == 180 and c["n_seeds"] == 3 and c["n_pairs_per_seed"] == 60
    # McNemar's chi-square on the pooled counts is the Mantel-Haenszel statistic over (pair, seed) strata
    assert (c_tot - b_tot) ** 2 / (b_tot + c_tot) == pytest.approx(cmh_statistic(baseline, other))
    assert c["p_value"] == pytest.approx(sps.binomtest(b_tot, b_tot + c_tot, 0.5).pvalue)
    assert c["p_value"] == pytest.approx(mcnemar_exact_p(baseline, other))
    assert c["mde"] == pytest.approx(mde_by_root(180, (b_tot + c_tot) / 180), abs=1e-6)
    assert [r["seed"] for r in c["per_seed"]] == [0, 1, 2]
    for s, r in enumerate(c["per_seed"]):
        assert r["delta"] == pytest.approx(other[s].mean() - baseline[s].mean())
    assert c["per_seed_delta_sd"] == pytest.approx(np.std([r["delta"] for r in c["per_seed"]], ddof=1))
    assert c["delta"] == pytest.approx(np.mean([r["delta"] for r in c["per_seed"]]))
    assert c["delta_ci95"][0] < c["delta"] < c["delta_ci95"][1]


def test_hierarchical_bootstrap_carries_the_seed_spread():
    # Every pair moves by the seed's own shift: pairs alone look certain, seeds do not.
    diff = np.repeat(np.array([[-0.2], [0.0], [0.4]]), 50, axis=1)
    lo, hi = stats.hierarchical_bootstrap_ci(diff, n_boot=2000, seed=0)
    assert lo <= -0.1 and hi >= 0.3
    assert stats.hierarchical_bootstrap_ci(diff[:1], n_boot=200) == pytest.approx([-0.2, -0.2])


def test_holm_by_hand_and_significance():
    p = [0.01, 0.04, 0.03]
    # sorted: .01*3 = .03; .03*2 = .06; .04*1 = .04 -> running max .06
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_by_hand(p) == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(1)
    ps = list(rng.random(7) ** 3)
    assert stats.holm(ps) == pytest.approx(holm_by_hand(ps))
    comparisons = [{"p_value": q, "delta": 0.1, "delta_ci95": [0.0, 0.2], "mde": 0.2, "n_pairs": 48,
                    "n_discordant": 10} for q in p]
    out = stats.with_holm(comparisons)
    assert [c["significant"] for c in out] == [True, False, False]
    assert all(c["correction"] == "holm" and c["n_comparisons"] == 3 for c in out)


def test_verdict_wording_states_power_and_correction():
    c = {"p_value": 0.21, "p_holm": 0.42, "n_comparisons": 2, "significant": False, "delta": -0.146,
         "delta_ci95": [-0.3, 0.02], "mde": 0.27, "n_pairs": 48, "n_discordant": 19}
    text = stats.describe(c)
    assert text == ("-14.6 points (95% CI -30.0 to +2.0), not significant (p = 0.21, Holm-corrected 0.42); "
                    "with 48 pairs this design detects only differences ≥ 27 points")
    assert stats.describe({**c, "p_value": 0.001, "p_holm": 0.002, "significant": True}) == (
        "-14.6 points (95% CI -30.0 to +2.0), significant (p = 0.001, Holm-corrected 0.002); "
        "with 48 pairs this design detects differences ≥ 27 points")
    pooled = {**c, "n_seeds": 3, "n_pairs_per_seed": 48, "n_pairs": 144}
    assert "with 48 pairs × 3 seeds this design" in stats.describe(pooled)
    assert "with 48 pairs (2 discordant) this design cannot detect any difference with 80% power" in \
        stats.describe({**c, "mde": None, "n_discordant": 2})


def test_one_verdict_rule_for_compare_ablate_and_validation():
    """stats.verdict: a winner only where the Holm-corrected test detected one; the words state
    the correction and what an undetected difference could have been."""
    rng = np.random.default_rng(0)
    base = rng.random(200) < 0.5
    much_better = base | (rng.random(200) < 0.6)   # clearly above the baseline
    same = base.copy()
    same[:4] = ~same[:4]                          # 4 discordant pairs: nothing detectable
    compared = dict(zip(["better", "same"], stats.with_holm(
        [stats.paired_comparison(base, much_better), stats.paired_comparison(base, same)])))
    v = stats.verdict({**compared, "untested": None}, "base")
    assert v["winner"] == "better" and v["better"] == ["better"] and v["worse"] == []
    assert v["n_comparisons"] == 2 and "Holm correction over 2 comparisons" in v["text"]
    assert "Not detectably different from the baseline: 'same'" in v["text"]
    nothing = stats.verdict({"same": stats.with_holm([compared["same"]])[0]}, "base", noun="evaluation")
    assert nothing["winner"] is None and "No evaluation differs detectably" in nothing["text"]
    assert "this design" in nothing["text"] and "one comparison (no correction)" in nothing["text"]
    worse = stats.verdict({"worse": stats.with_holm([stats.paired_comparison(much_better, base)])[0]}, "base")
    assert worse["winner"] == "base" and worse["worse"] == ["worse"]
    assert stats.verdict({}, "base")["winner"] is None
