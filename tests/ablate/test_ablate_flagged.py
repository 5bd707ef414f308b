"""An ablation arm made of the audit's answer (drop_flagged) through the CLI on tiny-random-llama."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

FLAGGED = {
    "name": "audit-driven filtering",
    "pool": {"simulate": {"n": 60, "seed": 3, "length": "short"}, "flip_rate": 0.2, "noise": "length",
             "max_eval_pairs": 8},
    "budget": {"unit": "steps", "value": 2},
    "seeds": [0],
    "curate": {"max_length": 128, "tokenizer": "tiny-random-llama"},
    "train": {"model": "tiny-random-llama", "save_steps": 1,
              "dpo": {"per_device_train_batch_size": 2, "max_length": 128, "learning_rate": 1e-3}},
    "eval": {"batch_size": 8, "n_prompts": 1, "max_new_tokens": 4, "modes": ["greedy"]},
    "evaluate_base": False,
    "arms": [{"name": "all", "filters": []},
             {"name": "audit-top10", "filters": [{"drop_flagged": {"score": "tracin_cosine", "top": 0.1,
                                                                    "from_arm": "all"}}]}],
}


@pytest.mark.slow
@pytest.mark.heavy
def test_drop_flagged_arm_trains_on_what_the_audit_leaves(tmp_path):
    from pairlab.cli import main

    config = tmp_path / "ablation.yaml"
    config.write_text(yaml.safe_dump(FLAGGED), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["ablate", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    attribution = pd.read_parquet(out / "audit" / "all" / "attribution.parquet")
    flagged = set(attribution.nsmallest(round(0.1 * len(attribution)), "tracin_cosine")["pair_id"])
    assert flagged
    from pairlab.ablate import Layout

    layout = Layout(out)
    all_pairs = set(pd.read_parquet(layout.curate("all") / "pairs.parquet")["pair_id"])
    kept = set(pd.read_parquet(layout.curate("audit-top10") / "pairs.parquet")["pair_id"])
    assert kept == all_pairs - flagged
    dropped = pd.read_parquet(layout.curate("audit-top10") / "dropped.parquet")
    reasons = dropped.loc[dropped["pair_id"].isin(flagged)]
    assert len(reasons) == len(flagged)
    assert reasons.astype(str).apply(lambda r: r.str.contains("tracin_cosine").any(), axis=1).all()
    comparison = json.loads((out / "comparison.json").read_text())
    assert "audit-top10" in json.dumps(comparison["arms"] if "arms" in comparison else comparison)
    assert "audit-top10" in (out / "report.html").read_text()
