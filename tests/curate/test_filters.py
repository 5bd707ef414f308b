"""Each filter on hand-built score tables with known answers; spec validation errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairlab.config import ConfigError
from pairlab.curate import FILTERS, FilterContext, parse_filters


def scores(**cols):
    n = len(next(iter(cols.values())))
    base = {"pair_id": [f"p{i}" for i in range(n)]}
    return pd.DataFrame({**base, **cols})


def keep(spec, df, **ctx):
    (f,) = parse_filters([spec])
    return f.keep(df, FilterContext(**ctx)).tolist()


def test_rating_filters():
    df = scores(rating_gap=[3.0, 2.0, 1.0, 0.0, np.nan], is_tie=[False, False, False, True, False])
    assert keep({"min_rating_gap": 2}, df) == [True, True, False, False, False]
    assert keep({"max_rating_gap": 1}, df) == [False, False, True, True, False]
    assert keep("drop_ties", df) == [True, True, True, False, True]
    assert keep("drop_unrated", df) == [True, True, True, True, False]


def test_length_filters():
    df = scores(total_tokens=[100, 1024, 1025], length_ratio=[0.4, 1.0, 2.5],
                would_truncate=[False, False, True])
    assert keep({"max_total_tokens": 1024}, df) == [True, True, False]
    assert keep({"length_ratio": [0.5, 2.0]}, df) == [False, True, False]
    assert keep({"length_ratio": {"min": 0.3, "max": 3}}, df) == [True, True, True]
    assert keep("drop_truncated", df) == [True, True, False]


def test_text_quality_filters():
    df = scores(chosen_empty=[True, False, False, False], rejected_empty=[False, True, False, False],
                identical=[False, False, True, False], near_identical=[False, False, True, True],
                chosen_refusal=[True, False, False, False], rejected_refusal=[False, True, False, False],
                contaminated=[False, False, True, False])
    assert keep("drop_empty", df) == [False, False, True, True]
    assert keep("drop_identical", df) == [True, True, False, True]
    assert keep("drop_near_identical", df) == [True, True, False, False]
    assert keep("drop_refusals", df) == [False, True, True, True]
    assert keep({"drop_refusals": "rejected"}, df) == [True, False, True, True]
    assert keep({"drop_refusals": {"side": "either"}}, df) == [False, False, True, True]
    assert keep("drop_contaminated", df) == [True, True, False, True]


def test_source_filters():
    df = scores(source=["truthful_qa", "evol_instruct", "", "sharegpt"])
    assert keep({"drop_sources": ["truthful_qa", "sharegpt"]}, df) == [False, True, True, False]
    assert keep({"keep_sources": "evol_instruct"}, df) == [False, True, False, False]


def test_dedupe_prompts_keeps_first_exact_or_cluster():
    df = scores(prompt_hash=["a", "b", "a", "c", "b"], prompt_cluster=["a", "b", "a", "a", "b"])
    assert keep("dedupe_prompts", df) == [True, True, False, True, False]
    assert keep({"dedupe_prompts": {"near": True}}, df) == [True, True, False, False, False]


def test_exclude_prompts_from(tmp_path):
    from pairlab.curate.text import normalize_column, sha16
    from pairlab.schema import build_pairs

    path = tmp_path / "held_out.txt"
    path.write_text("Name three primary colors.\n")
    pairs = build_pairs([{"prompt": [{"role": "user", "content": t}], "chosen": "x", "rejected": "y"}
                         for t in ["name three primary colors", "Name a color."]])
    df = scores(prompt_hash=sha16(normalize_column(pairs["prompt_text"])).tolist())
    assert keep({"exclude_prompts_from": str(path)}, df, pairs=pairs, scores=df) == [False, True]


def test_sample_is_exact_seeded_and_stratified():
    n = 1000
    df = scores(source=np.where(np.arange(n) < 750, "big", "small"))
    a = np.array(keep({"sample": {"n": 100, "seed": 1, "stratify": "source"}}, df))
    assert a.sum() == 100 and a[:750].sum() == 75 and a[750:].sum() == 25
    assert (a == np.array(keep({"sample": {"n": 100, "seed": 1, "stratify": "source"}}, df))).all()
    b = np.array(keep({"sample": {"n": 100, "seed": 2}}, df))
    assert b.sum() == 100 and not (a == b).all()
    assert sum(keep({"sample": {"fraction": 0.1}}, df)) == 100
    assert all(keep({"sample": 5000}, df))                 # n above the pool: keep all
    # stable under pool changes: a pair's membership depends on its id and the seed only
    sub = df.iloc[::2]
    (f,) = parse_filters([{"sample": {"fraction": 0.5, "seed": 3}}])
    assert f.keep(sub, FilterContext()).sum() == 250


def test_balance_length_equalizes_directions():
    diff = [5] * 70 + [-3] * 20 + [0] * 10
    df = scores(length_diff=diff)
    k = np.array(keep("balance_length", df))
    d = np.array(diff)
    assert (d[k] > 0).sum() == 20 and (d[k] < 0).sum() == 20 and (d[k] == 0).sum() == 10


def test_keep_quantile_by_rank_with_discrete_scores():
    gaps = [0.0] * 40 + [1.0] * 40 + [3.0] * 20 + [np.nan] * 5
    df = scores(rating_gap=gaps)
    hard = np.array(keep({"keep_quantile": {"score": "rating_gap", "lo": 0.0, "hi": 0.3}}, df))
    assert hard.sum() == 30 and set(np.array(gaps)[hard]) == {0.0}
    easy = np.array(keep({"keep_quantile": {"score": "rating_gap", "lo": 0.8, "hi": 1.0}}, df))
    assert easy.sum() == 20 and set(np.array(gaps)[easy]) == {3.0}
    mid = np.array(keep({"keep_quantile": {"score": "rating_gap", "lo": 0.3, "hi": 0.8}}, df))
    assert not (hard & mid).any() and (hard | mid | easy).sum() == 100  # NaN never kept


def test_score_range():
    df = scores(prompt_tokens=[5, 50, 600, 100])
    assert keep({"score_range": {"score": "prompt_tokens", "min": 8, "max": 512}}, df) == [False, True, False, True]


def test_every_registered_filter_has_an_example_that_parses():
    for name, definition in FILTERS.items():
        import yaml

        spec = yaml.safe_load(definition.example)
        if name == "exclude_prompts_from":
            continue  # needs an existing file
        assert parse_filters([spec])[0].name == name


@pytest.mark.parametrize("spec, key", [
    (["drop_ties", {"no_such_filter": 1}], "filters[1].no_such_filter"),
    ([{"min_rating_gap": "two"}], "filters[0].min_rating_gap"),
    ([{"length_ratio": [2.0, 0.5]}], "filters[0].length_ratio"),
    ([{"length_ratio": [0.5]}], "filters[0].length_ratio"),
    ([{"max_total_tokens": 10.5}], "filters[0].max_total_tokens"),
    ([{"sample": {"n": -1}}], "filters[0].sample.n"),
    ([{"sample": {"n": 10, "stratify": "colour"}}], "filters[0].sample.stratify"),
    ([{"sample": {"n": 10, "sed": 1}}], "filters[0].sample.sed"),
    ([{"sample": {"n": 10, "fraction": 0.1}}], "filters[0].sample"),
    ([{"keep_quantile": {"score": "nope", "hi": 0.3}}], "filters[0].keep_quantile.score"),
    ([{"keep_quantile": {"score": "rating_gap", "lo": 0.5, "hi": 0.2}}], "filters[0].keep_quantile"),
    ([{"drop_ties": "yes"}], "filters[0].drop_ties"),
    ([{"drop_refusals": {"side": "both"}}], "filters[0].drop_refusals.side"),
    ([{"drop_sources": []}], "filters[0].drop_sources"),
    ([{"exclude_prompts_from": "/no/such/file.txt"}], "filters[0].exclude_prompts_from.path"),
    ([{"a": 1, "b": 2}], "filters[0]"),
])
def test_bad_spec_fails_naming_the_key(spec, key):
    with pytest.raises(ConfigError) as err:
        parse_filters(spec)
    assert err.value.field == key
    assert f"'{key}'" in str(err.value)


def test_spec_forms_and_repeats():
    fs = parse_filters({"filters": ["drop_ties", {"drop_empty": False}, {"min_rating_gap": 1},
                                    {"min_rating_gap": 2}]})
    assert [f.label for f in fs] == ["drop_ties", "min_rating_gap", "min_rating_gap#2"]


def test_example_filter_files_parse():
    from pathlib import Path

    from pairlab.curate import load_filter_file

    files = sorted((Path(__file__).parents[2] / "examples" / "filters").glob("*.yaml"))
    assert files
    for path in files:
        filters, config = load_filter_file(path)
        assert filters, path
