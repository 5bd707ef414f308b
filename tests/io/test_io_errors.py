"""Bad input raises one error type naming file, line/row and field; odd rows are kept, flagged.

Row-level problems are checked here through ``strict=True`` (``--strict``), which raises
the first one as before; without it the same row is rejected and the read goes on
(tests/io/test_io_rejects.py checks that each of these rows lands in the rejects table
with the same file, line/row and field).
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from io_fixtures import conv, generic_records, h4_records, raw_records
from pairlab.io import read_pairs
from pairlab.schema import PairDataError


def _error(spec, **kwargs) -> PairDataError:
    with pytest.raises(PairDataError) as info:
        read_pairs(spec, strict=True, **kwargs)
    return info.value


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(generic_records()[0]) + "\n\n" + '{"prompt": "x", "chosen": \n')
    err = _error(path)
    assert err.file == str(path) and err.line == 3
    assert "malformed JSON" in str(err) and "line 3" in str(err)


def test_json_line_that_is_not_an_object(jsonl, tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('["a", "b"]\n')
    err = _error(path)
    assert err.line == 1 and "expected a JSON object" in str(err)


def test_missing_required_field(jsonl):
    records = generic_records() + [{"prompt": "p", "chosen": "a"}]
    err = _error(jsonl(records))
    assert (err.line, err.field) == (3, "rejected")
    assert "missing required field" in str(err) and "--map rejected=" in str(err)


def test_wrong_type_completion_is_a_number(jsonl):
    err = _error(jsonl([{"prompt": "p", "chosen": 3, "rejected": "b"}]))
    assert (err.line, err.field) == (1, "chosen") and "wrong type" in str(err)


def test_wrong_type_mixed_strings_and_messages(jsonl):
    err = _error(jsonl([{"prompt": "p", "chosen": "a", "rejected": conv("p", "b")}]))
    assert err.field == "rejected" and "both" in str(err)


def test_wrong_type_score_is_a_word(jsonl):
    records = [dict(generic_records()[0], score_chosen=5, score_rejected="high")]
    err = _error(jsonl(records))
    assert (err.line, err.field) == (1, "score_rejected") and "'high'" in str(err)


def test_wrong_type_score_is_a_list(jsonl):
    records = [dict(generic_records()[0], score_chosen=[5], score_rejected=1)]
    assert _error(jsonl(records)).field == "score_chosen"


def test_wrong_type_message_content(jsonl):
    bad = [{"role": "user", "content": "q"}, {"role": "assistant", "content": {"text": "a"}}]
    err = _error(jsonl([{"chosen": bad, "rejected": conv("q", "b")}]))
    assert err.field == "chosen" and "message 1" in str(err)


def test_conversations_that_differ_before_the_answer(jsonl):
    rec = {"chosen": conv("q1", "a"), "rejected": conv("q2", "b")}
    err = _error(jsonl([rec]))
    assert "differ before their last turn" in str(err) and err.line == 1


def test_raw_rating_that_is_not_a_number(jsonl):
    records = raw_records()
    records[1]["completions"][1]["annotations"]["honesty"]["Rating"] = "excellent"
    err = _error(jsonl(records))
    assert err.line == 2 and err.field == "completions[1].annotations.honesty.Rating"


def test_raw_completion_missing_response(jsonl):
    records = raw_records()
    del records[0]["completions"][2]["response"]
    err = _error(jsonl(records))
    assert (err.line, err.field) == (1, "completions[2].response")


def test_raw_strategy_with_no_scores(jsonl):
    records = raw_records()
    for rec in records:
        for c in rec["completions"]:
            del c["overall_score"]
    err = _error(jsonl(records), binarize="overall-score")
    assert "no completion has a score" in str(err)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n")
    err = _error(path)
    assert err.file == str(path) and "empty file" in str(err)


def test_empty_parquet(tmp_path):
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"prompt": pd.Series([], dtype=str)}).to_parquet(path)
    assert "empty file" in str(_error(path))


def test_unknown_layout_lists_tried_layouts_and_fields(jsonl):
    err = _error(jsonl([{"question": "q", "answer": "a"}]))
    text = str(err)
    assert "unknown layout" in text and "h4" in text and "raw" in text and "generic" in text
    assert "--format" in text and "--map" in text and "question" in text
    assert err.line == 1


def test_map_path_that_matches_nothing(jsonl):
    err = _error(jsonl(generic_records()), mapping=["score_chosen=metadata.score_chosn"])
    assert err.field == "score_chosen" and "metadata.score_chosn" in str(err)


def test_bad_map_syntax(jsonl):
    assert "FIELD=PATH" in str(_error(jsonl(generic_records()), mapping=["score_chosen"]))


def test_unknown_format_and_strategies(jsonl):
    path = jsonl(raw_records())
    assert "unknown format" in str(_error(path, format="csv"))
    assert _error(path, binarize="median").field == "--binarize"
    assert _error(path, pairing="best-vs-best").field == "--pairing"


def test_forced_format_that_does_not_fit(jsonl):
    err = _error(jsonl(generic_records()), format="raw")
    assert err.field == "instruction" and err.line == 1


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"prompt": ["a", "b"], "chosen": ["x", "y"], "rejected": ["z", ""],
                  "score_chosen": ["1", "oops"]}).to_parquet(path)
    err = _error(path)
    assert (err.row, err.field) == (1, "score_chosen") and "row 1" in str(err)


def test_json_array_errors_name_the_row(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(h4_records() + [{"prompt": "p", "chosen": 1, "rejected": "r"}]))
    err = _error(path)
    assert (err.row, err.field) == (2, "chosen")


def test_missing_file_and_unsupported_suffix(tmp_path):
    assert "no such file" in str(_error(tmp_path / "nope.jsonl"))
    (tmp_path / "data.txt").write_text("a,b\n")
    assert "unsupported file type '.txt'" in str(_error(tmp_path / "data.txt"))
    (tmp_path / "data.gz").write_bytes(b"")  # a compression suffix without a file type
    err = _error(tmp_path / "data.gz")
    assert "unsupported file type '.gz'" in str(err) and "test.jsonl.gz" in str(err)
    (tmp_path / "emptydir").mkdir()
    assert "holds no data files" in str(_error(tmp_path / "emptydir"))


def test_hub_offline_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    err = _error("HuggingFaceH4/ultrafeedback_binarized", split="train_prefs")
    assert err.file == "HuggingFaceH4/ultrafeedback_binarized"
    assert "cannot load hub dataset" in str(err) and "local .parquet/.jsonl" in str(err)


def test_hub_without_split_lists_splits(monkeypatch):
    import datasets

    dd = datasets.DatasetDict({"train_prefs": datasets.Dataset.from_list(h4_records()),
                               "test_prefs": datasets.Dataset.from_list(h4_records())})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dd)
    err = _error("HuggingFaceH4/ultrafeedback_binarized")
    assert err.field == "split" and "train_prefs" in str(err)


# ---------------------------------------------------------------- kept and flagged, never dropped

def test_suspicious_rows_are_kept_and_flagged(jsonl):
    records = [
        {"prompt": "a", "chosen": "", "rejected": "x", "score_chosen": 1, "score_rejected": 0},
        {"prompt": "b", "chosen": "same", "rejected": "same", "score_chosen": 1, "score_rejected": 0},
        {"prompt": "c", "chosen": "y", "rejected": "z", "score_chosen": "NaN", "score_rejected": 0},
        {"prompt": "d", "chosen": None, "rejected": "z", "score_chosen": 2, "score_rejected": "N/A"},
        {"prompt": "e", "chosen": "fine", "rejected": "worse", "score_chosen": 2, "score_rejected": 1},
    ]
    df = read_pairs(jsonl(records))
    # an empty chosen is data (kept, flagged); a null one is missing data: rejected, as a null prompt is
    assert len(df) == 4
    assert df["flags"].tolist() == ["empty_chosen", "chosen_equals_rejected", "missing_score", ""]
    assert df.attrs["read_stats"]["flagged"] == 3
    stats = df.attrs["read_stats"]
    assert stats["rejected"] == 1 and "chosen is null" in str(stats["rejects"][0])
