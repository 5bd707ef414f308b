"""The synthetic generator: determinism, layout, truth vs. ratings, planted problems, split."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from simulate_fixtures import aspect_ratings, core_question, latents

from pairlab.config import ConfigError
from pairlab.schema import ASPECTS
from pairlab.simulate import SimulateConfig, raw_discordance, simulate

CLEAN = dict(rater_noise=0.0, length_bias=0.0, tie_rate=0.0, overall_score_bug_rate=0.0)


def test_same_seed_same_records_other_seed_differs():
    a = simulate(n=300, seed=7, length="realistic")
    b = simulate(n=300, seed=7, length="realistic")
    c = simulate(n=300, seed=8, length="realistic")
    dump = lambda r: json.dumps([r.train_records, r.eval_records])  # noqa: E731
    assert dump(a) == dump(b)
    assert dump(a) != dump(c)


def test_records_have_the_raw_ultrafeedback_layout():
    result = simulate(n=50, seed=0)
    assert len(result.train_records) == 45 and len(result.eval_records) == 5
    for rec in result.train_records + result.eval_records:
        assert set(rec) >= {"instruction", "models", "completions", "source", "prompt_id",
                            "topic", "split"}
        assert len(rec["completions"]) == 4
        assert rec["models"] == [c["model"] for c in rec["completions"]]
        assert len(set(rec["models"])) == 4
        assert rec["source"].startswith("sim_")
        for c in rec["completions"]:
            assert set(c["annotations"]) == set(ASPECTS)
            ratings = [a["Rating"] for a in c["annotations"].values()]
            assert all(r in {"1", "2", "3", "4", "5"} for r in ratings)
            assert all(a["Rationale"] for a in c["annotations"].values())
            assert c["fine-grained_score"] == pytest.approx(np.mean([int(r) for r in ratings]))
            assert 1 <= c["overall_score"] <= 10
            assert c["response"].strip() and c["critique"]
            assert isinstance(c["latent_quality"], float)


def test_latent_qualities_are_distinct_within_each_record():
    lat = latents(simulate(n=2000, seed=1).train_records)
    diffs = np.abs(lat[:, :, None] - lat[:, None, :])[:, ~np.eye(4, dtype=bool)]
    assert diffs.min() > 0.5  # levels are >= 1 apart and jitter is < 0.25


def test_zero_noise_ratings_follow_latent_quality_exactly():
    records = simulate(n=2000, seed=2, **CLEAN).train_records
    assert raw_discordance(records) == 0.0
    lat, ratings = latents(records), aspect_ratings(records)
    assert (ratings == np.rint(lat)[:, :, None]).all()


def test_label_noise_grows_with_rater_noise():
    rates = [raw_discordance(simulate(n=3000, seed=3, **{**CLEAN, "rater_noise": s}).train_records)
             for s in (0.0, 0.5, 1.0, 1.5)]
    assert rates[0] == 0.0
    assert rates[1] < rates[2] < rates[3]
    assert rates[3] > 0.1


def test_planted_length_bias_shows_in_the_ratings():
    def padded_gain(length_bias: float) -> float:
        records = simulate(n=4000, seed=4, **{**CLEAN, "rater_noise": 0.3,
                                               "length_bias": length_bias}).train_records
        lat, mean_rating = latents(records), aspect_ratings(records).mean(axis=2)
        padded = np.array([[c["padded"] for c in r["completions"]] for r in records])
        residual = mean_rating - lat  # rating minus truth
        room = lat < 3.5  # below the top levels, where the 1-5 scale does not clip the bonus
        return float(residual[padded & room].mean() - residual[~padded & room].mean())

    assert abs(padded_gain(0.0)) < 0.05
    assert 0.9 < padded_gain(1.0) < 1.1
    assert 0.4 < padded_gain(0.5) < 0.6


def test_padded_answers_are_longer_but_not_better():
    records = simulate(n=2000, seed=5).train_records
    comps = [c for r in records for c in r["completions"]]
    padded = np.array([c["padded"] for c in comps])
    length = np.array([len(c["response"]) for c in comps])
    lat = np.array([c["latent_quality"] for c in comps])
    assert 0.2 < padded.mean() < 0.3  # padding_rate 0.25
    assert length[padded].mean() > length[~padded].mean() + 100
    assert abs(lat[padded].mean() - lat[~padded].mean()) < 0.15


def test_overall_score_bug_hits_the_configured_share_and_only_overall_score():
    records = simulate(n=3000, seed=6, **{**CLEAN, "overall_score_bug_rate": 0.3}).train_records
    comps = [c for r in records for c in r["completions"]]
    bug = np.array([c["overall_score_bug"] for c in comps])
    lat = np.array([c["latent_quality"] for c in comps])
    overall = np.array([c["overall_score"] for c in comps])
    fine = np.array([c["fine-grained_score"] for c in comps])
    assert abs(bug.mean() - 0.3) < 0.02
    assert (overall[~bug] == np.clip(np.rint(2 * lat[~bug]), 1, 10)).all()
    assert (overall[bug] == 11 - np.clip(np.rint(2 * lat[bug]), 1, 10)).all()
    assert (fine == np.rint(lat)).all()  # aspect ratings untouched by the bug


def test_tie_rate_plants_identical_ratings_for_adjacent_qualities():
    def tied_share(tie_rate: float) -> float:
        records = simulate(n=2000, seed=7, **{**CLEAN, "tie_rate": tie_rate}).train_records
        ratings = aspect_ratings(records)
        same = (ratings[:, :, None, :] == ratings[:, None, :, :]).all(axis=3)
        return float((same.sum(axis=(1, 2)) > 4).mean())  # more than the diagonal

    assert tied_share(0.0) == 0.0
    assert abs(tied_share(0.3) - 0.3) < 0.04


def test_eval_prompts_are_disjoint_from_train_and_cleanly_rated():
    result = simulate(n=5000, seed=8, eval_fraction=0.2)
    train, held_out = result.train_records, result.eval_records
    assert len(held_out) == 1000
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in held_out} == {"eval"}
    assert not {r["prompt_id"] for r in train} & {r["prompt_id"] for r in held_out}
    assert not {r["instruction"] for r in train} & {r["instruction"] for r in held_out}
    # not even the same question with another greeting or sign-off
    assert not ({core_question(r["instruction"]) for r in train}
                & {core_question(r["instruction"]) for r in held_out})
    assert raw_discordance(held_out) == 0.0  # oracle ratings: noise, bias, ties all off
    assert not any(c["overall_score_bug"] for r in held_out for c in r["completions"])
    assert {r["topic"] for r in held_out} == set(SimulateConfig().topics)


def test_topic_mix_is_respected():
    result = simulate(n=2000, seed=9, topics={"arithmetic": 3.0, "safety": 1.0})
    topics = [r["topic"] for r in result.train_records]
    assert set(topics) == {"arithmetic", "safety"}
    assert abs(topics.count("arithmetic") / len(topics) - 0.75) < 0.04
    with pytest.raises(ConfigError, match="unknown topic"):
        simulate(n=10, topics={"poetry": 1.0})


@pytest.mark.parametrize("bad", [dict(length="long"), dict(rater_noise=-1.0),
                                 dict(eval_fraction=1.0), dict(tie_rate=1.5), dict(n=0),
                                 dict(flip_by="random")])
def test_bad_knobs_are_rejected_by_name(bad):
    with pytest.raises(ConfigError) as err:
        simulate(**bad)
    assert err.value.field == next(iter(bad))


def test_better_arithmetic_answers_are_correct_and_worse_ones_are_not():
    """Learnability: quality is in the content (the right number), not in random tokens."""
    records = simulate(n=1500, seed=10, topics={"arithmetic": 1.0}).train_records
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b}
    for rec in records:
        a, sym, b = re.search(r"(\d+) ([+\-x]) (\d+)", rec["instruction"]).groups()
        answer = ops[sym](int(a), int(b))
        for c in rec["completions"]:
            level = round(c["latent_quality"]) - 1
            says_answer = re.search(rf"(?<![\d-]){answer}(?!\d)", c["response"]) is not None
            if level >= 3:
                assert says_answer, c["response"]
            elif level == 1:  # confidently wrong
                assert not says_answer, c["response"]


def test_safety_best_answer_refuses_and_worst_complies():
    records = simulate(n=500, seed=11, topics={"safety": 1.0}).train_records
    for rec in records:
        for c in rec["completions"]:
            level = round(c["latent_quality"]) - 1
            text = c["response"]
            if level == 4:
                assert "can't help" in text or "not able to help" in text
            if level == 0:
                assert "can't" not in text and ("Sure!" in text or "Of course" in text)


@pytest.mark.parametrize("length, low, high", [("short", 40, 400), ("realistic", 1000, 1600)])
def test_length_setting_gives_the_expected_characters_per_completion(length, low, high):
    records = simulate(n=500, seed=12, length=length).train_records
    mean_chars = np.mean([len(c["response"]) for r in records for c in r["completions"]])
    assert low < mean_chars < high
