"""What an export probe found between pairlab's reader and TRL: the TRL writer never deletes a
folder it did not write, an empty prompt list reaches TRL as a turn it can template, a system
text the prompt did not take is kept, and input whose rows are all ties still leaves its
rejects file."""
from __future__ import annotations

import json
import types

import pytest

from pairlab.cli import main
from pairlab.io import read_pairs, to_trl_dataset, write_trl_dataset
from pairlab.schema import PairDataError


def _hh(path):
    path.write_text(json.dumps({"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": "hello", "rejected": "go"}) + "\n")
    return path


def test_the_trl_writer_replaces_only_a_dataset_it_could_have_written(tmp_path, capsys):
    df = read_pairs(_hh(tmp_path / "hh.jsonl"))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "important.txt").write_text("keep")
    with pytest.raises(PairDataError, match="not a saved dataset"):
        write_trl_dataset(df, victim, overwrite=True)
    assert (victim / "important.txt").read_text() == "keep"
    assert main(["convert", "--input", str(tmp_path / "hh.jsonl"), "--trl", "--out", str(victim), "--overwrite"]) == 2
    assert "not a saved dataset" in capsys.readouterr().err and (victim / "important.txt").exists()

    own = tmp_path / "ds.v1"  # a dotted directory name is a directory
    assert main(["convert", "--input", str(tmp_path / "hh.jsonl"), "--trl", "--out", str(own)]) == 0
    assert own.is_dir() and "Saving the dataset" not in capsys.readouterr().err  # no progress bars
    assert main(["convert", "--input", str(tmp_path / "hh.jsonl"), "--trl", "--out", str(own)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "--input", str(tmp_path / "hh.jsonl"), "--trl", "--out", str(own), "--overwrite"]) == 0
    import datasets

    assert datasets.load_from_disk(str(own))["chosen"] == [[{"role": "assistant", "content": "hello"}]]
    with pytest.raises(PairDataError, match="unsupported output type '.json'"):
        write_trl_dataset(df, tmp_path / "x.json")


def test_an_empty_prompt_list_reaches_trl_as_one_empty_user_turn(tmp_path, smollm2_tokenizer):
    from trl import DPOConfig, DPOTrainer
    from trl.data_utils import is_conversational

    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"prompt": [], "chosen": [{"role": "assistant", "content": "a"}],
                                "rejected": [{"role": "assistant", "content": "b"}]}) + "\n")
    df = read_pairs(path)
    # the table keeps the prompt as read (its pair_id unchanged); TRL gets one empty user turn
    assert df["prompt"].iloc[0] == [] and "empty_prompt" in df["flags"].iloc[0]
    ds = to_trl_dataset(df)
    assert ds[0]["prompt"] == [{"role": "user", "content": ""}] and is_conversational(ds[0])
    args = DPOConfig(output_dir=str(tmp_path / "run"), max_length=64, report_to=[], use_cpu=True, bf16=False)
    prepared = DPOTrainer._prepare_dataset(types.SimpleNamespace(_tokenizer=smollm2_tokenizer), ds,
                                           smollm2_tokenizer, args, "train")
    assert smollm2_tokenizer.decode(prepared[0]["chosen_ids"]).startswith("a")


def test_a_system_text_the_prompt_did_not_take_stays_a_column(tmp_path):
    path = tmp_path / "sys.jsonl"
    rows = [{"system": "SYS-COL", "prompt": [{"role": "system", "content": "SYS-MSG"}, {"role": "user", "content": "q"}],
             "chosen": "a", "rejected": "b"},
            {"system": "used", "prompt": "q2", "chosen": "c", "rejected": "d"},
            {"system": "", "prompt": "q3", "chosen": "e", "rejected": "f"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = read_pairs(path, mapping=["system=system"])
    assert [m[0]["content"] for m in df["prompt"]] == ["SYS-MSG", "used", "q3"]
    assert df["system"].tolist()[0] == "SYS-COL" and df["system"].isna().tolist()[1:] == [True, True]


def test_multi_turn_answers_say_so_and_ties_with_rejects_keep_the_rejects_file(tmp_path, capsys):
    def turn(role, text):
        return {"role": role, "content": text}
    rows = [{"model_a": "x", "model_b": "y", "winner": "model_a",
             "conversation_a": [turn("user", "hi"), turn("assistant", "A1"), turn("user", "more"), turn("assistant", "A2")],
             "conversation_b": [turn("user", "hi"), turn("assistant", "B1"), turn("user", "more"), turn("assistant", "B2")]},
            {"model_a": "x", "model_b": "y", "winner": "tie (bothbad)",
             "conversation_a": [turn("user", "hi"), turn("assistant", "A1")],
             "conversation_b": [turn("user", "hi"), turn("assistant", "B1")]}]
    path = tmp_path / "arena.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rejects = tmp_path / "rejects.jsonl"
    assert main(["convert", "--input", str(path), "--out", str(tmp_path / "o.jsonl"), "--rejects", str(rejects)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "every row read is a tie" in err and str(rejects) in err
    reject = json.loads(rejects.read_text())
    assert reject["line"] == 1 and "differ in earlier assistant turns" in reject["reason"]


def test_the_trl_writer_never_replaces_a_users_dataset_or_follows_a_link(tmp_path, capsys):
    import datasets

    source = _hh(tmp_path / "hh.jsonl")
    mine = tmp_path / "mine"
    datasets.Dataset.from_dict({"text": ["mine"]}).save_to_disk(str(mine))  # a saved dataset, not ours
    assert main(["convert", "--input", str(source), "--trl", "--out", str(mine), "--overwrite"]) == 2
    assert "not a saved dataset" in capsys.readouterr().err
    assert datasets.load_from_disk(str(mine))["text"] == ["mine"]
    ours = tmp_path / "ours"
    assert main(["convert", "--input", str(source), "--trl", "--out", str(ours)]) == 0
    link = tmp_path / "link"
    link.symlink_to(ours)
    assert main(["convert", "--input", str(source), "--trl", "--out", str(link), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "symbolic link" in err and "Traceback" not in err and ours.is_dir()
