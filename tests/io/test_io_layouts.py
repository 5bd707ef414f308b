"""Each layout is read into the pairs schema (fixtures built in-test)."""
from __future__ import annotations

import json
import math

import pandas as pd

from pairlab.io import read_pairs
from pairlab.io.layouts import parse_transcript
from pairlab.schema import PAIR_COLUMNS

from io_fixtures import (argilla_records, conv, generic_records, h4_records, nested_records,
                       raw_records)


def _schema_first(df: pd.DataFrame) -> None:
    assert list(df.columns[: len(PAIR_COLUMNS)]) == list(PAIR_COLUMNS)


# ---------------------------------------------------------------- h4

def test_h4_prompt_extracted_from_conversations(jsonl):
    df = read_pairs(jsonl(h4_records()))
    _schema_first(df)
    assert df.attrs["read_stats"]["layout"] == "h4"
    assert df.loc[0, "prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert (df.loc[0, "chosen"], df.loc[0, "rejected"]) == ("4", "5")
    assert df.loc[0, "prompt_id"] == "p-add"  # the source's id is kept
    assert df["score_chosen"].tolist() == [9.0, 7.0]
    assert "messages" not in df.columns  # H4's copy of chosen is not carried twice
    assert df.loc[1, "flags"] == "chosen_equals_rejected"  # kept and flagged


def test_h4_multi_turn_context_kept(jsonl):
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Joke?"}]
    rec = {"prompt": "Hi", "chosen": history + [{"role": "assistant", "content": "Knock knock"}],
           "rejected": history + [{"role": "assistant", "content": "No"}],
           "score_chosen": 8, "score_rejected": 3}
    df = read_pairs(jsonl([rec]))
    assert df.loc[0, "prompt"] == history
    assert df.loc[0, "prompt_text"].startswith("system: Be brief.\nuser: Hi")


def test_h4_from_parquet_and_json(tmp_path):
    records = h4_records()
    pd.DataFrame(records).to_parquet(tmp_path / "h4.parquet")
    (tmp_path / "h4.json").write_text(json.dumps(records))
    from_parquet = read_pairs(tmp_path / "h4.parquet")
    from_json = read_pairs(tmp_path / "h4.json")
    assert from_parquet["pair_id"].tolist() == from_json["pair_id"].tolist()
    assert from_parquet.attrs["read_stats"]["layout"] == "h4"
    assert from_parquet.loc[0, "prompt"] == [{"role": "user", "content": "What is 2+2?"}]


def test_hub_id_goes_through_load_dataset(monkeypatch):
    import datasets

    calls = {}

    def fake_load(path, split=None, **kwargs):
        calls["args"] = (path, split, kwargs)
        return datasets.Dataset.from_list(h4_records())

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    df = read_pairs("HuggingFaceH4/ultrafeedback_binarized", split="train_prefs")
    assert calls["args"] == ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs", {})
    assert len(df) == 2 and df.attrs["read_stats"]["layout"] == "h4"
    # a config (subset) name and a revision go through to load_dataset
    df = read_pairs("org/prefs", split="test", hub_config="en", hub_revision="v1.0")
    assert calls["args"] == ("org/prefs", "test", {"name": "en", "revision": "v1.0"})
    assert df.attrs["read_stats"]["files"] == ["org/prefs:en@v1.0[test]"]


# ---------------------------------------------------------------- raw UltraFeedback

def test_raw_mean_aspects_best_vs_worst(jsonl):
    df = read_pairs(jsonl(raw_records()), binarize="mean-aspects", pairing="best-vs-worst")
    stats = df.attrs["read_stats"]
    assert stats["layout"] == "raw" and stats["ties_dropped"] == 1 and len(df) == 1
    row = df.iloc[0]
    assert (row["chosen"], row["rejected"]) == ("Mass attracts mass.", "Idk.")
    assert (row["score_chosen"], row["score_rejected"]) == (5.0, 1.0)
    assert (row["chosen_model"], row["rejected_model"]) == ("model-a", "model-d")
    assert row["chosen_honesty"] == 5.0 and row["rejected_truthfulness"] == 1.0
    assert row["source"] == "evol_instruct" and row["prompt_id"] == "g1"
    assert row["split"] == "train"  # unknown record-level key carried through
    assert row["chosen_latent_quality"] == 0.9 and row["rejected_latent_quality"] == 0.2
    assert df["true_preference_correct"].dtype == bool and bool(row["true_preference_correct"])


def test_raw_overall_score_reproduces_the_known_bug(jsonl):
    # overall_score ranks the wrong answer first; the latent ground truth shows it.
    df = read_pairs(jsonl(raw_records()), binarize="overall-score", pairing="best-vs-worst")
    row = df.iloc[0]
    assert row["chosen"] == "Gravity is magic." and row["score_chosen"] == 9.0
    assert not bool(row["true_preference_correct"])
    assert math.isnan(row["chosen_helpfulness"])  # "N/A" rating -> NaN


def test_raw_fine_grained_scores(jsonl):
    df = read_pairs(jsonl(raw_records()), binarize="fine-grained", pairing="best-vs-worst")
    assert (df.loc[0, "score_chosen"], df.loc[0, "score_rejected"]) == (4.5, 1.0)


def test_raw_mean_aspects_ignores_na(jsonl):
    df = read_pairs(jsonl(raw_records()), pairing="all-pairs")
    gravity_magic = df[df["chosen"] == "Gravity is magic."]
    assert gravity_magic["score_chosen"].unique().tolist() == [2.0]  # mean of 2, 3, 1


def test_raw_all_pairs_counts_and_ties(jsonl):
    df = read_pairs(jsonl(raw_records()), pairing="all-pairs")
    assert len(df) == 6 and df.attrs["read_stats"]["ties_dropped"] == 1
    assert (df["score_chosen"] > df["score_rejected"]).all()
    assert df["pair_id"].is_unique


def test_raw_best_vs_random_is_seeded_and_strictly_lower(jsonl):
    path = jsonl(raw_records())
    picks = {read_pairs(path, pairing="best-vs-random", seed=s).loc[0, "rejected"] for s in range(12)}
    assert picks <= {"Gravity is magic.", "Things fall down.", "Idk."} and len(picks) > 1
    again = [read_pairs(path, seed=3).loc[0, "rejected"] for _ in range(2)]
    assert again[0] == again[1]
    assert read_pairs(path, seed=3).loc[0, "chosen"] == "Mass attracts mass."


def test_raw_random_pick_independent_of_row_order(jsonl):
    records = raw_records()
    forward = read_pairs(jsonl(records, "f.jsonl"), seed=7)
    backward = read_pairs(jsonl(records[::-1], "b.jsonl"), seed=7)
    assert set(forward["pair_id"]) == set(backward["pair_id"])


# ---------------------------------------------------------------- Argilla

def test_argilla_cleaned_hub_layout(jsonl):
    df = read_pairs(jsonl(argilla_records()))
    assert df.attrs["read_stats"]["layout"] == "argilla"
    assert df["score_chosen"].tolist() == [4.75, 5.0]
    assert df["rejected_model"].tolist() == ["alpaca-7b", "starchat"]
    assert df["source"].tolist() == ["sharegpt", "ultrachat"]
    assert df.loc[0, "prompt"] == [{"role": "user", "content": "Say hi."}]
    assert df.loc[0, "chosen"] == "Hi!"
    assert "chosen-rating" not in df.columns  # consumed, not duplicated as an extra


def test_argilla_string_layout(jsonl):
    rec = {"source": "evol_instruct", "instruction": "Add 1+1", "chosen_response": "2",
           "rejected_response": "3", "chosen_avg_rating": 5.0, "rejected_avg_rating": 1.25,
           "chosen_model": "gpt-4", "rejected_model": "falcon-40b-instruct"}
    df = read_pairs(jsonl([rec]))
    assert df.attrs["read_stats"]["layout"] == "argilla"
    assert (df.loc[0, "chosen"], df.loc[0, "score_rejected"]) == ("2", 1.25)
    assert df.loc[0, "prompt_text"] == "Add 1+1"


# ---------------------------------------------------------------- generic (TRL shapes)

def test_generic_standard_explicit_prompt(jsonl):
    df = read_pairs(jsonl(generic_records()))
    assert df.attrs["read_stats"]["layout"] == "generic"
    assert df.loc[0, "prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert df["lang"].tolist() == ["en", "en"]  # unknown column carried through
    assert df.loc[1, "flags"] == "empty_rejected;missing_score"


def test_generic_conversational_explicit_prompt(jsonl):
    rec = {"prompt": [{"role": "user", "content": "Sky colour?"}],
           "chosen": [{"role": "assistant", "content": "Blue."}],
           "rejected": [{"role": "assistant", "content": "Green."}]}
    df = read_pairs(jsonl([rec]))
    assert df.loc[0, "prompt"] == rec["prompt"] and df.loc[0, "chosen"] == "Blue."


def test_generic_conversational_implicit_prompt(jsonl):
    rec = {"chosen": conv("Sky colour?", "Blue."), "rejected": conv("Sky colour?", "Green.")}
    df = read_pairs(jsonl([rec]))
    assert df.loc[0, "prompt"] == [{"role": "user", "content": "Sky colour?"}]
    assert (df.loc[0, "chosen"], df.loc[0, "rejected"]) == ("Blue.", "Green.")


def test_generic_standard_implicit_prompt_matches_trl():
    from trl.data_utils import extract_prompt

    from pairlab.io.layouts import _string_prefix_prompt

    example = {"chosen": "The sky is blue.", "rejected": "The sky is green."}
    ours = _string_prefix_prompt(example["chosen"], example["rejected"])
    theirs = extract_prompt(example)
    assert ours == (theirs["prompt"], theirs["chosen"], theirs["rejected"])


def test_generic_standard_implicit_prompt_read(jsonl):
    df = read_pairs(jsonl([{"chosen": "The sky is blue.", "rejected": "The sky is green."}]))
    assert df.loc[0, "prompt_text"] == "The sky is"
    assert (df.loc[0, "chosen"], df.loc[0, "rejected"]) == (" blue.", " green.")


# ---------------------------------------------------------------- hh-rlhf transcripts

def test_parse_transcript_multi_turn():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Tell me a joke."
    assert parse_transcript(text) == [
        {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke."}]


def test_hh_prompt_split_layout(jsonl):
    rec = {"prompt": "Human: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant:",
           "chosen": "Why did the chicken...", "rejected": "No."}
    df = read_pairs(jsonl([rec]))
    assert df.attrs["read_stats"]["layout"] == "hh"
    assert [m["role"] for m in df.loc[0, "prompt"]] == ["user", "assistant", "user"]
    assert df.loc[0, "chosen"] == "Why did the chicken..."


def test_hh_full_transcripts_implicit_prompt(jsonl):
    rec = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?",
           "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}
    df = read_pairs(jsonl([rec]))
    assert df.attrs["read_stats"]["layout"] == "hh"
    assert df.loc[0, "prompt"] == [{"role": "user", "content": "Hi"}]
    assert (df.loc[0, "chosen"], df.loc[0, "rejected"]) == ("Hello, how can I help?", "Go away.")


def test_forcing_generic_keeps_transcript_as_one_turn(jsonl):
    rec = {"prompt": "Human: Hi\n\nAssistant: Hello\n\nHuman: Joke?", "chosen": "a", "rejected": "b"}
    df = read_pairs(jsonl([rec]), format="generic")
    assert len(df.loc[0, "prompt"]) == 1


# ---------------------------------------------------------------- --map

def test_map_dotted_paths_for_unknown_layout(jsonl):
    mapping = ["prompt=question", "chosen=answers.good", "rejected=answers.bad",
               "score_chosen=meta.scores.good", "score_rejected=meta.scores.bad",
               "source=meta.origin"]
    df = read_pairs(jsonl(nested_records()), mapping=mapping)
    assert df["chosen"].tolist() == ["6", "9"]
    assert df["score_chosen"].tolist() == [10.0, 9.0]
    assert df.loc[0, "score_rejected"] == 1.0  # numeric string coerced
    assert math.isnan(df.loc[1, "score_rejected"]) and "missing_score" in df.loc[1, "flags"]
    assert df["source"].tolist() == ["math", "math"]
    assert "question" not in df.columns and "answers" not in df.columns  # consumed
    assert df.attrs["read_stats"]["mapping"]["score_chosen"] == "meta.scores.good"


def test_map_as_dict_and_list_index(jsonl):
    records = [{"prompt": "q", "chosen": conv("q", "a"), "rejected": conv("q", "b"),
                "ratings": [7, 3]}]
    df = read_pairs(jsonl(records), mapping={"score_chosen": "ratings.0",
                                             "score_rejected": "ratings.-1"})
    assert (df.loc[0, "score_chosen"], df.loc[0, "score_rejected"]) == (7.0, 3.0)


def test_map_overrides_alias(jsonl):
    rec = {"prompt": "p", "chosen": "a", "rejected": "b",
           "metadata": {"score_chosen": 1, "score_rejected": 2, "other": {"chosen": 9}}}
    df = read_pairs(jsonl([rec]), mapping=["score_chosen=metadata.other.chosen"])
    assert df.loc[0, "score_chosen"] == 9.0 and df.loc[0, "score_rejected"] == 2.0
    assert df.attrs["read_stats"]["auto_mapped"] == {"score_rejected": "metadata.score_rejected"}


def test_directory_reads_files_in_sorted_order(tmp_path):
    from io_fixtures import write_jsonl

    d = tmp_path / "parts"
    d.mkdir()
    write_jsonl(d / "b.jsonl", generic_records()[1:])
    write_jsonl(d / "a.jsonl", generic_records()[:1])
    (d / "notes.txt").write_text("ignored")
    df = read_pairs(d)
    assert df["chosen"].tolist() == ["Paris.", "Madrid."]
    assert len(df.attrs["read_stats"]["files"]) == 2
