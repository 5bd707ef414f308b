"""inject_noise: exact flip counts, gap weighting, what a flip swaps, and the real rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from simulate_fixtures import shared_file

from pairlab.io import read_pairs
from pairlab.schema import ASPECTS, PairDataError, build_pairs
from pairlab.preference import rating_gap as signed_gap
from pairlab.simulate import inject_noise


def rating_gap(pairs):
    """The absolute gap inject_noise orders its flips by."""
    return signed_gap(pairs, aspect_fallback=True).abs()

UF = "ultrafeedback/"
TRL_MAP = ["score_chosen=metadata.score_chosen", "score_rejected=metadata.score_rejected"]


def toy_pairs(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rejected = float(rng.integers(1, 5))
        chosen = rejected + float(rng.integers(0, 5 - int(rejected) + 1))
        rows.append({"prompt": [{"role": "user", "content": f"question {i}"}],
                     "chosen": f"good answer {i}", "rejected": f"bad answer {i}",
                     "score_chosen": chosen, "score_rejected": rejected,
                     **{f"chosen_{a}": chosen for a in ASPECTS},
                     **{f"rejected_{a}": rejected for a in ASPECTS},
                     "chosen_model": "big", "rejected_model": "small",
                     "chosen_latent_quality": chosen + 0.1, "rejected_latent_quality": rejected})
    return build_pairs(rows)


@pytest.mark.parametrize("flip_by", ["uniform", "gap"])
def test_exact_share_is_flipped_and_truth_recorded(flip_by):
    pairs = toy_pairs()
    noisy = inject_noise(pairs, 0.25, flip_by=flip_by, seed=1)
    assert noisy["flipped"].sum() == 100
    assert (noisy["true_preference_correct"] == ~noisy["flipped"]).all()
    assert len(noisy) == len(pairs)


def test_flip_swaps_both_sides_and_renames_the_pair():
    pairs = toy_pairs()
    noisy = inject_noise(pairs, 0.5, flip_by="uniform", seed=2)
    before = pairs.set_index("pair_id").loc[noisy["original_pair_id"]].reset_index()
    f = noisy["flipped"].to_numpy()
    for a, b in [("chosen", "rejected"), ("score_chosen", "score_rejected"),
                 ("chosen_model", "rejected_model"),
                 ("chosen_latent_quality", "rejected_latent_quality")] + \
            [(f"chosen_{x}", f"rejected_{x}") for x in ASPECTS]:
        assert (noisy.loc[f, a].to_numpy() == before.loc[f, b].to_numpy()).all(), a
        assert (noisy.loc[~f, a].to_numpy() == before.loc[~f, a].to_numpy()).all(), a
    assert (noisy.loc[f, "pair_id"] != noisy.loc[f, "original_pair_id"]).all()
    assert (noisy.loc[~f, "pair_id"] == noisy.loc[~f, "original_pair_id"]).all()
    # the truth follows the latent quality after the swap
    truth = noisy["chosen_latent_quality"] > noisy["rejected_latent_quality"]
    assert (truth == noisy["true_preference_correct"]).all()


def test_input_is_untouched_and_seed_decides():
    pairs = toy_pairs()
    copy = pairs.copy(deep=True)
    a = inject_noise(pairs, 0.2, seed=3)
    b = inject_noise(pairs, 0.2, seed=3)
    c = inject_noise(pairs, 0.2, seed=4)
    pd.testing.assert_frame_equal(pairs, copy)
    assert (a["flipped"] == b["flipped"]).all()
    assert (a["flipped"] != c["flipped"]).any()


def test_gap_mode_flips_small_gaps_more_than_uniform():
    pairs = toy_pairs(2000)
    gap = rating_gap(pairs)
    by_gap = inject_noise(pairs, 0.2, flip_by="gap", seed=5)["flipped"].to_numpy()
    uniform = inject_noise(pairs, 0.2, flip_by="uniform", seed=5)["flipped"].to_numpy()
    assert gap[by_gap].mean() < 0.7 * gap[~by_gap].mean()
    assert abs(gap[uniform].mean() - gap.mean()) < 0.2
    tie_share = lambda mask: (gap[mask] == 0).mean()  # noqa: E731
    assert tie_share(by_gap) > 1.5 * tie_share(uniform)


def test_flipping_twice_xors_the_truth_and_keeps_the_first_id():
    once = inject_noise(toy_pairs(), 0.3, flip_by="uniform", seed=6)
    twice = inject_noise(once, 0.3, flip_by="uniform", seed=7)
    expected = ~(once["flipped"].to_numpy() ^ twice["flipped"].to_numpy())
    assert (twice["true_preference_correct"].to_numpy() == expected).all()
    assert set(twice["original_pair_id"]) == set(toy_pairs()["pair_id"])


def test_bad_arguments_and_unscored_data_fail_with_a_fix():
    pairs = toy_pairs(10)
    with pytest.raises(PairDataError, match="flip rate"):
        inject_noise(pairs, 1.5)
    with pytest.raises(PairDataError, match="flip_by"):
        inject_noise(pairs, 0.1, flip_by="random")
    unscored = build_pairs([{"prompt": [{"role": "user", "content": "q"}], "chosen": "a",
                             "rejected": "b"}] * 3)
    with pytest.raises(PairDataError, match="uniform"):
        inject_noise(unscored, 0.5, flip_by="gap")
    assert inject_noise(unscored, 0.5, flip_by="uniform")["flipped"].sum() == 2  # round(1.5)


def test_zero_rate_changes_no_label():
    pairs = toy_pairs(50)
    noisy = inject_noise(pairs, 0.0)
    assert not noisy["flipped"].any() and noisy["true_preference_correct"].all()
    assert (noisy["pair_id"] == pairs["pair_id"]).all()


# ---------------------------------------------------------------- the real rows

@pytest.mark.parametrize("name, mapping", [
    ("trl-lib-binarized_train_slice1000.jsonl", TRL_MAP),
    ("h4-binarized_train_prefs_head16.jsonl", None),
    ("argilla-cleaned_sample1000.jsonl", None),
])
def test_noise_injection_on_real_rows(name, mapping):
    path = shared_file(UF + name)
    pairs = read_pairs(str(path), mapping=mapping)
    assert rating_gap(pairs).notna().mean() > 0.9, "scores should be read"
    noisy = inject_noise(pairs, 0.2, flip_by="gap", seed=0)
    n_flip = round(0.2 * len(pairs))
    assert noisy["flipped"].sum() == n_flip
    assert (~noisy["true_preference_correct"]).sum() == n_flip
    f = noisy["flipped"].to_numpy()
    original = pairs.set_index("pair_id").loc[noisy["original_pair_id"]]
    assert (noisy.loc[f, "chosen"].to_numpy() == original.loc[f, "rejected"].to_numpy()).all()
    if len(pairs) >= 100:  # gap weighting shows on the big files
        gap = rating_gap(pairs).to_numpy()
        gap_orig = rating_gap(original.reset_index()).to_numpy()
        assert np.nanmean(gap_orig[f]) < np.nanmean(gap_orig[~f])
        assert np.nanmean(gap) > 0


def test_real_rows_without_scores_need_uniform_flips():
    path = shared_file("hh-rlhf/hh-rlhf_test_prompt-split_1000.jsonl")
    pairs = read_pairs(str(path))
    with pytest.raises(PairDataError, match="uniform"):
        inject_noise(pairs, 0.1, flip_by="gap")
    noisy = inject_noise(pairs, 0.1, flip_by="uniform", seed=1)
    assert noisy["flipped"].sum() == round(0.1 * len(pairs))
