"""drop_flagged: drop the pairs an audit flags (lowest attribution score), with a reason naming
the score and the rank; through curate() with the real pipeline and a real attribution table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairlab.config import ConfigError
from pairlab.curate import FilterContext, parse_filters


def _attribution(tmp_path, ids, values, name="tracin_cosine"):
    path = tmp_path / "audit"
    path.mkdir()
    pd.DataFrame({"pair_id": ids, name: values, "confidence": np.linspace(0, 1, len(ids))}).to_parquet(
        path / "attribution.parquet")
    return path


def test_drops_the_lowest_share_or_count(tmp_path):
    ids = [f"p{i}" for i in range(10)]
    audit_dir = _attribution(tmp_path, ids, [0.5, -3.0, 0.1, -1.0, 2.0, np.nan, 0.0, -0.5, 1.0, 3.0])
    scores = pd.DataFrame({"pair_id": ids + ["unaudited"]})
    (share,) = parse_filters([{"drop_flagged": {"score": "tracin_cosine", "top": 0.2,
                                                "attribution": str(audit_dir)}}])
    kept = share.keep(scores, FilterContext())
    # 9 audited with a value: top 0.2 -> round(1.8) = 2 lowest (p1 -3.0, p3 -1.0); unaudited kept
    assert [i for i, k in zip(scores["pair_id"], kept) if not k] == ["p1", "p3"]
    (count,) = parse_filters([{"drop_flagged": {"score": "confidence", "top": 3,
                                                "attribution": str(audit_dir / "attribution.parquet")}}])
    assert [i for i, k in zip(scores["pair_id"], count.keep(scores, FilterContext())) if not k] == ["p0", "p1", "p2"]
    assert "tracin_cosine" in share.reason and "rank" in share.reason and "top 0.2" in share.reason
    assert "top 3" in count.reason and "arm all" in count.reason


def test_bad_parameters_and_missing_audit_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="share in"):
        parse_filters([{"drop_flagged": {"score": "tracin", "top": 1.5}}])
    with pytest.raises(ConfigError, match="unknown parameter"):
        parse_filters([{"drop_flagged": {"score": "tracin", "bottom": 0.1}}])
    (f,) = parse_filters([{"drop_flagged": {"score": "tracin", "top": 0.1}}])
    with pytest.raises(ConfigError, match="needs an audit"):
        f.keep(pd.DataFrame({"pair_id": ["a"]}), FilterContext())
    audit_dir = _attribution(tmp_path, ["a", "b"], [1.0, 2.0])
    (g,) = parse_filters([{"drop_flagged": {"score": "datainf", "top": 1, "attribution": str(audit_dir)}}])
    with pytest.raises(ConfigError, match="no score 'datainf'"):
        g.keep(pd.DataFrame({"pair_id": ["a"]}), FilterContext())


def test_curate_records_the_reason_per_dropped_pair(tmp_path):
    from pairlab.curate import CurateConfig, curate
    from pairlab.simulate import simulate_pairs

    pool, _ = simulate_pairs(n=40, seed=0, topics={"arithmetic": 1.0}, eval_fraction=0.0)
    ids = pool["pair_id"].astype(str).tolist()
    audit_dir = _attribution(tmp_path, ids, np.arange(len(ids), dtype=float))  # the first 4 are the lowest
    result = curate(pool, [{"drop_flagged": {"score": "tracin_cosine", "top": 4, "attribution": str(audit_dir)}}],
                    CurateConfig(eval_fraction=0.0, cache=False, report=False, tokenizer="tiny-random-llama"),
                    out_dir=tmp_path / "cur")
    dropped = pd.read_parquet(tmp_path / "cur" / "dropped.parquet")
    assert sorted(dropped["pair_id"]) == sorted(ids[:4])
    assert len(result.train) == len(pool) - 4
    reason_col = next(c for c in dropped.columns if "reason" in c)
    assert dropped[reason_col].str.contains("tracin_cosine").all()
