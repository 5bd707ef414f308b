"""Every metric on hand-computed examples."""
import math

import numpy as np
import pandas as pd
import pytest

from pairlab.evaluate import metrics, stats


def _tables():
    pairs = pd.DataFrame({"pair_id": ["a", "b", "c", "d"],
                          "source": ["s1", "s1", "s2", "s2"],
                          "score_chosen": [5.0, 4.0, 3.0, 5.0],
                          "score_rejected": [1.0, 3.5, 3.0, 2.0]})
    # policy/ref summed log-probs chosen so the margins are hand-checkable with beta=0.5
    policy = pd.DataFrame({"pair_id": ["d", "c", "b", "a"],  # any order: joined by id
                           "chosen_logps": [-10.0, -8.0, -12.0, -10.0],
                           "rejected_logps": [-10.0, -8.0, -9.0, -14.0],
                           "chosen_tokens": [5, 4, 6, 10], "rejected_tokens": [5, 8, 3, 7]})
    ref = pd.DataFrame({"pair_id": ["a", "b", "c", "d"],
                        "chosen_logps": [-11.0, -11.0, -8.0, -10.0],
                        "rejected_logps": [-12.0, -11.0, -8.0, -12.0]})
    return pairs, policy, ref


def test_per_pair_rewards_margins_and_correctness():
    pairs, policy, ref = _tables()
    pp = metrics.per_pair_table(pairs, policy, ref, beta=0.5)
    pp = pp.set_index("pair_id")
    # a: chosen reward 0.5*(-10+11)=0.5 ; rejected 0.5*(-14+12)=-1 ; margin 1.5
    assert pp.loc["a", "chosen_reward"] == pytest.approx(0.5)
    assert pp.loc["a", "rejected_reward"] == pytest.approx(-1.0)
    assert pp.loc["a", "margin"] == pytest.approx(1.5)
    # b: 0.5*(-12+11)=-0.5 ; 0.5*(-9+11)=1 ; margin -1.5 -> wrong
    assert pp.loc["b", "margin"] == pytest.approx(-1.5) and not pp.loc["b", "correct"]
    # c: policy == ref -> exact tie, not correct
    assert pp.loc["c", "tie"] and not pp.loc["c", "correct"]
    # d: chosen 0, rejected 0.5*(-10+12)=1 -> margin -1
    assert pp.loc["d", "margin"] == pytest.approx(-1.0)
    # reference-free: a: -10 > -14 yes; b: -12 > -9 no; per-token: b -2 vs -3 -> yes
    assert pp.loc["a", "ref_free_correct"] and not pp.loc["b", "ref_free_correct"]
    assert pp.loc["b", "ref_free_correct_norm"]
    assert pp.loc["a", "policy_chosen_logps_mean"] == pytest.approx(-1.0)
    assert pp.loc["a", "rating_gap"] == 4.0 and pp.loc["b", "rating_gap"] == 0.5
    assert bool(pp.loc["a", "chosen_longer"]) and not bool(pp.loc["c", "chosen_longer"])


def test_missing_logps_are_an_error():
    pairs, policy, ref = _tables()
    with pytest.raises(KeyError, match="missing"):
        metrics.per_pair_table(pairs, policy.iloc[:2], ref, beta=0.1)


def test_summary_on_hand_example():
    pairs, policy, ref = _tables()
    pp = metrics.per_pair_table(pairs, policy, ref, beta=0.5)
    m = metrics.summarize(pp, beta=0.5, n_boot=500)
    assert m["accuracy"] == 0.25 and m["ties"] == 1 and m["n_pairs"] == 4
    assert m["mean_margin"] == pytest.approx((1.5 - 1.5 + 0 - 1.0) / 4)
    assert m["median_margin"] == pytest.approx(-0.5)
    assert m["mean_margin_over_beta"] == pytest.approx(m["mean_margin"] / 0.5)
    assert m["ref_free_accuracy"] == 0.25  # only a: -10 > -14 (c, d equal; b lower)
    lo, hi = m["accuracy_ci95"]
    assert 0.0 <= lo <= 0.25 <= hi <= 1.0
    by_source = {r["group"]: r for r in m["by_source"]}
    assert by_source["s1"]["accuracy"] == 0.5 and by_source["s2"]["accuracy"] == 0.0
    # spearman of margins [1.5,-1.5,0,-1] with gaps [4,0.5,0,3]
    from scipy.stats import spearmanr
    assert m["spearman_margin_rating_gap"] == pytest.approx(spearmanr([1.5, -1.5, 0, -1], [4, .5, 0, 3]).statistic)


