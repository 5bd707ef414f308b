"""The shared-prompt layout (the default; one row per pair, prompt once) gives TRL's layout's numbers.

Both layouts run on the same model: TRL's collator + fused LM head on one side,
``prompt + chosen + rejected`` with a block mask on the other. Truncation at
``max_length`` (completion cut, prompt filling the window), padding, a prompt-less
edge and an eager-attention model are covered; the real SmolLM2 in 4-bit is checked in
tests/evaluate/test_smollm2.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pairlab import logprobs
from pairlab.logprobs import sequence_logps, shared_prompt_batch, shared_prompt_supported, tokenize_pairs


@pytest.fixture(scope="module")
def tiny_peft():
    from peft import LoraConfig, get_peft_model

    from pairlab.models import load_model, load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer("tiny-random-llama")
    model = get_peft_model(load_model("tiny-random-llama", quantization="none", dtype="float32"),
                           LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    return model, tokenizer


def _both(model, tokenizer, pairs, monkeypatch, **kwargs):
    assert shared_prompt_supported(model)  # the shared-prompt layout is the default
    shared = sequence_logps(model, tokenizer, pairs, **kwargs)
    with monkeypatch.context() as m:
        m.setenv("PAIRLAB_LOGPS_LAYOUT", "trl")
        assert not shared_prompt_supported(model)
        trl = sequence_logps(model, tokenizer, pairs, **kwargs)
    return shared, trl


@pytest.mark.parametrize("window", [None, "cut"])
@pytest.mark.parametrize("adapter", [True, False])
def test_shared_prompt_equals_trl_layout(tiny_peft, sim_pairs, monkeypatch, window, adapter):
    model, tokenizer = tiny_peft
    pairs = sim_pairs.head(9)
    tokens = tokenize_pairs(tokenizer, pairs)
    # "cut": a window a few tokens past the longest prompt, so every completion is truncated
    max_length = None if window is None else max(len(t["prompt_ids"]) for t in tokens) + 4
    shared, trl = _both(model, tokenizer, pairs, monkeypatch, max_length=max_length, batch_size=4, adapter=adapter)
    np.testing.assert_array_equal(shared["chosen_tokens"], trl["chosen_tokens"])
    np.testing.assert_array_equal(shared["rejected_tokens"], trl["rejected_tokens"])
    np.testing.assert_allclose(shared["chosen_logps"], trl["chosen_logps"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(shared["rejected_logps"], trl["rejected_logps"], rtol=1e-5, atol=1e-4)
    full = np.array([len(t["chosen_ids"]) for t in tokens])
    if window == "cut":  # truncation was exercised, and every pair still scored
        assert (shared["chosen_tokens"] < full).all() and (shared["chosen_tokens"] > 0).all()
    else:
        assert (shared["chosen_tokens"] == full).all()


def test_prompt_filling_the_window_is_not_scored(tiny_peft, sim_pairs, monkeypatch):
    model, tokenizer = tiny_peft
    pairs = sim_pairs.head(4)
    prompt_len = min(len(t["prompt_ids"]) for t in tokenize_pairs(tokenizer, pairs))
    shared, trl = _both(model, tokenizer, pairs, monkeypatch, max_length=prompt_len, batch_size=2)
    assert (shared["chosen_tokens"] == trl["chosen_tokens"]).all()
    assert shared["chosen_logps"].isna().equals(trl["chosen_logps"].isna())


def test_batch_layout_and_mask():
    """Positions restart for the rejected completion, which never sees the chosen one."""
    batch = shared_prompt_batch([{"prompt_ids": [5, 6], "chosen_ids": [7, 8], "rejected_ids": [9]},
                                 {"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3, 4, 4]}],
                                pad_token_id=0, max_length=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 4]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 2, 3]]
    # max_length 4 cuts the second pair's rejected to 3 tokens (1 + 3): nothing more to cut
    assert batch["segments"].tolist() == [[0, 0, 1, 1, 2], [0, 1, 2, 2, 2]]
    # every completion token is scored from the position before it; the first from the prompt's end
    assert list(zip(batch["row"].tolist(), batch["source"].tolist(), batch["label"].tolist(),
                    batch["side"].tolist())) == [(0, 1, 7, 0), (0, 2, 8, 0), (0, 1, 9, 1),
                                                 (1, 0, 2, 0), (1, 0, 3, 1), (1, 2, 4, 1), (1, 3, 4, 1)]
    mask = logprobs._block_mask(batch["segments"], torch.float32, eager=False)[0, 0]
    assert mask[4].tolist() == [True, True, False, False, True]  # rejected: prompt + itself
    assert mask[3].tolist() == [True, True, True, True, False]   # chosen: causal, no rejected
    padded = shared_prompt_batch([{"prompt_ids": [5], "chosen_ids": [7], "rejected_ids": [9]},
                                  {"prompt_ids": [1, 2], "chosen_ids": [2, 3], "rejected_ids": [3]}],
                                 pad_token_id=0, max_length=None)
    pad_mask = logprobs._block_mask(padded["segments"], torch.float32, eager=False)[0, 0]
    assert padded["segments"][0].tolist() == [0, 1, 2, -1, -1]
    assert pad_mask[3].tolist() == [False, False, False, True, False]  # padding sees itself only (no NaN)
    assert not pad_mask[:3, 3:].any()                                  # and nothing sees padding


def test_eager_attention_model_agrees(sim_pairs, monkeypatch):
    from pairlab.models import load_model, load_tokenizer

    tokenizer = load_tokenizer("tiny-random-llama")
    model = load_model("tiny-random-llama", quantization="none", dtype="float32", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    monkeypatch.setenv("PAIRLAB_LOGPS_LAYOUT", "shared")
    assert shared_prompt_supported(model)
    monkeypatch.delenv("PAIRLAB_LOGPS_LAYOUT")
    shared, trl = _both(model, tokenizer, sim_pairs.head(5), monkeypatch, max_length=64, batch_size=3)
    np.testing.assert_allclose(shared["chosen_logps"], trl["chosen_logps"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(shared["rejected_logps"], trl["rejected_logps"], rtol=1e-5, atol=1e-4)


def test_unsupported_models_use_trl_layout(tiny_peft, monkeypatch):
    model, tokenizer = tiny_peft
    assert shared_prompt_supported(model)  # the default
    config = model.get_base_model().config

    def key(layout):
        return logprobs.ref_cache_key_fields(model_fingerprint={"m": "x"}, compute_dtype="float32",
                                             tokenizer=tokenizer, max_length=64, layout=layout)

    # the two layouts never share cache entries (equal only to float rounding), and a cache
    # knows which layout its key names
    assert key("shared")["method"] != key("trl")["method"]
    assert logprobs.RefLogpCache(key("shared")).layout == "shared"
    assert logprobs.RefLogpCache(key("trl")).layout == "trl"
    # where the trainer computes the training reference itself (GPU, LD-DPO), every pass of
    # that key is in TRL's layout; on CPU (4-bit or full precision): shared where supported
    assert logprobs.stored_layout(config, device="cpu", quantization="4bit") == "shared"
    assert logprobs.stored_layout(config, device="cuda:0", quantization="4bit") == "trl"
    assert logprobs.stored_layout(config, device="cpu", quantization="none") == "shared"
    assert logprobs.stored_layout(config, device="cpu", quantization="8bit") == "trl"
    assert logprobs.stored_layout(config, device="cpu", quantization="4bit", ld_alpha=0.5) == "trl"
    assert logprobs.stored_layout(None, device="cpu", quantization="4bit") == "trl"
    monkeypatch.setenv("PAIRLAB_LOGPS_LAYOUT", "trl")
    assert not shared_prompt_supported(model)
    assert logprobs.stored_layout(config, device="cpu", quantization="4bit") == "trl"
    monkeypatch.delenv("PAIRLAB_LOGPS_LAYOUT")
    old = getattr(config, "final_logit_softcapping", None)
    config.final_logit_softcapping = 30.0  # gemma-2 style: the fused head applies it, ours would not
    try:
        assert not shared_prompt_supported(model)
        assert logprobs.stored_layout(config, device="cpu", quantization="4bit") == "trl"
        with pytest.raises(ValueError, match="does not support"):
            logprobs.sequence_logps(model, tokenizer, _tiny_pairs(), max_length=64, layout="shared")
    finally:
        config.final_logit_softcapping = old
    assert not shared_prompt_supported(model, truncation_mode="keep_end")


def _tiny_pairs():
    import pandas as pd

    return pd.DataFrame({"pair_id": ["a"], "prompt": [[{"role": "user", "content": "hi"}]],
                         "chosen": ["yes"], "rejected": ["no"]})


def test_unknown_layout_is_refused(monkeypatch):
    monkeypatch.setenv("PAIRLAB_LOGPS_LAYOUT", "packed")
    with pytest.raises(ValueError, match="PAIRLAB_LOGPS_LAYOUT"):
        logprobs.logps_layout()


# ---------------------------------------------------------------- the policy's training forward

def _trl_batch(tokenizer, pairs, max_length):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    collator = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id, max_length=max_length)
    batch = collator(tokenize_pairs(tokenizer, pairs))
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return batch, labels


@pytest.mark.parametrize("window", [None, "cut"])
def test_shared_training_forward_is_trls_output_with_its_gradients(tiny_peft, sim_pairs, window):
    """What TRL's loss reads from ``model(..., fused_lm_head=True)``, per token and in gradient."""
    model, tokenizer = tiny_peft
    pairs = sim_pairs.head(5)
    tokens = tokenize_pairs(tokenizer, pairs)
    max_length = None if window is None else max(len(t["prompt_ids"]) for t in tokens) + 3
    batch, labels = _trl_batch(tokenizer, pairs, max_length)
    fields = ("log_probs", "entropy", "mean_logits", "is_top1")
    logprobs.ensure_fused_lm_head(model)
    from trl.trainer.utils import add_fused_lm_head

    base = model.get_base_model()
    original = base.forward
    add_fused_lm_head(base, outputs=fields)  # as DPOTrainer patches its policy
    try:
        lora = [p for n, p in model.named_parameters() if "lora_" in n]
        model.zero_grad()
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                    fused_lm_head=True, use_cache=False)
        (ref.log_probs.sum(dim=1) * torch.arange(1, 11, dtype=torch.float32)).sum().backward()
        ref_grads = [p.grad.clone() for p in lora]
        model.zero_grad()
        out = logprobs.shared_prompt_fused_forward(model, batch["input_ids"], batch["attention_mask"], labels,
                                                   tokenizer.pad_token_id, fields)
        assert out is not None
        (out.log_probs.sum(dim=1) * torch.arange(1, 11, dtype=torch.float32)).sum().backward()
        grads = [p.grad.clone() for p in lora]
    finally:
        base.forward = original
    assert out.log_probs.shape == ref.log_probs.shape
    for name in ("log_probs", "entropy", "mean_logits"):
        np.testing.assert_allclose(getattr(out, name).detach(), getattr(ref, name).detach(), rtol=1e-4, atol=1e-4)
    assert torch.equal(out.is_top1.bool() & out.label_mask, ref.is_top1.bool() & ref.label_mask)
    assert torch.equal(out.label_mask, ref.label_mask)
    assert (out.log_probs[~out.label_mask] == 0).all()
    assert float(out.loss.detach()) == pytest.approx(float(ref.loss.detach()), rel=1e-5)
    worst = max(float((g - r).abs().max() / r.abs().max()) for g, r in zip(grads, ref_grads))
    assert worst < 1e-4 and all(r.abs().max() > 0 for r in ref_grads)


