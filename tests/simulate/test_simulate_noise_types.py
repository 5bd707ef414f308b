"""Systematic noise types (length, source, marker): which pairs each flips, and the truth it records."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairlab.schema import PairDataError, build_pairs
from pairlab.simulate import NOISE_TYPES, has_marker, inject_noise, simulate, simulate_pairs
from pairlab.simulate.templates import FLATTERY_MARKERS, HEDGING_MARKERS


def mixed_pairs(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Pairs with varied lengths, three sources and markers on a known share of sides."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        chosen = "good " * int(rng.integers(1, 12)) + str(i)
        rejected = "bad " * int(rng.integers(1, 12)) + str(i)
        if i % 5 == 0:
            rejected = HEDGING_MARKERS[i % 3] + rejected
        if i % 7 == 0:
            chosen = FLATTERY_MARKERS[i % 3] + chosen
        rows.append({"prompt": [{"role": "user", "content": f"question {i}"}], "chosen": chosen,
                     "rejected": rejected, "source": ("a", "b", "c", "c")[i % 4],
                     "score_chosen": 4.0, "score_rejected": 2.0})
    return build_pairs(rows)


def _truth_is_consistent(noisy: pd.DataFrame, noise: str) -> None:
    assert (noisy["true_preference_correct"] == ~noisy["flipped"]).all()
    assert (noisy.loc[noisy["flipped"], "noise_type"] == noise).all()
    assert (noisy.loc[~noisy["flipped"], "noise_type"] == "").all()
    assert noisy.attrs["noise"]["type"] == noise
    assert noisy.attrs["noise"]["n_flipped"] == int(noisy["flipped"].sum())


def test_length_noise_makes_the_longer_answer_win():
    pairs = mixed_pairs()
    shorter_chosen = pairs["chosen"].str.len() < pairs["rejected"].str.len()
    noisy = inject_noise(pairs, 0.2, noise="length", seed=3)
    _truth_is_consistent(noisy, "length")
    assert noisy["flipped"].sum() == min(24, shorter_chosen.sum())
    # every flipped pair now has the longer answer as chosen, and came from a shorter-chosen pair
    flipped = noisy[noisy["flipped"]]
    assert (flipped["chosen"].str.len() > flipped["rejected"].str.len()).all()
    assert set(flipped["original_pair_id"]) <= set(pairs.loc[shorter_chosen, "pair_id"])
    # the flips are the largest length ratios: no unflipped shorter-chosen pair has a larger ratio
    ratio = pairs["rejected"].str.len() / pairs["chosen"].str.len()
    picked = pairs["pair_id"].isin(flipped["original_pair_id"])
    assert ratio[picked].min() >= ratio[shorter_chosen & ~picked].max()
    # at rate 1 the rater prefers the longer answer everywhere
    everywhere = inject_noise(pairs, 1.0, noise="length", seed=0)
    assert (everywhere["chosen"].str.len() >= everywhere["rejected"].str.len()).all()


def test_source_noise_flips_one_whole_source():
    pairs = mixed_pairs()
    noisy = inject_noise(pairs, 0.25, noise="source", seed=0)
    _truth_is_consistent(noisy, "source")
    group = noisy.attrs["noise"]["value"]
    assert group in {"a", "b"}  # each is 1/4 of the pairs; "c" is 1/2
    assert (noisy["flipped"] == (noisy["source"] == group)).all()
    assert inject_noise(pairs, 0.5, noise="source", seed=0).attrs["noise"]["value"] == "c"
    by_model = inject_noise(pairs.assign(chosen_model=np.where(pairs.index % 2, "m1", "m2")), 0.5,
                            noise="source", group="chosen_model", seed=0)
    assert by_model["flipped"].sum() == 60 and by_model.attrs["noise"]["group"] == "chosen_model"
    with pytest.raises(PairDataError, match="at least two values"):
        inject_noise(pairs.assign(source="x"), 0.2, noise="source")


def test_marker_noise_prefers_the_marked_answer():
    pairs = mixed_pairs()
    marked_rejected = has_marker(pairs["rejected"]) & ~has_marker(pairs["chosen"])
    assert marked_rejected.sum() > 10
    noisy = inject_noise(pairs, 0.5, noise="marker", seed=1)
    _truth_is_consistent(noisy, "marker")
    assert noisy["flipped"].sum() == marked_rejected.sum()  # fewer eligible than the cap: all flipped
    assert noisy.attrs["noise"]["eligible"] == marked_rejected.sum()
    flipped = noisy[noisy["flipped"]]
    assert has_marker(flipped["chosen"]).all() and not has_marker(flipped["rejected"]).any()
    capped = inject_noise(pairs, 0.05, noise="marker", seed=1)
    assert capped["flipped"].sum() == 6
    assert capped.equals(inject_noise(pairs, 0.05, noise="marker", seed=1))  # seeded


def test_truth_survives_a_second_injection_and_bad_types_are_refused():
    pairs = mixed_pairs()
    first = inject_noise(pairs, 0.2, noise="length", seed=0)
    second = inject_noise(first, 0.1, flip_by="uniform", seed=1)
    expected = first["true_preference_correct"].to_numpy() ^ second["flipped"].to_numpy()
    assert (second["true_preference_correct"].to_numpy() == expected).all()
    kept = ~second["flipped"] & first["flipped"].to_numpy()
    assert (second.loc[kept, "noise_type"] == "length").all()
    assert set(NOISE_TYPES) == {"uniform", "length", "source", "marker"}
    with pytest.raises(PairDataError, match="noise must be one of"):
        inject_noise(pairs, 0.2, noise="sycophancy")


def test_simulator_writes_markers_and_marker_noise_finds_them():
    plain = simulate(n=30, seed=2, topics={"arithmetic": 1.0})
    marked = simulate(n=30, seed=2, topics={"arithmetic": 1.0}, marker_rate=0.5)
    texts = [c["response"] for r in marked.train_records for c in r["completions"]]
    flags = [c["marker"] for r in marked.train_records for c in r["completions"]]
    assert 0.3 < np.mean(flags) < 0.7
    assert (has_marker(pd.Series(texts)) == np.array(flags)).all()
    # marker_rate=0 leaves every other draw alone: the texts are those of an unmarked run
    assert [r["instruction"] for r in plain.train_records] == [r["instruction"] for r in marked.train_records]
    assert not any(c["marker"] for r in plain.train_records for c in r["completions"])
    train, held_out = simulate_pairs(n=60, seed=2, topics={"arithmetic": 1.0}, marker_rate=0.4,
                                     label_flip_rate=0.15, noise="marker", eval_fraction=0.2)
    assert train["flipped"].sum() > 0 and (train.loc[train["flipped"], "noise_type"] == "marker").all()
    assert has_marker(train.loc[train["flipped"], "chosen"]).all()
    assert held_out["true_preference_correct"].all() and has_marker(held_out["chosen"]).any()


def test_simulate_command_takes_the_noise_type(tmp_path):
    from pairlab.artifacts import read_manifest
    from pairlab.cli import main

    out = tmp_path / "sim"
    code = main(["simulate", "--n", "40", "--seed", "1", "--out", str(out), "--flip-rate", "0.2",
                 "--noise", "marker", "--marker-rate", "0.5", "--set", "topics={arithmetic: 1}"])
    assert code == 0
    train = pd.read_parquet(out / "train_pairs.parquet")
    assert train["flipped"].sum() > 0 and (train.loc[train["flipped"], "noise_type"] == "marker").all()
    assert has_marker(train.loc[train["flipped"], "chosen"]).all()
    config = read_manifest(out)["config"]
    assert config["noise"] == "marker" and config["marker_rate"] == 0.5
    assert main(["simulate", "--n", "10", "--out", str(tmp_path / "bad"), "--set", "noise=sycophancy"]) == 2
