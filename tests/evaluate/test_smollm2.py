"""Slow end to end: the embedded SmolLM2 in 4-bit, untrained, on simulator held-out pairs."""
from __future__ import annotations

import json

import pandas as pd
import pytest


@pytest.mark.slow
def test_base_smollm2_on_simulator_held_out_pairs(tmp_path):
    from pairlab.evaluate import evaluate, load_eval_config
    from pairlab.simulate import simulate_pairs

    _, held_out = simulate_pairs(n=160, seed=1, length="short")
    pairs = held_out.head(16)
    config = load_eval_config(None, [f"ref_cache_dir={tmp_path / 'ref'}", "n_prompts=1", "max_new_tokens=16",
                                     "modes=[greedy]"])
    result = evaluate(pairs, tmp_path / "eval", model="smollm2-135m-instruct", config=config)
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["n_pairs"] == len(pairs) and m["ties"] == len(pairs) and m["policy_is_reference"]
    assert m["settings"]["quantization"] == "4bit" and m["verdict"]["headline_metric"] == "ref_free_accuracy"
    assert 0.0 <= m["ref_free_accuracy"] <= 1.0 and m["reference"]["computed"] == len(pairs)
    per_pair = pd.read_parquet(tmp_path / "eval" / "per_pair.parquet")
    assert per_pair["policy_chosen_logps"].lt(0).all() and per_pair["true_preference_correct"].all()
    gens = pd.read_parquet(tmp_path / "eval" / "generations.parquet")
    assert len(gens) == 1 and gens["text"].str.len().iloc[0] > 0
    assert result.report_error is None and result.report == tmp_path / "eval" / "report.html"
    assert "Content-Security-Policy" in result.report.read_text(encoding="utf-8")


@pytest.mark.slow
def test_smollm2_4bit_shared_prompt_layout_equals_trl_layout(monkeypatch):
    """The real model in 4-bit (bitsandbytes' kernels): both layouts give the same log-probs,
    with completions cut by max_length (truncation) and whole (no truncation)."""
    import numpy as np

    from pairlab.logprobs import sequence_logps, shared_prompt_supported
    from pairlab.models import load_model, load_tokenizer
    from pairlab.simulate import simulate_pairs

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = load_model("smollm2-135m-instruct", quantization="4bit", dtype="float32")
    _, held_out = simulate_pairs(n=40, seed=2, length="realistic")
    pairs = held_out.head(6)
    monkeypatch.setenv("PAIRLAB_LOGPS_LAYOUT", "trl")
    assert not shared_prompt_supported(model)
    trl = sequence_logps(model, tokenizer, pairs, max_length=256, batch_size=3)
    monkeypatch.delenv("PAIRLAB_LOGPS_LAYOUT")
    assert shared_prompt_supported(model)  # the default
    shared = sequence_logps(model, tokenizer, pairs, max_length=256, batch_size=3)
    assert (shared["chosen_tokens"] == trl["chosen_tokens"]).all() and (trl["chosen_tokens"] > 0).all()
    # On a CPU with native bf16 (AVX512-BF16), bitsandbytes' 4-bit CPU kernel computes in bf16 even
    # with float32 compute, so two layouts (other matmul shapes) differ by bf16 rounding: measured
    # up to 0.20 nats on sums near -600 (3.3e-4 relative). Elsewhere (AVX2) it is fp32: 1e-4.
    from pairlab.models import cpu_has_native_bf16

    rtol = 1e-3 if cpu_has_native_bf16() else 1e-4
    for col in ("chosen_logps", "rejected_logps"):
        np.testing.assert_allclose(shared[col], trl[col], rtol=rtol, atol=5e-3)
