"""Generations: a fixed prompt set, base vs aligned, greedy and seeded sampling, implicit rewards."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pairlab.evaluate import EvalConfig
from pairlab.evaluate.generate import generate_table, read_prompts_file, select_prompts
from pairlab.policy import load_policy, resolve_setup
from pairlab.schema import PairDataError


@pytest.fixture(scope="module")
def policy(tiny_run):
    setup = resolve_setup(EvalConfig(), run=tiny_run)
    model, tokenizer = load_policy(setup)
    return model, tokenizer, setup


def _generate(policy, prompts, seeds):
    model, tokenizer, setup = policy
    return generate_table(model, tokenizer, prompts, has_adapter=True, modes=["greedy", "sample"],
                          sample_seeds=seeds, max_new_tokens=6, temperature=0.7, top_p=0.95,
                          beta=setup.beta, max_length=setup.max_length, batch_size=4)


def test_generations_are_deterministic_with_a_seed(policy, sim_split, trained_eval):
    prompts = select_prompts(sim_split[1], 2)
    first = _generate(policy, prompts, [0, 1])
    assert len(first) == 2 * 2 * 3  # prompts x models x (greedy + 2 seeds)
    assert first.loc[first["mode"] == "greedy", "seed"].isna().all()
    sampled = first[first["mode"] == "sample"].pivot_table(index=["prompt_id", "model"], columns="seed",
                                                          values="text", aggfunc="first")
    assert (sampled[0] != sampled[1]).any()  # another seed, another sample
    # Reproduced exactly: the same texts the CLI run wrote in another process (same prompts, seed 0).
    written = pd.read_parquet(trained_eval / "generations.parquet")
    ours = first[(first["seed"].isna()) | (first["seed"] == 0)].reset_index(drop=True)
    pd.testing.assert_series_equal(ours["text"], written["text"], check_names=False)
    pd.testing.assert_series_equal(ours["implicit_reward"], written["implicit_reward"], check_names=False,
                                   atol=1e-5)


def test_implicit_reward_is_zero_for_the_base_model_without_adapter(policy, sim_split):
    model, tokenizer, setup = policy
    prompts = select_prompts(sim_split[1], 1)
    with model.disable_adapter():
        table = generate_table(model.get_base_model(), tokenizer, prompts, has_adapter=False, modes=["greedy"],
                               sample_seeds=[0], max_new_tokens=4, temperature=1.0, top_p=1.0,
                               beta=setup.beta, max_length=setup.max_length)
    assert list(table["model"]) == ["base"] and table["implicit_reward"].isna().all()


def test_prompts_from_a_file(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("Say hi.\n\nName a colour.\nSay hi.\n")
    prompts = read_prompts_file(txt)
    assert list(prompts["prompt_text"]) == ["Say hi.", "Name a colour.", "Say hi."]
    assert len(select_prompts(pd.DataFrame(), 5, str(txt))) == 2  # duplicates dropped
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"prompt": "A?"}) + "\n"
                  + json.dumps({"prompt": [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": "B?"}]}) + "\n{oops\n")
    with pytest.raises(PairDataError, match="line 3"):
        read_prompts_file(jl)
    jl.write_text(jl.read_text().replace("{oops\n", ""))
    assert read_prompts_file(jl)["prompt"].iloc[1][0]["role"] == "system"
