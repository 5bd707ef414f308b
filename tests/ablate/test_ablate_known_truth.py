"""A two-arm ablation on SmolLM2-135M (full-precision LoRA: 4-bit training is tested in
tests/train/test_e2e.py, and costs 1.7x the step time) whose truth is known: the verdict must point the right way.

The pool is simulated with (nearly) exact raters, then exactly half its labels are flipped and
the two halves become two sources: arm `clean` trains on the untouched half, arm `flipped` on
the half whose every label is wrong. Both train the same steps from the same base and are
evaluated on the same clean held-out pairs. A DPO run on reversed preferences learns to prefer
the worse answer, so the truth is extreme: `clean` must be better, the delta (other - baseline)
must have the right sign in both orientations, and the verdict's words must agree with its p,
its correction and its MDE (recomputed independently from the per_pair files).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from pairlab.cli import main
from stats_reference import assert_comparison_matches

pytestmark = pytest.mark.slow

STEPS = 5  # x batch 4 = 20 of each arm's ~25 pairs


@pytest.fixture(scope="module")
def known_truth(tmp_path_factory):
    from pairlab.io import write_pairs
    from pairlab.simulate import inject_noise, simulate_pairs

    root = tmp_path_factory.mktemp("ablate-truth")
    # raters that see the truth, no planted length bias or padding: every label is right before flipping
    train, held_out = simulate_pairs(n=90, seed=5, length="short", eval_fraction=0.45, rater_noise=0.3,
                                     length_bias=0.0, padding_rate=0.0, tie_rate=0.0,
                                     overall_score_bug_rate=0.0)
    pool = inject_noise(train, 0.5, "uniform", seed=0)  # exactly half the labels swapped
    pool["source"] = np.where(pool["flipped"], "flipped", "clean")
    write_pairs(pool, root / "pool.parquet")
    write_pairs(held_out, root / "eval.parquet")
    config = {
        "name": "known truth: clean vs flipped labels",
        "pool": {"input": str(root / "pool.parquet"), "eval_from": str(root / "eval.parquet")},
        "baseline": "clean",
        "budget": {"unit": "steps", "value": STEPS},
        "seeds": [0],
        "evaluate_base": False,
        "curate": {"max_length": 128},
        "train": {"model": "smollm2-135m-instruct", "quantization": "none", "save_steps": 50,
                  "dpo": {"per_device_train_batch_size": 4, "max_length": 128, "learning_rate": 5.0e-4,
                          "beta": 0.1, "warmup_steps": 0}},
        "eval": {"batch_size": 16, "generate": False},
        "arms": [{"name": "clean", "filters": [{"keep_sources": ["clean"]}]},
                 {"name": "flipped", "filters": [{"keep_sources": ["flipped"]}]}],
    }
    path = root / "ablation.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = root / "out"
    assert main(["ablate", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    return {"out": out, "config": path, "pool": pool, "eval": held_out,
            "comparison": json.loads((out / "comparison.json").read_text(encoding="utf-8"))}


def arm(comparison, name):
    return next(a for a in comparison["arms"] if a["name"] == name)


def test_the_truth_is_what_the_test_says(known_truth):
    c = known_truth["comparison"]
    assert known_truth["pool"]["flipped"].sum() == len(known_truth["pool"]) // 2
    assert arm(c, "flipped")["true_label_noise"] == 1.0  # every training label wrong
    assert arm(c, "clean")["true_label_noise"] == 0.0
    assert arm(c, "clean")["pairs_kept"] + arm(c, "flipped")["pairs_kept"] == len(known_truth["pool"])
    assert c["eval"]["rows"] == len(known_truth["eval"])


def test_clean_labels_beat_flipped_labels_and_the_delta_points_that_way(known_truth):
    c = known_truth["comparison"]
    clean, flipped = arm(c, "clean"), arm(c, "flipped")
    assert clean["accuracy"]["mean"] > 0.5 > flipped["accuracy"]["mean"]  # one learned the truth, one its reverse
    v = flipped["vs_baseline"]
    assert v["delta"] == pytest.approx(flipped["accuracy"]["mean"] - clean["accuracy"]["mean"])
    assert v["delta"] < -0.2
    # McNemar's orientation: b = pairs only the baseline (clean) got right, c = only the other arm
    assert v["baseline_only_correct"] > v["other_only_correct"]
    assert v["delta"] == pytest.approx((v["other_only_correct"] - v["baseline_only_correct"]) / v["n_pairs"])
    assert v["delta_ci95"][1] < 0  # the whole CI on the right side


def test_verdict_words_agree_with_p_correction_and_mde(known_truth):
    c = known_truth["comparison"]
    v = arm(c, "flipped")["vs_baseline"]
    assert v["significant"] and v["p_value"] < 0.05
    assert v["p_holm"] == pytest.approx(v["p_value"])  # one comparison: Holm changes nothing
    assert v["n_comparisons"] == 1 and v["correction"] == "holm"
    assert v["mde"] is not None and abs(v["delta"]) > v["mde"]  # an effect this design could detect
    text = c["verdict"]["text"]
    assert c["verdict"]["winner"] == "clean" and c["verdict"]["worse"] == ["flipped"]
    assert c["verdict"]["better"] == []
    assert text.startswith("The baseline 'clean' (") and "beats every other arm" in text
    assert f"{100 * v['delta']:+.1f} points" in text and ", significant (p = " in text
    assert "not significant" not in text and "detects only" not in text
    assert "one comparison (no correction)" in text
    p_shown = float(re.search(r"significant \(p = ([0-9.e+-]+)\)", text).group(1))
    assert p_shown == pytest.approx(v["p_value"], rel=0.05)
    assert_comparison_matches(known_truth["out"])  # every figure, recomputed from per_pair.parquet


def test_the_other_orientation_names_the_clean_arm_the_winner(known_truth):
    """The same evaluations with `flipped` as the baseline: the sign and the winner turn over."""
    from pairlab.ablate import Layout, load_ablation_config
    from pairlab.ablate.compare import compare_arms

    cfg = load_ablation_config(str(known_truth["config"]), ["baseline=flipped"])
    layout = Layout(known_truth["out"])
    turned = compare_arms(cfg, layout, pd.read_parquet(layout.pool))
    forward = arm(known_truth["comparison"], "flipped")["vs_baseline"]
    v = arm(turned, "clean")["vs_baseline"]
    assert v["delta"] == pytest.approx(-forward["delta"]) and v["delta"] > 0
    assert (v["baseline_only_correct"], v["other_only_correct"]) == (
        forward["other_only_correct"], forward["baseline_only_correct"])
    assert v["p_value"] == pytest.approx(forward["p_value"]) and v["significant"]
    assert turned["verdict"]["winner"] == "clean" and turned["verdict"]["better"] == ["clean"]
    assert turned["verdict"]["text"].startswith("'clean' beats the baseline 'flipped'")
    assert "its training labels were 0.0% wrong vs 100.0% in the baseline" in turned["verdict"]["text"]
