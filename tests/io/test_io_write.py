"""Writers: lossless Parquet/JSONL round trips, stable ids, and the dataset TRL trains on."""
from __future__ import annotations

import types

import pandas as pd
import pytest

from io_fixtures import generic_records, h4_records, raw_records
from pairlab.io import read_pairs, to_trl_dataset, write_pairs, write_trl_dataset
from pairlab.schema import PAIR_COLUMNS, PairDataError, make_pair_id


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["prompt"] = out["prompt"].map(lambda m: tuple((x["role"], x["content"]) for x in m))
    out.attrs = {}
    return out


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_round_trip_is_lossless(jsonl, tmp_path, suffix):
    original = read_pairs(jsonl(raw_records()), pairing="all-pairs")
    path = write_pairs(original, tmp_path / f"pairs{suffix}")
    back = read_pairs(path)
    assert back.attrs["read_stats"]["layout"] == "pairs"
    pd.testing.assert_frame_equal(_comparable(back), _comparable(original), check_dtype=False)
    assert back["score_chosen"].dtype == float
    assert isinstance(back.loc[0, "prompt"], list)


def test_round_trip_keeps_ids_of_a_subset(jsonl, tmp_path):
    # A curated subset that dropped the first copy of a repeated pair keeps its '-1' id.
    records = generic_records()[:1] * 2
    df = read_pairs(jsonl(records))
    assert df["pair_id"].tolist()[1] == df["pair_id"].tolist()[0] + "-1"
    back = read_pairs(write_pairs(df.iloc[1:], tmp_path / "subset.parquet"))
    assert back["pair_id"].tolist() == [df["pair_id"].iloc[1]]


def test_forced_pairs_format_on_a_non_pairs_file(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame(generic_records()).to_parquet(path)
    with pytest.raises(PairDataError, match="not a pairs table"):
        read_pairs(path, format="pairs")


def test_write_rejects_unknown_suffix_and_non_tables(jsonl, tmp_path):
    df = read_pairs(jsonl(generic_records()))
    with pytest.raises(PairDataError, match="unsupported output"):
        write_pairs(df, tmp_path / "pairs.csv")
    with pytest.raises(PairDataError, match="not a pairs table"):
        write_pairs(pd.DataFrame({"prompt": []}), tmp_path / "pairs.parquet")


def test_mixed_nested_extra_column_is_stored(jsonl, tmp_path):
    records = [dict(generic_records()[0], extra={"a": 1}), dict(generic_records()[1], extra=[1, "x"])]
    df = read_pairs(jsonl(records))
    back = read_pairs(write_pairs(df, tmp_path / "p.parquet"))
    assert back["extra"].tolist() == ['{"a": 1}', '[1, "x"]']


# ---------------------------------------------------------------- pair_id

def test_pair_id_is_stable_across_formats_and_extra_fields(jsonl, tmp_path):
    a = read_pairs(jsonl(h4_records(), "a.jsonl"))
    pd.DataFrame(h4_records()).drop(columns=["prompt_id"]).to_parquet(tmp_path / "b.parquet")
    b = read_pairs(tmp_path / "b.parquet")
    assert a["pair_id"].tolist() == b["pair_id"].tolist()
    expected = make_pair_id([{"role": "user", "content": "What is 2+2?"}], "4", "5")
    assert a.loc[0, "pair_id"] == expected == "c3da639f17c62a5c"


def test_pair_id_depends_on_orientation_and_prompt(jsonl):
    base = {"prompt": "q", "chosen": "a", "rejected": "b"}
    df = read_pairs(jsonl([base, dict(base, chosen="b", rejected="a"), dict(base, prompt="q2")]))
    assert df["pair_id"].is_unique


# ---------------------------------------------------------------- TRL

def test_trl_dataset_shape(jsonl):
    from trl.data_utils import is_conversational

    ds = to_trl_dataset(read_pairs(jsonl(h4_records())))
    assert ds.column_names == ["prompt", "chosen", "rejected", "pair_id"]
    row = ds[0]
    assert row["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "4"}]
    assert row["rejected"] == [{"role": "assistant", "content": "5"}]
    assert is_conversational(row)


def test_trl_dpo_preprocessing_with_real_tokenizer(jsonl, tmp_path, smollm2_tokenizer):
    """Run DPOTrainer's own dataset preparation (extract, template, tokenize) on our output."""
    from trl import DPOConfig, DPOTrainer
    from trl.data_utils import maybe_apply_chat_template

    tok = smollm2_tokenizer
    records = h4_records()[:1] + [{
        "prompt": "Hi", "score_chosen": 8, "score_rejected": 2,
        "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                   {"role": "user", "content": "Tell me a joke"},
                   {"role": "assistant", "content": "Why did the chicken cross the road?"}],
        "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                     {"role": "user", "content": "Tell me a joke"},
                     {"role": "assistant", "content": "No."}]}]
    ds = to_trl_dataset(read_pairs(jsonl(records)))
    templated = maybe_apply_chat_template(ds[1], tok)
    assert templated["prompt"].count("Tell me a joke") == 1  # the prompt is not rendered twice
    assert templated["chosen"].startswith("Why did the chicken")

    args = DPOConfig(output_dir=str(tmp_path / "run"), max_length=512, report_to=[],
                     use_cpu=True, bf16=False)
    prepared = DPOTrainer._prepare_dataset(types.SimpleNamespace(_tokenizer=tok), ds, tok,
                                           args, "train")
    assert len(prepared) == 2
    ex = prepared[1]
    assert tok.decode(ex["prompt_ids"]).count("Tell me a joke") == 1
    assert tok.decode(ex["chosen_ids"]).startswith("Why did the chicken cross the road?")
    assert tok.decode(ex["rejected_ids"]).startswith("No.")
    assert prepared[0]["pair_id"] == ds[0]["pair_id"]


@pytest.mark.parametrize("name", ["trl.parquet", "trl.jsonl", "trl_dir"])
def test_write_trl_dataset(jsonl, tmp_path, name):
    import datasets

    df = read_pairs(jsonl(h4_records()))
    path = write_trl_dataset(df, tmp_path / name)
    if name.endswith(".parquet"):
        back = datasets.Dataset.from_parquet(str(path))
    elif name.endswith(".jsonl"):
        back = datasets.Dataset.from_json(str(path))
    else:
        back = datasets.load_from_disk(str(path))
    assert back[0]["chosen"] == [{"role": "assistant", "content": "4"}]
    assert back["pair_id"] == df["pair_id"].tolist()


def test_schema_columns_unchanged():
    # Other stages rely on these names; a change here must be deliberate.
    assert list(PAIR_COLUMNS)[:6] == ["pair_id", "prompt_id", "prompt", "prompt_text", "chosen",
                                      "rejected"]