def test_ref_free_accuracy_counts():
    pairs, policy, ref = _tables()
    pp = metrics.per_pair_table(pairs, policy, ref, beta=0.5)
    # a: -10 > -14 ; b: -12 < -9 ; c: -8 == -8 ; d: -10 == -10
    assert pp["ref_free_correct"].tolist() == [True, False, False, False]


def test_calibration_hand_computed():
    # margins 0 -> p=.5 ; symmetrized: (0.5,1),(0.5,0): ECE 0, Brier .25, AUROC .5
    c = metrics.calibration(np.array([0.0, 0.0]))
    assert c["ece"] == pytest.approx(0.0) and c["brier"] == pytest.approx(0.25)
    assert c["auroc"] == pytest.approx(0.5)
    # large positive margins: confident and right -> Brier ~0, AUROC 1
    c = metrics.calibration(np.array([20.0, 30.0]))
    assert c["brier"] < 1e-8 and c["auroc"] == 1.0
    # with true labels: p=sigmoid(ln 3)=.75 for both, labels [1,0] -> Brier (.0625+.5625)/2
    c = metrics.calibration(np.array([math.log(3), math.log(3)]), labels=np.array([1, 0]))
    assert c["brier"] == pytest.approx(0.3125)
    assert c["ece"] == pytest.approx(0.25)  # one bin: |0.5 - 0.75|
    assert sum(b["n"] for b in c["reliability"]) == 2


def test_true_accuracy_uses_ground_truth():
    pp = pd.DataFrame({"correct": [True, False, True], "margin": [1.0, -1.0, 2.0],
                       "tie": [False] * 3, "chosen_reward": [0.0] * 3, "rejected_reward": [0.0] * 3,
                       "ref_free_correct": [True] * 3, "ref_free_correct_norm": [True] * 3,
                       "chosen_longer": [True, False, True],
                       "true_preference_correct": [True, False, False]})
    m = metrics.summarize(pp, beta=0.1, n_boot=100)
    # pair 2 mislabeled and the model prefers the labelled rejected (margin<0): truly right.
    # pair 3 mislabeled and the model follows the label: truly wrong.
    assert m["true_accuracy"] == pytest.approx(2 / 3)
    assert m["label_noise_rate"] == pytest.approx(2 / 3)


def test_gap_buckets():
    b = metrics.gap_bucket(pd.Series([-1.0, 0.0, 0.5, 1.0, 2.5, 7.0]))
    assert b.astype(str).tolist() == ["[-inf, 0)", "[0, 1)", "[0, 1)", "[1, 2)", "[2, 3)", "[3, inf)"]


def test_mcnemar_exact_matches_binomial():
    a = np.array([1, 1, 1, 1, 1, 0, 0, 1], bool)
    b = np.array([0, 0, 0, 0, 1, 0, 1, 1], bool)
    r = stats.mcnemar_exact(a, b)  # a is the baseline, b the other evaluation
    assert (r["baseline_only_correct"], r["other_only_correct"]) == (4, 1)
    # two-sided exact: 2 * P(X<=1 | n=5, .5) = 2 * 6/32; mid-p subtracts P(X=1) = 5/32
    assert r["p_value"] == pytest.approx(12 / 32)
    assert r["p_value_mid"] == pytest.approx(12 / 32 - 5 / 32)
    assert stats.mcnemar_exact(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError):
        stats.mcnemar_exact(a, b[:3])


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(size=200)
    assert stats.bootstrap_ci(x, seed=3) == stats.bootstrap_ci(x, seed=3)
    lo, hi = stats.bootstrap_ci(x, seed=3)
    assert lo < x.mean() < hi
    r = stats.paired_bootstrap(x, x + 1.0, n_boot=500)
    assert r["mean_difference"] == pytest.approx(1.0) and r["ci95"][0] > 0.5 and r["p_value"] < 0.01
    r0 = stats.paired_bootstrap(x, x, n_boot=500)
    assert r0["mean_difference"] == 0.0 and r0["p_value"] == 1.0
