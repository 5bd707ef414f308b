"""Community DPO layouts the readers meet in the wild (generated files in their published shapes):
LLaMA-Factory's ShareGPT and Alpaca DPO files, UltraInteract's trajectories, Nectar's ranked answers.

Before these were read, a ShareGPT file whose answers are strings read its prompt as the
answers' (empty) shared opening: every pair had an empty prompt, silently. These tests pin
that the prompt is the conversation."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pairlab.cli import main
from pairlab.io import read_pairs
from pairlab.io.read import read_pairs_with_rejects


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _turns(prompt):
    return [(m["role"], m["content"]) for m in prompt]


def test_llamafactory_sharegpt_dpo_file(tmp_path):
    """`conversations` of {from, value} turns; chosen/rejected one {from: gpt} message each."""
    rows = [{"conversations": [{"from": "system", "value": "Be brief."},
                               {"from": "human", "value": f"What is {i} + {i}?"}],
             "chosen": {"from": "gpt", "value": str(2 * i)},
             "rejected": {"from": "gpt", "value": f"{i}{i}"}} for i in range(1, 4)]
    df = read_pairs(str(_jsonl(tmp_path / "dpo_en.jsonl", rows)))
    assert df.attrs["read_stats"]["auto_mapped"]["prompt"] == "conversations"
    assert _turns(df["prompt"].iloc[0]) == [("system", "Be brief."), ("user", "What is 1 + 1?")]
    assert df["chosen"].tolist() == ["2", "4", "6"] and df["rejected"].tolist() == ["11", "22", "33"]
    assert "conversations" not in df and not df["flags"].str.contains("empty_prompt").any()


def test_sharegpt_prompt_with_string_answers_is_not_an_empty_implicit_prompt(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "Name a colour."},
                               {"from": "gpt", "value": "Red."},
                               {"from": "human", "value": "Another?"}],
             "chosen": "Blue.", "rejected": "Red again."}]
    df = read_pairs(str(_jsonl(tmp_path / "sg.jsonl", rows)))
    assert _turns(df["prompt"].iloc[0]) == [("user", "Name a colour."), ("assistant", "Red."), ("user", "Another?")]
    assert (df["chosen"].iloc[0], df["rejected"].iloc[0]) == ("Blue.", "Red again.")


def test_ultrainteract_trajectory_is_the_prompt(tmp_path):
    rows = [{"id": "a1", "parent_id": "p1", "task": "Math", "dataset": "gsm8k",
             "trajectory": [{"from": "user", "value": "Solve 3x = 9."}],
             "chosen": "x = 3", "rejected": "x = 6"}]
    df = read_pairs(str(_jsonl(tmp_path / "ui.jsonl", rows)))
    assert _turns(df["prompt"].iloc[0]) == [("user", "Solve 3x = 9.")]
    assert df["source"].iloc[0] == "gsm8k" and df["task"].iloc[0] == "Math"


def test_alpaca_dpo_input_and_history_complete_the_instruction(tmp_path):
    rows = [{"instruction": "Translate to French.", "input": "cat", "chosen": "chat", "rejected": "chien",
             "history": [["Hi", "Hello! How can I help?"]]},
            {"instruction": "Say hi.", "input": "", "chosen": "hi", "rejected": "bye", "history": []}]
    df = read_pairs(str(_jsonl(tmp_path / "alpaca.jsonl", rows)))
    assert _turns(df["prompt"].iloc[0]) == [("user", "Hi"), ("assistant", "Hello! How can I help?"),
                                            ("user", "Translate to French.\ncat")]
    assert _turns(df["prompt"].iloc[1]) == [("user", "Say hi.")]
    assert "input" not in df and "history" not in df


def test_alpaca_malformed_history_is_a_reject_naming_line_and_field(tmp_path):
    rows = [{"instruction": "a", "chosen": "b", "rejected": "c", "history": [["only one"]]},
            {"instruction": "d", "chosen": "e", "rejected": "f"}]
    df, rejects = read_pairs_with_rejects(str(_jsonl(tmp_path / "alpaca.jsonl", rows)))
    assert df["chosen"].tolist() == ["e"]
    assert rejects[["line", "field"]].values.tolist() == [[1, "history"]]
    assert "[user, assistant] pairs" in rejects["reason"].iloc[0]


def test_a_non_message_dict_answer_is_still_refused(tmp_path):
    rows = [{"prompt": "q", "chosen": {"text": "a"}, "rejected": {"text": "b"}}]
    path = _jsonl(tmp_path / "odd.jsonl", rows)
    with pytest.raises(Exception, match="expected a string, a message or a list of messages"):
        read_pairs(str(path))


def _nectar_rows():
    return [{"prompt": "\n\nHuman: Name a prime.\n\nAssistant: ",
             "answers": [{"answer": "7", "model": "gpt-4", "rank": 1.0, "good_natured": True},
                         {"answer": "9", "model": "llama", "rank": 3.0, "good_natured": True},
                         {"answer": "8", "model": "alpaca", "rank": 2.0, "good_natured": True}],
             "turns": 1, "num_responses": 3, "source": ["sharegpt", "flan"]},
            {"prompt": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye?\n\nAssistant: ",
             "answers": [{"answer": "Bye!", "model": "a", "rank": 1.0}, {"answer": "No.", "model": "b", "rank": 2.0}],
             "turns": 2, "num_responses": 2, "source": ["anthropic-hh"]}]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_nectar_ranked_answers_become_pairs(tmp_path, suffix):
    path = tmp_path / f"nectar{suffix}"
    if suffix == ".parquet":
        pd.DataFrame(_nectar_rows()).to_parquet(path)
    else:
        _jsonl(path, _nectar_rows())
    df = read_pairs(str(path), pairing="all-pairs")
    assert df.attrs["read_stats"]["layout"] == "raw"
    first = df[df["prompt_text"].str.contains("prime")]
    # scores are K + 1 - rank: the best of 3 scores 3
    assert sorted(zip(first["chosen"], first["rejected"], first["score_chosen"], first["score_rejected"])) == [
        ("7", "8", 3.0, 2.0), ("7", "9", 3.0, 1.0), ("8", "9", 2.0, 1.0)]
    assert set(first["source"]) == {"sharegpt,flan"}
    second = df[df["chosen"] == "Bye!"]
    assert _turns(second["prompt"].iloc[0]) == [("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye?")]
    assert (second["chosen_model"].iloc[0], second["rejected_model"].iloc[0]) == ("a", "b")
    assert "answers" not in df and "prompt" in df


def test_nectar_bad_rank_is_a_reject(tmp_path):
    rows = _nectar_rows()
    rows[0]["answers"][1]["rank"] = "first"
    df, rejects = read_pairs_with_rejects(str(_jsonl(tmp_path / "nectar.jsonl", rows)))
    assert len(df) == 1 and df["chosen"].iloc[0] == "Bye!"
    assert rejects[["line", "field"]].values.tolist() == [[1, "answers[1].rank"]]


def test_cli_converts_a_llamafactory_file(tmp_path, capsys):
    rows = [{"conversations": [{"from": "human", "value": f"q{i}"}], "chosen": {"from": "gpt", "value": f"good {i}"},
             "rejected": {"from": "gpt", "value": f"bad {i}"}} for i in range(3)]
    src = _jsonl(tmp_path / "lf.jsonl", rows)
    assert main(["convert", "--input", str(src), "--out", str(tmp_path / "pairs.parquet")]) == 0
    out = pd.read_parquet(tmp_path / "pairs.parquet")
    assert out["prompt_text"].tolist() == ["q0", "q1", "q2"] and out["chosen"].tolist() == ["good 0", "good 1", "good 2"]


def test_inspect_and_convert_take_the_input_as_a_positional_argument(tmp_path, capsys):
    src = _jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    assert main(["inspect", str(src)]) == 0
    assert "1 read + 0 rejected" in capsys.readouterr().out
    assert main(["convert", str(src), "--out", str(tmp_path / "p.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == 1
    capsys.readouterr()
    assert main(["inspect"]) == 2
    err = capsys.readouterr().err
    assert "no input" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["inspect", str(src), "--input", str(tmp_path / "other.jsonl")]) == 2
    assert "two inputs" in capsys.readouterr().err


def test_alpaca_csv_cells_and_non_alpaca_columns(tmp_path):
    """In CSV every cell is text: an empty or "[]" history is no history, a JSON history is
    parsed; an `input` that is not text, or a history that is no list, stays a column."""
    path = tmp_path / "alpaca.csv"
    pd.DataFrame([
        {"instruction": "Say hi.", "input": "", "history": "", "chosen": "hi", "rejected": "bye"},
        {"instruction": "Say yo.", "input": "loudly", "history": "[]", "chosen": "YO", "rejected": "yo"},
        {"instruction": "Again?", "input": "", "history": json.dumps([["Hi", "Hello"]]), "chosen": "Yes", "rejected": "No"},
    ]).to_csv(path, index=False)
    df = read_pairs(str(path))
    assert [_turns(p) for p in df["prompt"]] == [
        [("user", "Say hi.")], [("user", "Say yo.\nloudly")], [("user", "Hi"), ("assistant", "Hello"), ("user", "Again?")]]
    assert "input" not in df and "history" not in df
    assert df.attrs["read_stats"]["merged_into_prompt"] == ["input", "history"]
    rows = [{"instruction": "q", "input": 3, "history": "a free-text history", "chosen": "a", "rejected": "b"}]
    other = read_pairs(str(_jsonl(tmp_path / "other.jsonl", rows)))
    assert _turns(other["prompt"].iloc[0]) == [("user", "q")]
    assert other["input"].iloc[0] == 3 and other["history"].iloc[0] == "a free-text history"


def test_sharegpt_conversations_in_a_csv_cell(tmp_path):
    path = tmp_path / "sg.csv"
    pd.DataFrame([{"conversations": json.dumps([{"from": "human", "value": "Name a fruit."}]),
                   "chosen": "Apple.", "rejected": "Rock."}]).to_csv(path, index=False)
    df = read_pairs(str(path))
    assert _turns(df["prompt"].iloc[0]) == [("user", "Name a fruit.")]


def test_an_answers_column_in_raw_ultrafeedback_is_carried_not_read_as_nectar(tmp_path):
    rows = [{"instruction": "Name a prime.", "answers": ["kept as is"], "prompt": "also kept",
             "completions": [{"response": "7", "annotations": {"helpfulness": {"Rating": "5"}}},
                             {"response": "8", "annotations": {"helpfulness": {"Rating": "1"}}}]}]
    df = read_pairs(str(_jsonl(tmp_path / "uf.jsonl", rows)), pairing="best-vs-worst")
    assert df.attrs["read_stats"]["layout"] == "raw"
    assert _turns(df["prompt"].iloc[0]) == [("user", "Name a prime.")]
    assert list(df["answers"].iloc[0]) == ["kept as is"] and df["input_prompt"].iloc[0] == "also kept"
