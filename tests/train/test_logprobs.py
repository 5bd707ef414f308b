"""pairlab.logprobs: TRL-identical tokenization, sequence log-probs with the adapter on/off, the cache."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairlab.logprobs import REF_COLUMNS, RefLogpCache, sequence_logps, tokenize_pairs


def _rows(ids, value):
    return pd.DataFrame({"pair_id": ids, "ref_chosen_logps": value, "ref_rejected_logps": -value,
                         "chosen_tokens": 3, "rejected_tokens": 4})[REF_COLUMNS]


def test_cache_put_get_missing_and_two_writers(tmp_path):
    key = {"model": "m", "max_length": 64}
    a = RefLogpCache(key, root=tmp_path)
    b = RefLogpCache(key, root=tmp_path)  # a second run on the same pool, at the same time
    assert a.dir == b.dir and a.missing(["p1", "p2"]) == ["p1", "p2"]
    a.put(_rows(["p1", "p2"], 1.0))
    b.put(_rows(["p2", "p3"], 2.0))   # b had not seen a's shard yet: p2 is skipped on read
    assert a.missing(["p1", "p3", "p4", "p4"]) == ["p4"]
    got = b.get(["p3", "p1", "p2"])
    assert list(got["pair_id"]) == ["p3", "p1", "p2"]
    assert list(got["ref_chosen_logps"]) == [2.0, 1.0, 1.0]  # first stored value wins
    assert len(list(a.dir.glob("shard-*.parquet"))) == 2 and (a.dir / "key.json").exists()
    with pytest.raises(KeyError, match="p9"):
        a.get(["p9"])
    assert RefLogpCache({**key, "max_length": 65}, root=tmp_path).missing(["p1"]) == ["p1"]


def test_tokenization_matches_trl(sim_pairs):
    """Our tokenize_pair is TRL's DPOTrainer tokenization (compared through TRL itself)."""
    from trl import DPOConfig, DPOTrainer

    from pairlab.io import to_trl_dataset
    from pairlab.models import load_tokenizer

    tokenizer = load_tokenizer("tiny-random-llama")
    pairs = sim_pairs.head(6)
    fake = DPOTrainer.__new__(DPOTrainer)
    fake._tokenizer = tokenizer
    args = DPOConfig(output_dir="unused", max_length=None, use_cpu=True, bf16=False, dataset_num_proc=None)
    theirs = DPOTrainer._prepare_dataset(fake, to_trl_dataset(pairs), tokenizer, args, "t")
    ours = tokenize_pairs(tokenizer, pairs)
    for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert [o[key] for o in ours] == theirs[key]


def test_sequence_logps_adapter_on_off(sim_pairs):
    import torch
    from peft import LoraConfig, get_peft_model

    from pairlab.models import load_model, load_tokenizer

    tokenizer = load_tokenizer("tiny-random-llama")
    model = get_peft_model(load_model("tiny-random-llama", quantization="none", dtype="float32"),
                           LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    pairs = sim_pairs.head(5)
    on = sequence_logps(model, tokenizer, pairs, max_length=64, batch_size=2, adapter=True)
    off = sequence_logps(model, tokenizer, pairs, max_length=64, batch_size=2, adapter=False)
    assert list(on.columns) == ["pair_id", "chosen_logps", "rejected_logps", "chosen_tokens", "rejected_tokens"]
    assert list(on["pair_id"]) == list(pairs["pair_id"])
    assert (on["chosen_tokens"] > 0).all() and (on[["chosen_logps", "rejected_logps"]] < 0).all().all()
    assert not np.allclose(on["chosen_logps"], off["chosen_logps"])  # a non-zero adapter changes them
    # Batching and length-sorting do not change the numbers; plain logits agree with the fused head.
    single = sequence_logps(model, tokenizer, pairs, max_length=64, batch_size=1, adapter=False)
    np.testing.assert_allclose(single["chosen_logps"], off["chosen_logps"], rtol=1e-4)
    ids = tokenize_pairs(tokenizer, pairs.head(1))[0]
    full = torch.tensor([ids["prompt_ids"] + ids["chosen_ids"]])[:, :64]
    with torch.no_grad(), model.disable_adapter():
        logits = model(input_ids=full).logits[0, :-1].float()
    token_logps = logits.log_softmax(-1).gather(1, full[0, 1:, None])[:, 0]
    expected = token_logps[len(ids["prompt_ids"]) - 1:].sum().item()
    assert off["chosen_logps"].iloc[0] == pytest.approx(expected, rel=1e-4)
