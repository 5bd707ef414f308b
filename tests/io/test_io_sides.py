"""Datasets that store two answers and a label naming the preferred one (PKU-SafeRLHF, SHP,
Chatbot Arena, HelpSteer2): the label picks chosen and rejected per row, ties are dropped
and counted, an unknown label is a rejected row, and mapping the two answers straight onto
chosen/rejected (which would read half the file backwards) is refused."""
from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from pairlab.cli import main
from pairlab.io import SIDES_REGISTRY, Sides, read_pairs_with_rejects, register_sides
from pairlab.io.sides import A, B, TIE


def _user(text):
    return {"role": "user", "content": text}


def _assistant(text):
    return {"role": "assistant", "content": text}


def _pku() -> list[dict]:
    return [{"prompt": f"q{i}", "response_0": f"zero {i}", "response_1": f"one {i}", "is_response_0_safe": True,
             "better_response_id": better, "safer_response_id": safer}
            for i, (better, safer) in enumerate([(1, 0), (0, 1), (1, 1), (0, 0)])]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_pku_saferlhf_picks_the_better_answer_per_row(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    rows = _pku()
    if suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, rejects = read_pairs_with_rejects(path)
    assert len(rejects) == 0
    expected = [(f"one {i}", f"zero {i}") if b == 1 else (f"zero {i}", f"one {i}")
                for i, b in enumerate(r["better_response_id"] for r in rows)]
    assert list(zip(pairs["chosen"], pairs["rejected"])) == expected
    assert pairs["better_response_id"].tolist() == [1, 0, 1, 0]  # the label is kept
    safer, _ = read_pairs_with_rejects(path, format="pku-saferlhf-safer")
    assert safer["chosen"].tolist() == ["zero 0", "one 1", "one 2", "zero 3"]


def test_mapping_the_two_answers_onto_chosen_and_rejected_is_refused(tmp_path, capsys):
    path = tmp_path / "pku.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _pku()))
    assert main(["convert", "--input", str(path), "--map", "chosen=response_0", "--map", "rejected=response_1",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "would ignore 'better_response_id'" in err and "pku-saferlhf" in err and "pku.jsonl" in err


def test_shp_labels_scores_and_history(tmp_path):
    """SHP ships <domain>/validation.json: a data file, not a pairlab output folder's marker."""
    rows = [{"post_id": "p1", "history": "Why is the sky blue?", "human_ref_A": "Rayleigh scattering.",
             "human_ref_B": "Because.", "labels": 1, "score_A": 50, "score_B": 10, "score_ratio": 5.0},
            {"post_id": "p2", "history": "Why?", "human_ref_A": "No idea.", "human_ref_B": "A good answer.",
             "labels": 0, "score_A": 3, "score_B": 30, "score_ratio": 10.0},
            {"post_id": "p3", "history": "Eh?", "human_ref_A": "x", "human_ref_B": "y", "labels": "A",
             "score_A": 1, "score_B": 2, "score_ratio": 2.0}]
    folder = tmp_path / "askscience"
    folder.mkdir()
    (folder / "validation.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, rej = tmp_path / "shp.parquet", tmp_path / "rej.jsonl"
    assert main(["convert", "--input", str(folder / "validation.json"), "--out", str(out), "--rejects", str(rej)]) == 0
    pairs = pd.read_parquet(out)
    assert pairs[["prompt_text", "chosen", "rejected", "score_chosen", "score_rejected"]].values.tolist() == [
        ["Why is the sky blue?", "Rayleigh scattering.", "Because.", 50.0, 10.0],
        ["Why?", "A good answer.", "No idea.", 30.0, 3.0]]
    reject = json.loads(rej.read_text().splitlines()[0])
    assert (reject["line"], reject["field"]) == (3, "labels") and "'A' names no preferred answer" in reject["reason"]


def test_chatbot_arena_drops_ties_and_swaps_models(tmp_path, capsys):
    def row(winner):
        return {"question_id": "q", "model_a": "gpt-4", "model_b": "vicuna", "winner": winner,
                "conversation_a": [_user("hi"), _assistant("A says hi")],
                "conversation_b": [_user("hi"), _assistant("B says hi")], "turn": 1}
    path = tmp_path / "arena.parquet"
    pd.DataFrame([row(w) for w in ["model_a", "model_b", "tie", "tie (bothbad)", "model_c"]]).to_parquet(path)
    out = tmp_path / "arena.jsonl"
    capsys.readouterr()
    assert main(["convert", "--input", str(path), "--out", str(out), "--rejects", str(tmp_path / "r.jsonl")]) == 0
    said = capsys.readouterr().out
    assert "5 rows: 4 read + 1 rejected, 2 ties dropped" in said and "layout chatbot-arena" in said
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(g["chosen"], g["rejected"], g["chosen_model"], g["rejected_model"]) for g in got] == [
        ("A says hi", "B says hi", "gpt-4", "vicuna"), ("B says hi", "A says hi", "vicuna", "gpt-4")]
    assert main(["inspect", "--input", str(path)]) == 0
    assert "(2 ties dropped: the label prefers neither answer)" in capsys.readouterr().out


@pytest.mark.parametrize("chunk_rows", ["0", "1"])
def test_helpsteer2_signed_strength_in_both_readers(tmp_path, chunk_rows):
    rows = [{"split": "train", "prompt": "p", "response_1": "one", "response_2": "two", "preference_strength": s}
            for s in (-2, 3, 0, -1)]
    path = tmp_path / "preference.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    out = tmp_path / f"hs{chunk_rows}.parquet"
    assert main(["convert", "--input", str(path), "--out", str(out), "--chunk-rows", chunk_rows]) == 0
    assert pd.read_parquet(out)[["chosen", "rejected"]].values.tolist() == [["one", "two"], ["two", "one"],
                                                                            ["one", "two"]]


@pytest.fixture
def votes():
    from pairlab.io import LAYOUT_REGISTRY

    yield register_sides(Sides("votes", "left", "right", "vote", lambda v: {"L": A, "R": B, "=": TIE}[v],
                               "L, R or =", models=("left_model", "right_model")))
    SIDES_REGISTRY.pop("votes")
    LAYOUT_REGISTRY.pop("votes")


def test_a_convention_of_ones_own_is_a_registered_layout(tmp_path, votes):
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps({"prompt": "q", "left": "l", "right": "r", "vote": v, "left_model": "m1",
                                        "right_model": "m2"}) + "\n" for v in ("R", "=", "L", "?")))
    pairs, rejects = read_pairs_with_rejects(path)
    assert pairs[["chosen", "chosen_model"]].values.tolist() == [["r", "m2"], ["l", "m1"]]
    assert rejects[["line", "field"]].values.tolist() == [[4, "vote"]]


def test_a_prompt_under_question_and_an_implicit_prompt_inside_a_word(tmp_path):
    """Intel/orca_dpo_pairs names its prompt `question`; without any prompt field the answers'
    shared opening is the prompt (TRL's implicit prompt), flagged when it ends inside a word."""
    path = tmp_path / "orca.jsonl"
    path.write_text(json.dumps({"system": "", "question": "Translate 'cat' to French.", "chosen": "Le chat.",
                                "rejected": "Le chien."}) + "\n")
    pairs, _ = read_pairs_with_rejects(path)
    assert pairs[["prompt_text", "chosen", "rejected"]].values.tolist() == [
        ["Translate 'cat' to French.", "Le chat.", "Le chien."]]
    implicit = tmp_path / "implicit.jsonl"
    implicit.write_text(json.dumps({"chosen": "Le chat.", "rejected": "Le chien."}) + "\n"
                        + json.dumps({"chosen": "Q: hi\nA: yes", "rejected": "Q: hi\nA: no"}) + "\n")
    pairs, _ = read_pairs_with_rejects(implicit)
    assert pairs["prompt_text"].tolist() == ["Le ch", "Q: hi\nA:"]  # TRL keeps the space with the answer
    assert ["implicit_prompt_mid_word" in f for f in pairs["flags"]] == [True, False]


def test_curate_records_the_ties_a_label_dropped(tmp_path):
    rows = [{"prompt": f"q{i}", "response_1": f"one {i}", "response_2": f"two {i}", "preference_strength": s}
            for i, s in enumerate((-2, 0, 1, 0, 3))]
    path = tmp_path / "hs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cur"
    assert main(["curate", "--input", str(path), "--out", str(out), "--tokenizer", "none"]) == 0
    pool = json.loads((out / "manifest.json").read_text())["inputs"]["pool"]
    assert (pool["rows_in_input"], pool["records_read"], pool["ties_dropped"], pool["rows"]) == (5, 5, 2, 3)


def test_a_file_with_its_own_chosen_and_rejected_keeps_them(tmp_path):
    """PKU-like columns beside the file's own chosen/rejected: the file's pairs are read as
    they are (the label may mean something else there)."""
    rows = [{"prompt": f"q{i}", "chosen": ("one", "zero")[i % 2], "rejected": ("zero", "one")[i % 2],
             "response_0": "zero", "response_1": "one", "better_response_id": 0} for i in range(4)]
    path = tmp_path / "own.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, _ = read_pairs_with_rejects(path)
    assert pairs["chosen"].tolist() == ["one", "zero", "one", "zero"]
    assert pairs.attrs["read_stats"]["layout"] == "generic"


def test_mapping_a_sided_field_in_a_sides_layout_is_refused(tmp_path, capsys):
    rows = [{"history": "h", "human_ref_A": "a", "human_ref_B": "b", "labels": 1, "score_A": 5, "score_B": 1,
             "c_grade": 9, "r_grade": 1}]
    path = tmp_path / "shp.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    assert main(["convert", "--input", str(path), "--map", "score_chosen=c_grade", "--map", "score_rejected=r_grade",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--map score_chosen=c_grade" in err and "score_A, score_B" in err


@pytest.mark.parametrize("chunk_rows", ["0", "4"])
def test_ties_and_rejects_past_the_first_chunk_and_a_file_of_ties(tmp_path, capsys, chunk_rows):
    strengths = [(-1) ** i for i in range(50)] + [0, "x", 0, 2, -3]
    rows = [{"prompt": f"q{i}", "response_1": f"one {i}", "response_2": f"two {i}", "preference_strength": s}
            for i, s in enumerate(strengths)]
    path = tmp_path / "hs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, rejects = _convert_sides(tmp_path, path, chunk_rows)
    assert len(pairs) == 52 and rejects["line"].tolist() == [52]
    assert pairs["chosen"].tolist()[-2:] == ["two 53", "one 54"]
    ties = tmp_path / "ties.jsonl"
    ties.write_text("".join(json.dumps({**r, "preference_strength": 0}) + "\n" for r in rows[:3]))
    capsys.readouterr()
    assert main(["convert", "--input", str(ties), "--out", str(tmp_path / "t.jsonl"), "--chunk-rows", chunk_rows]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "every row read is a tie (3 ties dropped" in err
    assert main(["inspect", "--input", str(ties)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def _convert_sides(tmp_path, path, chunk_rows):
    out, rej = tmp_path / f"o{chunk_rows}.parquet", tmp_path / f"r{chunk_rows}.jsonl"
    assert main(["convert", "--input", str(path), "--out", str(out), "--rejects", str(rej),
                 "--chunk-rows", chunk_rows]) == 0
    return pd.read_parquet(out), pd.read_json(rej, lines=True)
