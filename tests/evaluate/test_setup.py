"""Settings come from the run; errors name what is wrong; the verdict handles all-tie baselines."""
from __future__ import annotations

import pytest

from pairlab.cli import main
from pairlab.config import ConfigError
from pairlab.evaluate import EvalConfig, evaluate, load_eval_config, metrics
from pairlab.policy import resolve_setup
from pairlab.schema import PairDataError


def test_settings_are_the_runs_unless_overridden(tiny_run, work):
    setup = resolve_setup(EvalConfig(), run=tiny_run)
    assert (setup.model, setup.quantization, setup.dtype) == ("tiny-random-llama", "4bit", "float32")
    assert (setup.beta, setup.max_length, setup.truncation_mode) == (0.2, 96, "keep_start")
    assert setup.ref_cache_dir == str(work / "ref_cache") and setup.compute_dtype == "float32"
    assert setup.adapter_dir == str(tiny_run / "adapter")
    override = resolve_setup(load_eval_config(None, ["beta=0.5", "max_length=64"]), run=tiny_run)
    assert (override.beta, override.max_length) == (0.5, 64)
    bare = resolve_setup(EvalConfig(), model="tiny-random-llama")
    assert (bare.beta, bare.max_length, bare.quantization, bare.adapter_dir) == (0.1, 256, "4bit", None)


def test_errors(tiny_run, tmp_path, sim_split):
    with pytest.raises(PairDataError, match="exactly one"):
        resolve_setup(EvalConfig(), run=tiny_run, model="tiny-random-llama")
    with pytest.raises(PairDataError, match="no manifest.json"):
        resolve_setup(EvalConfig(), run=tmp_path)
    with pytest.raises(ConfigError, match="modes"):
        load_eval_config(None, ["modes=[beam]"])
    doubled = sim_split[1].iloc[[0, 0]]
    with pytest.raises(PairDataError, match="appears twice"):
        evaluate(doubled, tmp_path / "x", model="tiny-random-llama")
    assert main(["evaluate", "--run", str(tmp_path), "--eval", "missing.jsonl", "--out", str(tmp_path / "o")]) == 2


def test_verdict_on_hand_examples():
    tied = {"n_pairs": 4, "ties": 4, "accuracy": 0.0, "accuracy_ci95": [0.0, 0.0],
            "ref_free_accuracy": 0.75, "ref_free_accuracy_ci95": [0.55, 1.0], "policy_is_reference": True}
    v = metrics.verdict(tied)
    assert v["headline_metric"] == "ref_free_accuracy" and v["headline_value"] == 0.75
    assert v["all_ties"] and v["above_chance"] is True and "all ties" in v["text"]
    trained = {**tied, "ties": 1, "accuracy": 0.5, "accuracy_ci95": [0.25, 0.75], "policy_is_reference": False}
    v = metrics.verdict(trained)
    assert v["headline_metric"] == "accuracy" and v["above_chance"] is False
    assert "not distinguishable from chance" in v["text"] and "1 of 4 pairs tied" in v["text"]
    worse = {**trained, "accuracy": 0.1, "accuracy_ci95": [0.0, 0.3]}
    assert "below chance" in metrics.verdict(worse)["text"]


def test_accuracy_excluding_ties_and_ref_free_ci():
    import pandas as pd

    pairs = pd.DataFrame({"pair_id": list("abcd")})
    policy = pd.DataFrame({"pair_id": list("abcd"), "chosen_logps": [-1.0, -2.0, -3.0, -4.0],
                           "rejected_logps": [-2.0, -1.0, -3.0, -5.0], "chosen_tokens": 2, "rejected_tokens": 2})
    ref = policy.assign(chosen_logps=[-1.0, -1.0, -3.0, -4.0], rejected_logps=[-1.0, -1.0, -3.0, -5.0])
    pp = metrics.per_pair_table(pairs, policy, ref, beta=1.0)
    # margins: a = 0 - (-1) = 1, b = -1 - 0 = -1, c = 0 (tie), d = 0 - 0 = 0 (tie)
    s = metrics.summarize(pp, 1.0, n_boot=200)
    assert s["ties"] == 2 and s["accuracy"] == 0.25 and s["accuracy_excluding_ties"] == 0.5
    # ref-free: a -1 > -2 yes, b no, c equal no, d -4 > -5 yes
    assert s["ref_free_accuracy"] == 0.5 and 0.0 <= s["ref_free_accuracy_ci95"][0] <= 0.5 <= s["ref_free_accuracy_ci95"][1]
