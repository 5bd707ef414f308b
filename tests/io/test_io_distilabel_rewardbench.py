"""distilabel raw output and RewardBench-style files: detected automatically (generated files)."""
from __future__ import annotations

import json

import pandas as pd

from pairlab.io import read_pairs
from pairlab.io.read import read_pairs_with_rejects


def _distilabel(tmp_path, suffix=".jsonl"):
    records = [
        {"instruction": "Name a prime.", "generations": ["7", "8", "9 is prime"], "ratings": [5, 1, 2],
         "rationales": ["correct", "not prime", "wrong"], "model_names": ["m-a", "m-b", "m-c"],
         "model_name": "judge"},
        {"instruction": "Say hi.", "generations": ["hi", "hello"], "ratings": [3, 3]},          # a tie: no pair
        {"instruction": "Add 2+2.", "generations": ["4", "5"], "ratings": [4, None]},            # one unscored
        {"instruction": "Bad.", "generations": ["a", "b"], "ratings": [1]},                      # reject
    ]
    path = tmp_path / f"distilabel{suffix}"
    if suffix == ".parquet":
        pd.DataFrame(records[:1]).to_parquet(path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_distilabel_raw_output_is_binarized_like_raw_ultrafeedback(tmp_path):
    df, rejects = read_pairs_with_rejects(str(_distilabel(tmp_path)), pairing="best-vs-worst")
    assert df.attrs["read_stats"]["layout"] == "raw"
    assert len(df) == 1  # prime: best vs worst; hi: tie dropped; 2+2: one scored completion
    row = df.iloc[0]
    assert (row.chosen, row.rejected, row.score_chosen, row.score_rejected) == ("7", "8", 5.0, 1.0)
    assert (row.chosen_model, row.rejected_model) == ("m-a", "m-b")
    assert (row.chosen_rationale, row.rejected_rationale) == ("correct", "not prime")
    assert row.prompt_text == "Name a prime." and row.model_name == "judge"
    assert "generations" not in df and "ratings" not in df
    stats = df.attrs["read_stats"]
    assert stats["ties_dropped"] == 1 and stats["prompts_too_few_scored"] == 1
    assert len(rejects) == 1 and rejects.iloc[0]["field"] == "ratings" and rejects.iloc[0]["line"] == 4
    every = read_pairs(str(_distilabel(tmp_path)), pairing="all-pairs")
    assert sorted(zip(every["chosen"], every["rejected"])) == [("7", "8"), ("7", "9 is prime"), ("9 is prime", "8")]


def test_distilabel_parquet(tmp_path):
    df = read_pairs(str(_distilabel(tmp_path, ".parquet")), pairing="best-vs-worst")
    assert df[["chosen", "rejected"]].values.tolist() == [["7", "8"]]


def test_rewardbench_subset_is_the_source(tmp_path):
    rows = [{"id": i, "prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}",
             "chosen_model": "gpt", "rejected_model": "llama", "subset": subset}
            for i, subset in enumerate(["alpacaeval-easy", "xstest-should-refuse", "hep-python"])]
    path = tmp_path / "rewardbench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    df = read_pairs(str(path))
    assert df["source"].tolist() == ["alpacaeval-easy", "xstest-should-refuse", "hep-python"]
    assert df["chosen_model"].tolist() == ["gpt"] * 3 and df["prompt_text"].iloc[0] == "question 0"
    assert df.attrs["read_stats"]["auto_mapped"].get("source") == "subset"
