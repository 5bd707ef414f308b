"""`pairlab inspect --model`: token-length percentiles under the model's tokenizer and chat
template, and the share of pairs truncated at common max_length values (text and --json)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pairlab.cli import main
from realdata import shared_file

TRL_LIB = "ultrafeedback/trl-lib-binarized_train_slice1000.jsonl"


@pytest.fixture(scope="module")
def head100(tmp_path_factory):
    """The first 100 real trl-lib UltraFeedback rows (a fifth of their prompts are long)."""
    lines = shared_file(TRL_LIB).read_text(encoding="utf-8").splitlines()[:100]
    path = tmp_path_factory.mktemp("inspect") / "head100.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_inspect_model_json_matches_trl_tokenization(head100, capsys):
    from pairlab.io import read_pairs
    from pairlab.logprobs import COMMON_MAX_LENGTHS, tokenize_pairs
    from pairlab.models import load_tokenizer

    assert main(["inspect", "--input", str(head100), "--model", "tiny-random-llama", "--json"]) == 0
    tokens = json.loads(capsys.readouterr().out)["tokens"]
    assert tokens["model"] == "tiny-random-llama" and tokens["pairs"] == 100

    tokenized = tokenize_pairs(load_tokenizer("tiny-random-llama"), read_pairs(str(head100)))
    prompt = np.array([len(t["prompt_ids"]) for t in tokenized])
    chosen = np.array([len(t["chosen_ids"]) for t in tokenized])
    rejected = np.array([len(t["rejected_ids"]) for t in tokenized])
    for name, values in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        row = tokens["percentiles"][name]
        assert row["max"] == values.max()
        for q in (50, 90, 99):
            assert row[f"p{q}"] == pytest.approx(np.percentile(values, q), abs=0.05)
    at = tokens["at_max_length"]
    assert list(at) == [str(n) for n in COMMON_MAX_LENGTHS]
    for n in COMMON_MAX_LENGTHS:
        longest = prompt + np.maximum(chosen, rejected)
        assert at[str(n)]["truncated"] == int((longest > n).sum())  # keep_start cuts past n tokens
        assert at[str(n)]["excluded"] == int((prompt >= n).sum())   # no completion token left
    shares = [at[str(n)]["truncated_share"] for n in COMMON_MAX_LENGTHS]
    assert shares == sorted(shares, reverse=True) and shares[0] > 0.05


def test_inspect_model_text_table(head100, capsys):
    assert main(["inspect", "--input", str(head100), "--model", "tiny-random-llama"]) == 0
    out = capsys.readouterr().out
    assert "tokens       tiny-random-llama tokenizer + chat template, 100 pairs" in out
    for label in ("prompt", "chosen", "rejected", "p50", "p99", "256:", "4096:"):
        assert label in out
    # without --model nothing is tokenized
    assert main(["inspect", "--input", str(head100), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] is None
