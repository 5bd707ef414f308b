"""The pure parts: cartography, baselines, TracIn arithmetic, AUROC, removal sets, config."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairlab.audit import baseline_scores, cartography, rank_average, tracin, tracin_terms
from pairlab.audit.attribution import GRADIENT_SCORES, checkpoint_terms, checkpoint_weights
from pairlab.audit.validate import (auroc, choose_scores, compare_arms, counterfactual_goal, goal_status,
                                    removal_sets)
from pairlab.config import ConfigError


def test_cartography_confidence_variability_and_regions():
    dyn = pd.DataFrame({"pair_id": ["a", "a", "b", "b", "c", "c"],
                        "margin": [4.0, 4.0, -3.0, -3.0, -4.0, 4.0]})
    carto = cartography(dyn).set_index("pair_id")
    sig = 1 / (1 + np.exp(-4.0))
    assert carto.loc["a", "confidence"] == pytest.approx(sig)
    assert carto.loc["a", "variability"] == pytest.approx(0.0)
    assert carto.loc["c", "confidence"] == pytest.approx(0.5)
    assert carto.loc["c", "variability"] == pytest.approx(sig - 0.5)
    assert carto.loc["c", "correctness"] == pytest.approx(0.5)
    assert dict(carto["region"]) == {"a": "easy", "b": "hard-to-learn", "c": "ambiguous"}
    assert (carto["passes"] == 2).all()


def test_cartography_single_pass_has_no_ambiguous_region():
    carto = cartography(pd.DataFrame({"pair_id": ["a", "b"], "margin": [1.0, -1.0]}))
    assert list(carto["region"]) == ["easy", "hard-to-learn"]


def test_baselines_by_hand():
    pairs = pd.DataFrame({"pair_id": ["p", "q"], "score_chosen": [5.0, 3.0], "score_rejected": [2.0, 3.5]})
    for side in ("chosen", "rejected"):
        for aspect in ("instruction_following", "honesty", "truthfulness", "helpfulness"):
            pairs[f"{side}_{aspect}"] = np.nan
    policy = pd.DataFrame({"chosen_logps": [-10.0, -20.0], "rejected_logps": [-14.0, -18.0]})
    ref = pd.DataFrame({"chosen_logps": [-12.0, -19.0], "rejected_logps": [-13.0, -19.0]})
    carto = pd.DataFrame({"pair_id": ["q", "p"], "confidence": [0.3, 0.8]})
    s = baseline_scores(pairs, policy, ref, carto, beta=0.5)
    assert list(s["rating_gap"]) == [3.0, 0.5]
    assert list(s["policy_margin"]) == [4.0, -2.0]
    assert list(s["base_margin"]) == [1.0, 0.0]
    assert s["implicit_margin"].tolist() == pytest.approx([0.5 * (2 - -1), 0.5 * (-1 - 1)])
    ls = lambda x: -np.log1p(np.exp(-x))  # noqa: E731
    assert s["loss_difference"].iloc[0] == pytest.approx(-ls(0.5) + ls(2.0))
    assert list(s["confidence"]) == [0.8, 0.3]
    assert rank_average(s, ["policy_margin", "base_margin"]).tolist() == [1.0, 0.5]


def test_tracin_is_lr_weighted_sum_of_dots_with_mean_eval_gradient():
    rng = np.random.default_rng(0)
    train = [rng.normal(size=(5, 7)) for _ in range(3)]
    held = [rng.normal(size=(4, 7)) for _ in range(3)]
    weights = [3e-4, 2e-4, 1e-4]
    got = tracin([tracin_terms(t, e) for t, e in zip(train, held)], weights)
    brute = np.zeros(5)
    for t, e, w in zip(train, held, weights):
        for i in range(5):
            for j in range(4):
                brute[i] += w * float(t[i] @ e[j]) / 4
    np.testing.assert_allclose(got, brute, rtol=1e-10)


def test_checkpoint_weights_average_the_interval():
    rates = pd.Series({1: 4.0, 2: 3.0, 3: 2.0, 4: 1.0, 5: 0.0})
    assert checkpoint_weights([2, 5], rates, 9.0) == [3.5, 1.0]
    assert checkpoint_weights([7], pd.Series(dtype=float), 9.0) == [9.0]


def test_auroc_flags_low_scores():
    flag = np.array([True, True, False, False, False])
    assert auroc(flag, np.array([-2.0, -1.0, 0.5, 1.0, 2.0])) == 1.0
    assert auroc(flag, np.array([2.0, 1.0, 0.5, -1.0, -2.0])) == 0.0
    assert auroc(np.zeros(3, bool), np.arange(3.0)) is None


def test_removal_sets_and_arm_comparison():
    scores = pd.DataFrame({"pair_id": list("abcdef"), "tracin": [5, -9, 1, -3, 2, 0.0],
                           "policy_margin": [-1, 2, 3, 4, 5, 6.0]})
    arms = removal_sets(scores, 2, {"tracin": "tracin", "policy_margin": "policy_margin"}, seed=0)
    assert arms["minus_tracin"] == ["b", "d"]
    assert arms["minus_policy_margin"] == ["a", "b"]
    assert len(set(arms["minus_random"])) == 2
    correct = {"minus_random": np.array([1, 0, 1, 0], bool), "minus_tracin": np.array([1, 1, 1, 0], bool)}
    out = compare_arms(correct, "minus_random", seed=0)
    assert out["minus_tracin"]["accuracy"] == 0.75
    vs = out["minus_tracin"]["vs_minus_random"]  # delta = arm - minus_random; b, c in that orientation
    assert vs["delta"] == pytest.approx(0.25)
    assert (vs["baseline_only_correct"], vs["other_only_correct"]) == (0, 1)
    assert vs["p_value"] == 1.0 and vs["p_holm"] == 1.0 and not vs["significant"]


def test_audit_config_rejects_unknown_scores():
    from pairlab.audit import AuditConfig

    with pytest.raises(ConfigError, match="unknown score"):
        AuditConfig(harmful_score="nope").validate()
    with pytest.raises(ConfigError):
        AuditConfig(proj_dim=0).validate()


def test_checkpoint_terms_by_hand():
    train = np.array([[3.0, 4.0], [-1.0, 0.0], [0.0, 0.0]])
    held = np.array([[2.0, 0.0], [0.0, 3.0]])          # mean gradient (1, 1.5); mean direction (.5, .5)
    terms = checkpoint_terms(train, held)
    assert set(terms) == set(GRADIENT_SCORES)
    np.testing.assert_allclose(terms["tracin"], [9.0, -1.0, 0.0])
    # mean over held-out pairs of the cosine; a zero gradient has no direction
    np.testing.assert_allclose(terms["tracin_cosine"], [(0.6 + 0.8) / 2, -0.5, 0.0])
    with_zero = checkpoint_terms(train, np.array([[2.0, 0.0], [0.0, 0.0]]))["tracin_cosine"]
    np.testing.assert_allclose(with_zero, [0.3, -0.5, 0.0])  # a zero held-out gradient votes 0
    np.testing.assert_allclose(terms["self_influence"], [-25.0, -1.0, 0.0])


def test_choose_scores_and_goal():
    aurocs = {"tracin": 0.93, "self_influence": None, "rank_average": 0.95, "implicit_margin": 0.9,
              "policy_margin": 0.94}
    chosen = choose_scores(aurocs)
    assert chosen == {"best": "rank_average", "best_gradient": "rank_average", "best_baseline": "policy_margin"}
    goal = goal_status(aurocs, chosen["best_baseline"])
    assert goal["met_by"] == ["rank_average"] and goal["met"]
    assert goal["beats_best_baseline"] == ["rank_average"]
    assert not goal_status({"tracin": 0.91, "policy_margin": 0.5}, "policy_margin")["met"]
    with pytest.raises(ValueError):
        choose_scores({"tracin": None})


def test_counterfactual_goal_compares_with_random_and_baseline():
    margins = {"minus_random": np.array([0.0, 0.0, -1.0, 1.0]), "minus_tracin": np.array([2.0, 1.0, 1.0, -1.0]),
               "minus_policy_margin": np.array([0.5, 0.5, 0.5, -0.5])}
    correct = {arm: m > 0 for arm, m in margins.items()}
    arms = compare_arms(correct, "minus_random", seed=0, margins=margins)
    # held-out DPO loss = -log sigmoid(margin), by hand for the random arm
    expected = np.mean([np.log(2), np.log(2), np.log1p(np.e), np.log1p(np.exp(-1))])
    assert arms["minus_random"]["heldout_loss"] == pytest.approx(expected)
    diff = arms["minus_tracin"]["vs_minus_random"]["heldout_loss"]["mean_difference"]
    assert diff == pytest.approx(arms["minus_tracin"]["heldout_loss"] - expected)
    goal = counterfactual_goal(arms, "tracin", "policy_margin", margins, seed=0)
    assert arms["minus_tracin"]["accuracy"] == arms["minus_policy_margin"]["accuracy"] == 0.75
    assert goal["beats_random"] is True and goal["beats_best_baseline"] is False  # a tie is no win
    assert goal["beats_best_baseline_on_loss"] == (arms["minus_tracin"]["heldout_loss"]
                                                   < arms["minus_policy_margin"]["heldout_loss"])
    assert "vs_best_baseline_heldout_loss" in goal
    assert counterfactual_goal(arms, None, "policy_margin")["beats_random"] is None


def test_example_validation_config_loads():
    """examples/audit-validate-400.yaml (the README's demo-like validation) is a valid ValidateConfig."""
    from pathlib import Path

    from pairlab.audit import ValidateConfig
    from pairlab.config import load_config

    path = Path(__file__).resolve().parents[2] / "examples" / "audit-validate-400.yaml"
    cfg = load_config(ValidateConfig, str(path), []).validate()
    assert (cfg.n, cfg.n_eval, cfg.max_steps, cfg.max_length, cfg.max_checkpoints) == (400, 100, 100, 128, 3)
    with pytest.raises(ConfigError, match="unknown ranking"):
        load_config(ValidateConfig, str(path), ["rankings=[nope]"]).validate()
