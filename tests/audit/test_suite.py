"""`pairlab audit --validate --suite`: detection metrics, the goal per noise type, pooled
counterfactual arms (pure, by hand), and the --quick suite end to end through the CLI (slow: CI
runs it; about 2 min of CPU time on the 2-core CPU here, more wall time under load)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pairlab import artifacts
from pairlab.audit.detection import detection_metrics
from pairlab.audit.suite import choose_default, counterfactual_goal, noise_goal, pooled_arms, results_markdown


def test_detection_metrics_by_hand():
    flag = np.array([True, True, False, False, False])
    score = np.array([-2.0, 0.5, -1.0, 1.0, 2.0])  # ranking by -score: f, c, F, c, c
    m = detection_metrics(flag, score)
    assert m["k"] == 2
    assert m["auroc"] == pytest.approx(5 / 6)            # 5 of 6 (mislabeled, clean) pairs ordered right
    assert m["auprc"] == pytest.approx((1 + 2 / 3) / 2)  # precision at each mislabeled hit: 1, 2/3
    assert m["precision_at_k"] == pytest.approx(0.5)     # the 2 lowest: one mislabeled
    assert detection_metrics(flag, np.full(5, np.nan))["auroc"] is None
    assert detection_metrics(np.zeros(5, bool), score)["precision_at_k"] is None


def _det(**aurocs):
    return {s: {"auroc": a, "auprc": None, "precision_at_k": None, "k": 3} for s, a in aurocs.items()}


def test_goal_per_noise_type_needs_every_seed():
    runs = {0: _det(tracin_cosine=0.90, datainf=0.95, confidence=0.80, rating_gap=0.6),
            1: _det(tracin_cosine=0.86, datainf=0.92, confidence=0.83, implicit_margin=0.85)}
    goal = noise_goal("length", runs, "tracin_cosine", 0.05)
    assert goal["per_seed"][1]["best_free"] == "implicit_margin"
    assert goal["per_seed"][0]["lead"] == pytest.approx(0.10) and goal["per_seed"][1]["lead"] == pytest.approx(0.01)
    assert goal["status"] == "not met" and not goal["met"]     # seed 1 leads by only 0.01
    assert goal["met_by"] == ["datainf"]                        # +0.15 and +0.07: on every seed
    tie = noise_goal("uniform", runs, "tracin_cosine", 0.05)
    assert tie["status"] == "not met"                           # 0.10 is no tie either
    even = {0: _det(tracin_cosine=0.90, confidence=0.89), 1: _det(tracin_cosine=0.85, confidence=0.87)}
    assert noise_goal("uniform", even, "tracin_cosine", 0.05)["status"].startswith("tie")
    assert noise_goal("marker", even, "tracin_cosine", 0.05)["status"] == "not met"


def test_default_score_is_chosen_across_every_seed_not_one():
    detections = {"length": {0: _det(tracin_cosine=0.99, ekfac=0.90, datainf=0.80, confidence=0.80),
                             1: _det(tracin_cosine=0.70, ekfac=0.88, datainf=0.85, confidence=0.80)},
                  "marker": {0: _det(tracin_cosine=0.95, ekfac=0.91, datainf=0.95, confidence=0.82)},
                  "uniform": {0: _det(tracin_cosine=0.50, ekfac=0.10, datainf=0.99, confidence=0.90)}}
    choice = choose_default(detections, 0.05)
    # tracin_cosine has the best single run (+0.19) but loses 0.10 on length seed 1; ekfac leads
    # on every systematic run (min +0.08); uniform flips do not count
    assert choice["score"] == "ekfac"
    assert choice["table"]["ekfac"]["min_lead"] == pytest.approx(0.08)
    assert choice["table"]["tracin_cosine"]["min_lead"] == pytest.approx(-0.10)
    assert choice["table"]["ekfac"]["wins"] == 3 and choice["runs"] == ["length-seed0", "length-seed1", "marker-seed0"]
    assert "influence_fisher" not in choice["table"]          # undefined on some run: not a candidate


def _frame(margins, correct):
    return pd.DataFrame({"pair_id": [f"e{i}" for i in range(len(margins))], "margin": margins, "correct": correct})


def test_pooled_arms_and_counterfactual_goal():
    rng = np.random.default_rng(0)
    per_seed = {}
    for seed in (0, 1, 2):
        base = rng.normal(0.5, 1.0, 60)
        per_seed[seed] = {"minus_random": _frame(base, base > 0),
                          "minus_default_x": _frame(base + 1.0, base + 1.0 > 0),
                          "minus_baseline_y": _frame(base + 0.2, base + 0.2 > 0)}
    pooled = pooled_arms(per_seed, "minus_random")
    assert pooled["seeds"] == [0, 1, 2] and pooled["n_pairs"] == 180
    arm = pooled["arms"]["minus_default_x"]
    low, high = arm["heldout_loss_ci95"]
    assert low <= arm["heldout_loss"] <= high and set(arm["per_seed"]) == {0, 1, 2}
    assert arm["vs_minus_random"]["heldout_loss"]["ci95"][1] < 0   # a larger margin: a lower loss
    frames = {a: pd.concat([per_seed[s][a] for s in (0, 1, 2)], ignore_index=True) for a in per_seed[0]}
    goal = counterfactual_goal({"frames": frames}, "minus_default_x", "minus_baseline_y")
    assert goal["met"] and goal["heldout_loss_difference"]["mean_difference"] < 0
    assert not counterfactual_goal({"frames": frames}, "minus_baseline_y", "minus_default_x")["met"]
    # the published table: one row per arm with its pooled figures, then the goal line
    result = {"counterfactual": {"noise": "length", "default_score": "x", "best_free_baseline": "y",
                                 "removed": {s: {"k": 20, "minus_default_x": 15 + int(s)} for s in ("0", "1", "2")},
                                 **json.loads(artifacts.to_json({k: v for k, v in pooled.items() if k != "frames"}))},
              "goal": {"counterfactual": goal}}
    text = results_markdown(result)
    row = next(line for line in text.splitlines() if line.startswith("| minus_default_x |"))
    assert "15/20, 16/20, 17/20" in row and f"{arm['heldout_loss']:.3f} ({low:.3f}–{high:.3f})" in row
    assert f"{100 * arm['per_seed'][1]['accuracy']:.1f}" in row.split("|")[-2]
    diff = goal["heldout_loss_difference"]
    assert f"**met**; loss difference (default − baseline) {diff['mean_difference']:+.3f}" in text
    assert "counterfactual" not in results_markdown({"goal": {}})


@pytest.fixture(scope="module")
def quick_suite(tmp_path_factory):
    from pairlab.cli import main

    out = tmp_path_factory.mktemp("suite") / "quick"
    ref = out.parent / "ref"
    code = main(["audit", "--validate", "--suite", "--quick", "--out", str(out), "--set", f"ref_cache_dir={ref}"])
    assert code == 0
    return out, ref


#: AUROC of every non-free score in the --quick suite (seed 0, tiny-random-llama), as
#: docs/results/audit-suite.md reports them. The run is deterministic on CPU; TOLERANCE allows for
#: another BLAS / thread count reordering a few of the 3 x 12 to 4 x 12 (mislabeled, clean)
#: comparisons (each one moves AUROC by 0.02 - 0.03).
QUICK_AUROC = {
    "uniform": {"tracin": 0.594, "tracin_cosine": 0.552, "self_influence": 0.156, "datainf": 0.781,
                "influence_fisher": 0.469, "ekfac": 0.844, "rank_average": 0.542},
    "length": {"tracin": 0.775, "tracin_cosine": 0.708, "self_influence": 0.625, "datainf": 0.892,
               "influence_fisher": 0.608, "ekfac": 0.908, "rank_average": 0.717},
    "marker": {"tracin": 0.682, "tracin_cosine": 0.682, "self_influence": 0.445, "datainf": 0.664,
               "influence_fisher": 0.5, "ekfac": 0.682, "rank_average": 0.745},
}
TOLERANCE = 0.1


@pytest.mark.slow
def test_quick_suite_writes_every_metric_and_the_goal(quick_suite):
    from pairlab.audit import ATTRIBUTION_SCORES, AuditConfig

    out, _ = quick_suite
    result = artifacts.read_json(out / "validation.json")
    assert result == artifacts.read_json(out / "suite.json") and result["status"] == "done"
    assert len(result["detection"]) >= 3
    free = [n for n, s in ATTRIBUTION_SCORES.items() if s.free]
    influence = [n for n, s in ATTRIBUTION_SCORES.items() if s.kind == "influence"]
    assert len(influence) >= 2 and {"lossdiff", "lossdiff_irm", "confidence"} <= set(free)
    for noise, table in result["detection"].items():
        for score in [*free, *influence, "tracin", "tracin_cosine"]:
            assert {"auroc", "auprc", "precision_at_k"} <= set(table[score]), (noise, score)
        assert all(table[s]["auroc"] is not None for s in [*free, *influence]), noise
        goal = result["goal"]["auroc"][noise]
        assert goal["status"] in ("met", "not met", "tie (acceptable on uniform flips)")
        assert result["goal"]["met_by"][noise] == goal["met_by"]
        run = result["runs"][f"{noise}-seed0"]["data"]
        assert run["noise"] == noise and run["n_mislabeled"] >= 3
        # the default score and every influence method at the level the docs report, less TOLERANCE
        for score in {AuditConfig().harmful_score, result["default_score"], *influence}:
            assert table[score]["auroc"] >= QUICK_AUROC[noise][score] - TOLERANCE, (noise, score)
    # EK-FAC is above chance on every noise type
    assert all(result["detection"][n]["ekfac"]["auroc"] >= 0.65 for n in QUICK_AUROC)
    assert result["default_choice"]["runs"] == ["length-seed0", "marker-seed0"]
    assert result["default_choice"]["score"] in result["default_choice"]["table"]
    flagged = pd.read_parquet(out / "runs" / "marker-seed0" / "curate" / "pairs.parquet")
    assert (flagged.loc[flagged["flipped"], "noise_type"] == "marker").all()


@pytest.mark.slow
@pytest.mark.heavy
def test_suite_counterfactual_resumes_the_quick_runs(quick_suite):
    """The counterfactual arms on top of the finished quick runs (they are reused, not redone)."""
    from pairlab.audit.suite import QUICK, SuiteConfig, run_suite

    out, ref = quick_suite
    before = artifacts.read_json(out / "suite.json")
    cfg = SuiteConfig(**{**QUICK, "noise_types": ["length"], "counterfactual": True, "ref_cache_dir": str(ref)})
    result = run_suite(cfg, out)
    assert result["runs"]["length-seed0"]["wall_time_s"] < 5  # reused
    assert result["detection"]["length"] == before["detection"]["length"]
    cf = result["counterfactual"]
    assert cf["noise"] == "length" and cf["seeds"] == [0]
    default, baseline = cf["default_score"], cf["best_free_baseline"]
    assert {"full", "clean", "minus_random", f"minus_default_{default}", f"minus_baseline_{baseline}"} == set(cf["arms"])
    for arm in cf["arms"].values():
        low, high = arm["heldout_loss_ci95"]
        assert low <= arm["heldout_loss"] <= high and 0 <= arm["accuracy"] <= 1
    assert "vs_minus_random" in cf["arms"]["clean"]
    assert set(cf["base_effect"]) >= {"accuracy_noisy", "accuracy_clean", "measurable"}
    assert result["goal"]["counterfactual"]["status"] in ("met", "not met")
    text = results_markdown(result)  # what `python -m pairlab.audit.suite OUT` prints
    for name, arm in cf["arms"].items():
        assert f"| {name} |" in text and f"{arm['heldout_loss']:.3f}" in text
    assert f"**{result['goal']['counterfactual']['status']}**" in text


def test_suite_quantization_reaches_every_run_and_is_checked():
    from pairlab.audit.suite import SuiteConfig, validate_config
    from pairlab.errors import ConfigError

    cfg = SuiteConfig(quantization="none", noise_types=["length"], seeds=[3]).validate()
    run = validate_config(cfg, "length", 3)
    assert (run.quantization, run.noise, run.seed) == ("none", "length", 3)
    default = validate_config(SuiteConfig().validate(), "marker", 0)
    assert default.quantization == "none" and default.save_steps == default.max_steps == 40  # one checkpoint
    assert validate_config(SuiteConfig(max_steps=80).validate(), "marker", 0).save_steps == 80  # still one
    assert validate_config(SuiteConfig(quantization="4bit").validate(), "marker", 0).quantization == "4bit"
    with pytest.raises(ConfigError, match="quantization"):
        SuiteConfig(quantization="8bit").validate()
