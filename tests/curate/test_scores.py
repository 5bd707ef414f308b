"""Each score on hand-built pairs with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curate_checks import pair
from pairlab.curate import SCORES, CurateConfig, compute_scores
from pairlab.curate.text import normalize_column
from pairlab.schema import ASPECTS, build_pairs, normalize_series, prompt_hash_series

CFG = CurateConfig(tokenizer="none")


def scores_of(rows, **cfg):
    return compute_scores(build_pairs(rows), CurateConfig(**{"tokenizer": "none", **cfg}))


def test_all_documented_columns_in_order():
    s = scores_of([pair("hi")])
    assert list(s.columns) == list(SCORES)


def test_rating_gap_tie_and_aspects():
    aspects_c = {f"chosen_{a}": v for a, v in zip(ASPECTS, [5, 4, 3, np.nan])}
    aspects_r = {f"rejected_{a}": v for a, v in zip(ASPECTS, [2, 4, 1, 1])}
    s = scores_of([pair("a", sc=9, sr=4, **aspects_c, **aspects_r), pair("b", sc=5, sr=5),
                   pair("c", sc=np.nan, sr=3)])
    assert s["rating_gap"].tolist()[:2] == [5.0, 0.0] and np.isnan(s["rating_gap"][2])
    assert s["is_tie"].tolist() == [False, True, False]
    assert s["chosen_mean_aspect"][0] == pytest.approx(4.0)       # NaN aspect ignored
    assert s["rejected_mean_aspect"][0] == pytest.approx(2.0)
    assert s["mean_aspect_gap"][0] == pytest.approx(2.0)
    assert s["gap_instruction_following"][0] == 3 and s["gap_honesty"][0] == 0
    assert np.isnan(s["gap_helpfulness"][0]) and np.isnan(s["chosen_mean_aspect"][1])


def test_token_counts_match_the_chat_template(smollm2_tokenizer):
    """Counts equal what TRL sees: apply_chat_template on prompt (+ generation prompt)
    and on prompt + completion, including whitespace-leading and multi-turn edge cases."""
    tok = smollm2_tokenizer
    rows = [pair("What is the capital of France?", "Paris.", "I think it might be Lyon, but not sure."),
            pair("\n\nleading newlines", "\n\n\nstarts with newlines", "  two spaces"),
            pair("", "", " "),
            pair([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}],
                 "\t4", "<|im_end|> five"),
            pair("Unicode: café 你好 🙂", "Ça va très bien — merci!", "1234567890 digits")]
    df = build_pairs(rows)
    s = compute_scores(df, CurateConfig(), tokenizer=tok)
    for i, row in df.iterrows():
        msgs = row["prompt"]
        p = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        n_p = len(tok(p, add_special_tokens=False)["input_ids"])
        for side in ("chosen", "rejected"):
            full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": row[side]}],
                                           tokenize=False)
            n_full = len(tok(full, add_special_tokens=False)["input_ids"])
            assert s[f"{side}_tokens"][i] == n_full - n_p, (i, side)
        assert s["prompt_tokens"][i] == n_p, i
    assert (s["total_tokens"] == s["prompt_tokens"] + np.maximum(s["chosen_tokens"], s["rejected_tokens"])).all()


def test_lengths_ratio_and_truncation():
    # tokenizer none: ceil(chars / 4)
    s = scores_of([pair("p" * 40, "x" * 400, "y" * 100), pair("q", "a" * 8, "b" * 16)], max_length=100)
    assert s["chosen_tokens"].tolist() == [100, 2] and s["rejected_tokens"].tolist() == [25, 4]
    assert s["prompt_tokens"].tolist() == [10, 1]
    assert s["length_diff"].tolist() == [75, -2]
    assert s["length_ratio"].tolist() == [4.0, 0.5]
    assert s["total_tokens"].tolist() == [110, 5]
    assert s["would_truncate"].tolist() == [True, False]
    assert s["chosen_chars"].tolist() == [400, 8]


def test_empty_identical_near_identical():
    base = " ".join(f"w{i}" for i in range(40))
    one_word_changed = base.replace("w17", "zz")
    s = scores_of([pair("a", "   ", "text"),
                   pair("b", "Hello, World!", "hello   world"),
                   pair("c", base, one_word_changed),
                   pair("d", base, " ".join(f"v{i}" for i in range(40))),
                   pair("e", base, base + " " + base)])
    assert s["chosen_empty"].tolist() == [True, False, False, False, False]
    assert not s["rejected_empty"].any()
    assert s["identical"].tolist() == [False, True, False, False, False]
    # 39 shared of 41 distinct words -> Jaccard 39/41 = 0.951
    assert s["completion_similarity"][2] == pytest.approx(39 / 41)
    assert s["near_identical"].tolist() == [False, True, True, False, False]
    # word counts 40 vs 80 cannot reach 0.9: not compared (NaN), not near-identical
    assert np.isnan(s["completion_similarity"][4])


def test_duplicate_and_near_duplicate_prompts():
    long = ("Write a detailed essay about the history of the Roman empire, covering its founding, "
            "expansion, government, culture, economy, military campaigns, and eventual decline in the west")
    s = scores_of([pair("What is 2+2?"), pair("  what is 2 2 "), pair(long),
                   pair(long.replace("detailed", "thorough")), pair("Something else entirely")])
    assert s["prompt_hash"][0] == s["prompt_hash"][1] != s["prompt_hash"][2]
    assert s["prompt_dup_count"].tolist() == [2, 2, 1, 1, 1]
    assert s["prompt_dup_rank"].tolist() == [0, 1, 0, 0, 0]
    assert s["prompt_cluster"][2] == s["prompt_cluster"][3] == s["prompt_hash"][2]
    assert s["prompt_near_dup"].tolist() == [False, False, True, True, False]
    # the hash is the schema's split / dedupe key
    df = build_pairs([pair("What is 2+2?")])
    assert s["prompt_hash"][0] == prompt_hash_series(df["prompt_text"])[0]


def test_refusal_markers():
    s = scores_of([pair("a", "As an AI language model, I cannot do that.", "Sure, here it is."),
                   pair("b", "I cannot stress this enough: test first.", "I\u2019m sorry, but I can\u2019t help."),
                   pair("c", "Plain answer.", "I don't have personal opinions, but...")])
    assert s["chosen_refusal"].tolist() == [True, False, False]
    assert s["rejected_refusal"].tolist() == [False, True, True]


def test_contamination_exact_and_ngram(tmp_path):
    evals = tmp_path / "eval_prompts.txt"
    evals.write_text("What is the boiling point of water at sea level in degrees Celsius?\n"
                     "Name three primary colors.\n")
    s = scores_of([pair("what is the boiling point of water at sea level in degrees celsius"),
                   pair("Tell me: what is the boiling point of water at sea level in degrees Celsius? Thanks"),
                   pair("Describe the water cycle in a few sentences.")],
                  contamination_file=str(evals))
    assert s["contaminated_exact"].tolist() == [True, False, False]
    assert s["contamination_overlap"][0] == 1.0
    assert 0.5 < s["contamination_overlap"][1] < 1.0
    assert s["contamination_overlap"][2] == 0.0
    assert s["contaminated"].tolist() == [True, True, False]
    # without a file: not contaminated, overlap unknown
    s2 = scores_of([pair("x")])
    assert not s2["contaminated"].any() and s2["contamination_overlap"].isna().all()


def test_source_carried():
    s = scores_of([pair("a", source="truthful_qa"), pair("b")])
    assert s["source"].tolist() == ["truthful_qa", ""]


def test_fast_normalization_equals_schema():
    texts = pd.Series(["Hello,  World!", "a\x1cb\x0bc  ", "_x_ Y!", "", "\x85 hé", "ΣΑΣ_ς",
                       "ﬁne ligature", "tabs\tand\nnewlines", "  ", "Ünïcödé — dash", None])
    assert normalize_column(texts).tolist() == normalize_series(texts).tolist()


def test_repeated_texts_are_counted_once_with_the_same_counts(smollm2_tokenizer):
    """Token counts per distinct text, broadcast back, equal the counts row by row."""
    from pairlab.curate.tokens import TokenCounter

    rows = [pair("Same prompt?", "A.", "B b."), pair("Same prompt?", "B b.", "\nC"),
            pair("Other prompt", "A.", "\nC"), pair("Same prompt?", "A.", "\nC"),
            pair([{"role": "system", "content": "S"}, {"role": "user", "content": "Same prompt?"}], "A.", "B b.")]
    df = build_pairs(rows)
    s = compute_scores(df, CurateConfig(), tokenizer=smollm2_tokenizer)
    counter = TokenCounter(smollm2_tokenizer)
    assert s["prompt_tokens"].tolist() == counter.prompt_tokens(df["prompt"], df["prompt_text"]).tolist()
    assert s["chosen_tokens"].tolist() == counter.completion_tokens(df["chosen"]).tolist()
    assert s["rejected_tokens"].tolist() == counter.completion_tokens(df["rejected"]).tolist()
    # same last user turn, but its own system turn (SmolLM2 adds a default one otherwise): not merged
    assert s["prompt_tokens"][4] != s["prompt_tokens"][0]
