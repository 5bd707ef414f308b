"""Simulated records through the project's reader: ground truth on every pair, clean eval,
noise where the rating gap is small, the overall_score bug, and the files on disk."""
from __future__ import annotations

import pandas as pd
import pytest

from pairlab.artifacts import file_sha256, read_manifest
from pairlab.preference import rating_gap
from pairlab.simulate import SimulateConfig, simulate_pairs, write_simulation

CLEAN = dict(rater_noise=0.0, length_bias=0.0, tie_rate=0.0, overall_score_bug_rate=0.0)


def noise_rate(pairs: pd.DataFrame) -> float:
    return float(1 - pairs["true_preference_correct"].astype(bool).mean())


def test_zero_noise_every_pair_is_correct():
    train, held_out = simulate_pairs(n=1000, seed=0, **CLEAN)
    assert len(train) == 900 and len(held_out) == 100
    assert train["true_preference_correct"].all()
    assert (train["chosen_latent_quality"] > train["rejected_latent_quality"]).all()


def test_explicit_flip_rate_is_measured_back():
    train, _ = simulate_pairs(n=2000, seed=1, label_flip_rate=0.2, flip_by="uniform", **CLEAN)
    assert noise_rate(train) == pytest.approx(0.2, abs=1 / len(train))
    assert train["flipped"].sum() == round(0.2 * len(train))


def test_natural_noise_matches_the_truth_columns():
    train, _ = simulate_pairs(n=3000, seed=2)
    truth = train["chosen_latent_quality"] > train["rejected_latent_quality"]
    assert (truth == train["true_preference_correct"].astype(bool)).all()
    assert 0.03 < noise_rate(train) < 0.15  # defaults: rater noise + length bias + ties


def test_noise_concentrates_where_the_rating_gap_is_small():
    """What the demo relies on: a min-rating-gap filter removes most of the label noise."""
    train, _ = simulate_pairs(n=4000, seed=3)
    gap = rating_gap(train, aspect_fallback=True).abs()
    wrong = ~train["true_preference_correct"].astype(bool)
    kept = gap >= 1.0
    assert kept.mean() > 0.6  # the filter keeps most pairs
    assert wrong[kept].mean() < 0.5 * wrong.mean()
    assert wrong[~kept].mean() > 3 * wrong[kept].mean()


def test_padded_chosen_is_overrepresented_among_wrong_labels():
    train, _ = simulate_pairs(n=4000, seed=4, length_bias=1.5, rater_noise=0.3)
    wrong = ~train["true_preference_correct"].astype(bool)
    longer = train["chosen"].str.len() > train["rejected"].str.len()
    assert wrong.mean() > 0.02
    assert longer[wrong].mean() > longer[~wrong].mean() + 0.2


def test_overall_score_bug_hurts_overall_score_binarization_only():
    knobs = dict(n=2000, seed=5, **{**CLEAN, "overall_score_bug_rate": 0.2})
    by_aspects, _ = simulate_pairs(SimulateConfig(**knobs, binarize="mean-aspects"))
    by_overall, _ = simulate_pairs(SimulateConfig(**knobs, binarize="overall-score"))
    assert noise_rate(by_aspects) == 0.0
    assert noise_rate(by_overall) > 0.1


def test_eval_pairs_are_clean_and_prompt_disjoint():
    train, held_out = simulate_pairs(n=3000, seed=6, eval_fraction=0.15)
    assert held_out["true_preference_correct"].all()
    assert set(held_out["split"]) == {"eval"} and set(train["split"]) == {"train"}
    assert not set(train["prompt_id"]) & set(held_out["prompt_id"])
    assert not set(train["prompt_text"]) & set(held_out["prompt_text"])


def test_write_simulation_files_manifest_and_determinism(tmp_path):
    cfg = SimulateConfig(n=400, seed=9)
    summary = write_simulation(cfg, tmp_path / "a")
    write_simulation(cfg, tmp_path / "b")
    for name in ("train.jsonl", "eval.jsonl", "train_pairs.parquet", "eval_pairs.parquet",
                 "manifest.json"):
        assert (tmp_path / "a" / name).exists(), name
    for name in ("train.jsonl", "eval.jsonl"):
        assert file_sha256(tmp_path / "a" / name) == file_sha256(tmp_path / "b" / name)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "train_pairs.parquet"),
                                  pd.read_parquet(tmp_path / "b" / "train_pairs.parquet"))
    manifest = read_manifest(tmp_path / "a")
    assert manifest["stage"] == "simulate" and manifest["seed"] == 9
    assert manifest["config"]["n"] == 400
    train = pd.read_parquet(tmp_path / "a" / "train_pairs.parquet")
    assert manifest["summary"]["label_noise_rate"] == pytest.approx(noise_rate(train))
    assert manifest["summary"]["n_train_records"] == 360 == summary["n_train_records"]
    assert manifest["summary"]["eval_label_noise_rate"] == 0.0
    assert manifest["outputs"]["train.jsonl"]["sha256"] == file_sha256(tmp_path / "a" / "train.jsonl")
