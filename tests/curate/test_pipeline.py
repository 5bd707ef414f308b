"""curate(): accounting invariant, split disjointness, determinism, cache, outputs, real data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curate_checks import pair
from pairlab.curate import CurateConfig, curate
from pairlab.schema import PairDataError, build_pairs

CFG = CurateConfig(tokenizer="none")
from realdata import SHARED_DATA
SPEC = ["drop_ties", {"min_rating_gap": 1}, {"length_ratio": [0.5, 2.0]}, "dedupe_prompts",
        {"sample": {"n": 40, "stratify": "source"}}, "balance_length"]


def test_accounting_invariant_and_audit_columns(make_pool):
    pool = make_pool(300)
    r = curate(pool, SPEC, CFG)
    assert len(r.train) + len(r.eval) + len(r.dropped) == len(pool)
    ids = pd.concat([r.train["pair_id"], r.eval["pair_id"], r.dropped["pair_id"]])
    assert ids.is_unique and set(ids) == set(pool["pair_id"])
    assert set(r.dropped["dropped_by"]) <= {f if isinstance(f, str) else next(iter(f)) for f in SPEC}
    # would_drop always names dropped_by, and every name in it is a filter of the spec
    for by, would in zip(r.dropped["dropped_by"], r.dropped["would_drop"]):
        assert by in would.split(";")
    # per-step counts chain
    rows = r.steps[0]["rows_in"]
    for s in r.steps:
        assert s["rows_in"] == rows and s["rows_out"] == rows - s["dropped"]
        rows = s["rows_out"]
    assert rows == len(r.train)
    # stateless would_drop = the filter's own mask on the whole train side
    side = r.scores[r.scores["split"] == "train"]
    assert r.steps[0]["would_drop"] == int(side["is_tie"].sum())


def test_split_is_by_prompt_and_disjoint():
    rows = [pair(f"prompt {i // 3}", f"c{i}", f"r{i}") for i in range(600)]  # 3 pairs per prompt
    r = curate(build_pairs(rows), [], CurateConfig(tokenizer="none", eval_fraction=0.2))
    train_p, eval_p = set(r.train["prompt_text"]), set(r.eval["prompt_text"])
    assert train_p.isdisjoint(eval_p)
    assert 0.1 < len(eval_p) / 200 < 0.3
    assert r.eval.groupby("prompt_text").size().eq(3).all()


def test_eval_from_removes_overlap():
    pool = build_pairs([pair(f"Question number {i}?", f"c{i}", f"r{i}") for i in range(50)])
    held = build_pairs([pair("question number 3"), pair("QUESTION NUMBER 7?!"), pair("new one")])
    r = curate(pool, ["drop_ties"], CFG, eval_pairs=held)
    assert len(r.eval) == 3
    assert set(r.dropped.loc[r.dropped["dropped_by"] == "eval_overlap", "prompt_text"]) == \
        {"Question number 3?", "Question number 7?"}
    assert len(r.train) + len(r.dropped) == 50
    from pairlab.curate import prompt_hashes
    assert set(prompt_hashes(r.train)).isdisjoint(prompt_hashes(held))


def test_determinism_same_seed_same_ids(make_pool):
    pool = make_pool(300)
    a = curate(pool, SPEC, CFG)
    b = curate(pool.sample(frac=1.0, random_state=0), SPEC, CFG)  # row order shuffled
    assert sorted(a.eval["pair_id"]) == sorted(b.eval["pair_id"])
    c = curate(pool, SPEC, CFG)
    assert a.train["pair_id"].tolist() == c.train["pair_id"].tolist()
    d = curate(pool, SPEC, CurateConfig(tokenizer="none", seed=1))
    assert set(d.train["pair_id"]) != set(a.train["pair_id"])


def test_scores_cached_by_content(make_pool, tmp_path):
    pool = make_pool(100)
    first = curate(pool, ["drop_ties"], CFG)
    second = curate(pool, [{"min_rating_gap": 3}], CFG)
    assert not first.manifest["score_cache"]["hit"] and second.manifest["score_cache"]["hit"]
    changed = pool.copy()
    changed.loc[0, "chosen"] = "different text"
    assert not curate(changed, [], CFG).manifest["score_cache"]["hit"]
    other_cfg = curate(pool, [], CurateConfig(tokenizer="none", max_length=64))
    assert not other_cfg.manifest["score_cache"]["hit"]
    pd.testing.assert_frame_equal(first.scores.drop(columns=["status", "dropped_by", "would_drop"]),
                                  second.scores.drop(columns=["status", "dropped_by", "would_drop"]))


def test_outputs_and_manifest(make_pool, tmp_path):
    pool = make_pool(120)
    out = tmp_path / "cur"
    r = curate(pool, SPEC, CFG, out_dir=out)
    for name in ("pairs.parquet", "eval.parquet", "dropped.parquet", "scores.parquet",
                 "manifest.json", "curation.html"):
        assert (out / name).exists(), name
    kept = pd.read_parquet(out / "pairs.parquet")
    dropped = pd.read_parquet(out / "dropped.parquet")
    scores = pd.read_parquet(out / "scores.parquet")
    assert kept["pair_id"].tolist() == r.train["pair_id"].tolist()
    assert {"dropped_by", "drop_reason", "would_drop"} <= set(dropped.columns)
    assert len(scores) == len(pool) and scores["status"].value_counts().sum() == len(pool)
    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "curate" and m["seed"] == 0
    assert m["counts"] == {"input": 120, "train": len(kept), "eval": len(r.eval), "dropped": len(dropped),
                           "unreadable": 0}  # rows the reader rejected (none: a built pool)
    assert [s["label"] for s in m["steps"]] == [f.split(":")[0] if isinstance(f, str) else next(iter(f))
                                               for f in SPEC]
    assert m["inputs"]["pool"]["content_sha256"] and m["filters"][1] == {"min_rating_gap": 1.0}
    assert m["environment"]["packages"]["pandas"]


def test_duplicate_pair_ids_rejected(make_pool):
    pool = make_pool(5)
    pool.loc[1, "pair_id"] = pool.loc[0, "pair_id"]
    with pytest.raises(PairDataError) as err:
        curate(pool, [], CFG)
    assert err.value.field == "pair_id"


def test_drop_contaminated_requires_a_file(make_pool):
    from pairlab.config import ConfigError

    with pytest.raises(ConfigError, match="contamination_file"):
        curate(make_pool(5), ["drop_contaminated"], CFG)


def test_real_ultrafeedback_rows(smollm2_tokenizer, tmp_path):
    from pairlab.io import read_pairs

    path = SHARED_DATA / "ultrafeedback" / "trl-lib-binarized_train_slice1000.jsonl"
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    pool = read_pairs(str(path), mapping=["score_chosen=metadata.score_chosen",
                                          "score_rejected=metadata.score_rejected"])
    spec = ["drop_empty", "drop_identical", "drop_ties", {"max_total_tokens": 1024},
            "dedupe_prompts", "drop_refusals"]
    r = curate(pool, spec, CurateConfig(), tokenizer=smollm2_tokenizer, out_dir=tmp_path / "out")
    s = r.scores
    assert len(r.train) + len(r.eval) + len(r.dropped) == len(pool) == 1000
    # the publisher's quirks are all found: ties, empty responses, chosen == rejected
    assert s["is_tie"].sum() > 50 and (s["chosen_empty"] | s["rejected_empty"]).any()
    assert s["identical"].sum() >= 1
    kept = s[s["status"] == "train"]
    assert not kept[["is_tie", "identical", "chosen_empty", "rejected_empty",
                     "chosen_refusal"]].any().any()
    assert (kept["total_tokens"] <= 1024).all()
    assert s["prompt_tokens"].min() > 20 and s["chosen_tokens"].median() > 50