def test_training_batches_not_in_trl_form_are_left_to_the_model():
    ids = torch.tensor([[1, 2, 3, 0], [1, 2, 4, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    labels = torch.tensor([[-100, -100, 3, -100], [-100, -100, 4, -100]])
    ok = logprobs.trl_rows_as_shared(ids, mask, labels, 0)
    assert ok["input_ids"].tolist() == [[1, 2, 3, 4]]
    assert list(zip(ok["trl_row"].tolist(), ok["trl_col"].tolist())) == [(0, 1), (1, 1)]
    different_prompts = torch.tensor([[1, 2, 3, 0], [1, 5, 4, 0]])
    assert logprobs.trl_rows_as_shared(different_prompts, mask, labels, 0) is None
    left_padded = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]])
    assert logprobs.trl_rows_as_shared(ids, left_padded, labels, 0) is None
    assert logprobs.trl_rows_as_shared(ids[:1], mask[:1], labels[:1], 0) is None
    assert logprobs.trl_rows_as_shared(ids, None, labels, 0) is None


def test_cpu_lm_head_tile_changes_only_rounding(tiny_peft, sim_pairs, monkeypatch):
    """On a CPU pairlab tiles the vocabulary by CPU_LM_HEAD_CHUNK rows, not TRL's 32,768 (whose
    fp32 tiles were a CPU step's peak): the same log-probs and gradients up to float rounding,
    in both layouts, and TRL's own setting is back after a TRL-layout call."""
    import trl.trainer.utils as trl_utils
    from trl.kernels import ChunkedLogProbFunction

    model, tokenizer = tiny_peft
    assert logprobs.lm_head_chunk(torch.device("cpu")) == logprobs.CPU_LM_HEAD_CHUNK < 32768
    assert model.get_base_model().get_output_embeddings().weight.shape[0] > 2 * logprobs.CPU_LM_HEAD_CHUNK
    monkeypatch.setenv("PAIRLAB_LM_HEAD_CHUNK", "junk")
    assert logprobs.lm_head_chunk(torch.device("cpu")) == logprobs.CPU_LM_HEAD_CHUNK
    monkeypatch.setenv("PAIRLAB_LM_HEAD_CHUNK", "1000")
    assert logprobs.lm_head_chunk(torch.device("cpu")) == 1000
    assert logprobs.lm_head_chunk(torch.device("meta")) == trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    monkeypatch.delenv("PAIRLAB_LM_HEAD_CHUNK")

    seen = []
    apply = ChunkedLogProbFunction.apply
    monkeypatch.setattr(ChunkedLogProbFunction, "apply", lambda *a: seen.append(a[5]) or apply(*a))
    trl_default = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    pairs = sim_pairs.head(5)
    batch, labels = _trl_batch(tokenizer, pairs, None)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]

    def run(tile):
        with monkeypatch.context() as m:
            if tile:
                m.setenv("PAIRLAB_LM_HEAD_CHUNK", str(tile))
            model.zero_grad()
            out = logprobs.shared_prompt_fused_forward(model, batch["input_ids"], batch["attention_mask"], labels,
                                                       tokenizer.pad_token_id)
            out.log_probs.sum().backward()
            m.setenv("PAIRLAB_LOGPS_LAYOUT", "trl")
            trl_side = sequence_logps(model, tokenizer, pairs, batch_size=5)
        return out.log_probs.detach(), [p.grad.clone() for p in lora], trl_side

    logprobs.ensure_fused_lm_head(model)
    small, small_grads, small_trl = run(None)
    assert seen == [logprobs.CPU_LM_HEAD_CHUNK] * 2 and trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == trl_default
    seen.clear()
    big, big_grads, big_trl = run(trl_default)
    assert seen == [trl_default] * 2
    np.testing.assert_allclose(small, big, rtol=1e-5, atol=1e-5)
    for g, r in zip(small_grads, big_grads):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6 * float(r.abs().max()))
    for col in ("chosen_logps", "rejected_logps"):
        np.testing.assert_allclose(small_trl[col], big_trl[col], rtol=1e-5, atol=1e-4)
