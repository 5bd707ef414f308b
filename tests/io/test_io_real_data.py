"""The real rows in ../shared/data (skipped cleanly when the folder is absent).

Each file is read twice: auto-detected, and with the explicit ``--map`` lines the README
documents; both must give the same table.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from io_fixtures import real_file
from pairlab.cli import main
from pairlab.io import read_pairs, to_trl_dataset

H4 = "ultrafeedback/h4-binarized_train_prefs_head16.jsonl"
TRL_LIB = "ultrafeedback/trl-lib-binarized_train_slice1000.jsonl"
ARGILLA = "ultrafeedback/argilla-cleaned_sample1000.jsonl"
HH = "hh-rlhf/hh-rlhf_test_prompt-split_1000.jsonl"

#: The explicit command-line options the README gives for each shared file.
EXPLICIT = {
    H4: ["--format", "h4"],
    TRL_LIB: ["--map", "score_chosen=metadata.score_chosen",
              "--map", "score_rejected=metadata.score_rejected"],
    ARGILLA: ["--format", "argilla", "--map", "source=metadata.source",
              "--map", "score_chosen=metadata.rating_chosen",
              "--map", "score_rejected=metadata.rating_rejected",
              "--map", "chosen_model=metadata.chosen_model",
              "--map", "rejected_model=metadata.rejected_model"],
    HH: ["--format", "hh"],
}


def _explicit_kwargs(options: list[str]) -> dict:
    pairs = list(zip(options[::2], options[1::2]))
    return {"format": dict(pairs).get("--format", "auto"),
            "mapping": [value for flag, value in pairs if flag == "--map"]}


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = a.copy(), b.copy()
    a.attrs, b.attrs = {}, {}
    for df in (a, b):
        df["prompt"] = df["prompt"].map(json.dumps)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("name", [H4, TRL_LIB, ARGILLA, HH])
def test_auto_detection_equals_documented_map(name):
    path = real_file(name)
    _same_table(read_pairs(path), read_pairs(path, **_explicit_kwargs(EXPLICIT[name])))


def test_real_h4():
    df = read_pairs(real_file(H4))
    assert len(df) == 16 and df.attrs["read_stats"]["layout"] == "h4"
    assert (df["score_chosen"] == df["score_rejected"]).sum() == 4  # ties kept, not dropped
    assert df["prompt_id"].str.len().eq(64).all()  # H4's own sha256 prompt ids
    assert df["prompt"].map(len).eq(1).all() and df["chosen"].str.len().gt(0).all()
    raw = [json.loads(line) for line in real_file(H4).open()]
    assert df["chosen"].tolist() == [r["chosen"][-1]["content"] for r in raw]


def test_real_trl_lib_quirks_flagged_not_dropped():
    df = read_pairs(real_file(TRL_LIB))
    stats = df.attrs["read_stats"]
    assert len(df) == 1000 and stats["layout"] == "generic"
    assert stats["auto_mapped"] == {"score_chosen": "metadata.score_chosen",
                                    "score_rejected": "metadata.score_rejected"}
    assert df["score_chosen"].between(1, 10).all() and df["score_rejected"].between(1, 10).all()
    assert df["flags"].str.contains("chosen_equals_rejected").sum() == 4
    assert df["flags"].str.contains("empty_").sum() == 2
    assert (df["score_chosen"] == df["score_rejected"]).sum() == 111
    assert "source_index" in df.columns and "metadata" not in df.columns


def test_real_argilla():
    df = read_pairs(real_file(ARGILLA))
    assert len(df) == 1000 and df.attrs["read_stats"]["layout"] == "argilla"
    assert df["score_chosen"].between(1, 5).all() and (df["score_chosen"] > df["score_rejected"]).all()
    assert df["source"].value_counts()["sharegpt"] == 310
    assert df["chosen_model"].ne("").all() and df["rejected_model"].ne("").all()


def test_real_hh_transcripts_become_messages():
    df = read_pairs(real_file(HH))
    assert len(df) == 1000 and df.attrs["read_stats"]["layout"] == "hh"
    turns = df["prompt"].map(len)
    assert (turns > 1).sum() == 700
    assert df["prompt"].map(lambda m: m[0]["role"] == "user").all()
    assert not df["prompt_text"].str.contains("\n\nHuman:").any()
    assert df["flags"].str.contains("missing_score").all()  # hh has no scores: kept, flagged


def test_real_rows_feed_trl_templates(smollm2_tokenizer):
    from trl.data_utils import maybe_apply_chat_template

    df = pd.concat([read_pairs(real_file(HH)).head(3), read_pairs(real_file(H4)).head(3)],
                   ignore_index=True)
    for row in to_trl_dataset(df):
        out = maybe_apply_chat_template(row, smollm2_tokenizer)
        assert out["prompt"].endswith("<|im_start|>assistant\n")
        assert out["chosen"].endswith("<|im_end|>\n")


@pytest.mark.parametrize("name", [H4, TRL_LIB, ARGILLA, HH])
def test_cli_convert_and_inspect_real_files(name, tmp_path, capsys):
    path = real_file(name)
    out = tmp_path / "pairs.parquet"
    assert main(["convert", "--input", str(path), *EXPLICIT[name], "--out", str(out)]) == 0
    assert main(["inspect", "--input", str(path), *EXPLICIT[name], "--json"]) == 0
    captured = capsys.readouterr().out
    summary = json.loads(captured[captured.index("{"):])
    assert summary["rows"] == len(read_pairs(out))
