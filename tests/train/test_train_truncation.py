"""Training and evaluation truncate the same way: the pairs TRL drops from training (prompt
alone reaches max_length) are exactly the pairs evaluate excludes, and both count them."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pairlab.schema import PairDataError, prompt_to_text
from pairlab.train import train


def _lengthen(pairs: pd.DataFrame, rows: list[int], repeat: int = 30) -> pd.DataFrame:
    pairs = pairs.copy().reset_index(drop=True)
    for i in rows:
        pairs.at[i, "prompt"] = [{"role": "user", "content": " ".join([pairs.loc[i, "prompt_text"]] * repeat)}]
        pairs.loc[i, "prompt_text"] = prompt_to_text(pairs.loc[i, "prompt"])
    return pairs


@pytest.mark.slow
def test_trl_drops_what_evaluate_excludes_and_both_count_it(tmp_path, sim_pairs, tiny_config, capfd):
    from pairlab.evaluate import EvalConfig, evaluate

    pairs = _lengthen(sim_pairs.head(6), [1, 4])
    # one epoch, batch 2: every pair TRL keeps is seen once, in the dynamics
    result = train(pairs, tiny_config(tmp_path, "dpo.num_train_epochs=1"), tmp_path / "run")
    t = result.truncation
    assert t["max_length"] == 96 and t["pairs"] == 6 and t["excluded"] == 2
    assert t["trl_dropped"] == 2 and t["trl_trained_pairs"] == 4
    assert set(t["excluded_pair_ids"]) == set(pairs["pair_id"].iloc[[1, 4]])
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["truncation"] == t
    assert "training pairs" in capfd.readouterr().err  # > 5% truncated: warned
    # the reference is computed for the pairs TRL trains on only
    assert result.ref_cache["computed"] == 4 and result.ref_cache["cache_hits"] == 0
    trained = set(result.dynamics["pair_id"])
    assert trained == set(pairs["pair_id"]) - set(t["excluded_pair_ids"])

    ev = evaluate(pairs, tmp_path / "eval", run=tmp_path / "run", config=EvalConfig(generate=False),
                  progress=False)
    assert set(ev.excluded["pair_id"]) == set(t["excluded_pair_ids"])
    assert set(ev.per_pair["pair_id"]) == trained
    assert ev.metrics["truncation"]["excluded"] == 2 and ev.metrics["n_pairs"] == 4
    # the policy's log-probs were saved as computed: a second evaluation computes none
    again = evaluate(pairs, tmp_path / "eval2", run=tmp_path / "run", config=EvalConfig(generate=False),
                     progress=False)
    assert again.policy_logps["computed"] == 0 and again.policy_logps["cache_hits"] == 6
    assert again.reference["computed"] == 0
    pd.testing.assert_frame_equal(again.per_pair, ev.per_pair)


def test_refuses_when_every_prompt_fills_max_length(tmp_path, sim_pairs, tiny_config):
    pairs = _lengthen(sim_pairs.head(2), [0, 1])
    with pytest.raises(PairDataError, match="max_length"):
        train(pairs, tiny_config(tmp_path), tmp_path / "run")


@pytest.mark.parametrize("config, data, max_share", [
    ("train-ultrafeedback.yaml", "ultrafeedback/trl-lib-binarized_train_slice1000.jsonl", 0.05),
    ("train-hh-rlhf.yaml", "hh-rlhf/hh-rlhf_test_prompt-split_1000.jsonl", 0.05),
])
def test_real_data_examples_choose_a_max_length_that_truncates_little(config, data, max_share, smollm2_tokenizer):
    """The real-data example configs load, and their max_length truncates under 5% of the real
    rows (the share at which train and evaluate warn), as the README's figures say."""
    from pairlab.io import read_pairs
    from pairlab.logprobs import token_lengths, tokenize_pairs, truncation_counts, truncation_table
    from pairlab.train import load_train_config
    from realdata import REPO, shared_file

    cfg = load_train_config(REPO / "examples" / config)
    max_length = cfg.dpo["max_length"]
    pairs = read_pairs(str(shared_file(data))).head(120)
    lengths = token_lengths(tokenize_pairs(smollm2_tokenizer, pairs), pairs["pair_id"])
    counts = truncation_counts(truncation_table(lengths, max_length), max_length)
    assert counts["truncated_share"] <= max_share
    # and the default would not do: most real pairs are cut at 256
    assert truncation_counts(truncation_table(lengths, 256), 256)["truncated_share"] > max_share
