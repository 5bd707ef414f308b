"""Planning: `pairlab power` and the pure parts of the plan (no model): observations needed,
seeds vs eval pairs, time from manifests, discordance from per_pair files."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from pairlab import artifacts, stats
from pairlab.ablate.plan import (DEFAULT_DISCORDANCE, DEFAULT_TIMINGS, Timings, design_table,
                                 measured_discordance, measured_timings)
from pairlab.cli import main


def test_design_table_by_hand():
    t = Timings(seconds_per_step=2.0, run_overhead_s=10.0, seconds_per_pair=0.5, eval_overhead_s=5.0, source="x")
    table = design_table(0.1, 0.25, n_arms=3, steps_per_run=20, timings=t, available_pairs=100)
    # two comparisons with the baseline: Holm's first step tests at alpha / 2
    assert table["alpha_plan"] == 0.025
    needed = stats.pairs_needed(0.1, 0.25, alpha=0.025)
    assert table["observations_needed"] == needed
    for row in table["rows"]:
        pairs = math.ceil(needed / row["seeds"])
        assert row["eval_pairs"] == pairs and row["fits"] == (pairs <= 100)
        runs = 3 * row["seeds"]
        assert row["train_s"] == pytest.approx(runs * (20 * 2.0 + 10.0))
        assert row["eval_s"] == pytest.approx((runs + 1) * (pairs * 0.5 + 5.0))  # + the base model
    fitting = [r["seeds"] for r in table["rows"] if r["fits"]]
    assert table["recommended"] == fitting[0]  # the fewest seeds that fit: pairs before seeds
    assert design_table(0.5, 0.3, n_arms=2, steps_per_run=1, timings=t)["observations_needed"] is None


def test_timings_come_from_this_machines_manifests(tmp_path):
    assert measured_timings(tmp_path).source.startswith("documented defaults")
    assert measured_timings(None).seconds_per_step == DEFAULT_TIMINGS["seconds_per_step"]
    for i, (sps, wall, runtime) in enumerate([(3.0, 50.0, 30.0), (5.0, 70.0, 60.0), (4.0, 45.0, 40.0)]):
        artifacts.write_manifest(tmp_path / f"run{i}", stage="train", config={"model": "m"}, seed=0,
                                 timing={"seconds_per_step": sps, "train_runtime_s": runtime})
        manifest = artifacts.read_json(tmp_path / f"run{i}" / "manifest.json")
        artifacts.write_json(tmp_path / f"run{i}" / "manifest.json", {**manifest, "wall_time_s": wall})
    artifacts.write_manifest(tmp_path / "eval", stage="evaluate", config={}, settings={"model": "m"},
                             inputs={"eval": {"n_pairs": 10}}, timing={"logps_s_per_pair": 0.2, "total_s": 12.0})
    artifacts.write_manifest(tmp_path / "other", stage="train", config={"model": "another"},
                             timing={"seconds_per_step": 99.0, "train_runtime_s": 1.0})
    t = measured_timings(tmp_path, model="m")
    assert t.seconds_per_step == 4.0 and t.run_overhead_s == 10.0  # medians of (20, 10, 5)
    assert t.seconds_per_pair == 0.2 and t.eval_overhead_s == pytest.approx(10.0)
    assert "measured on this machine" in t.source and "1 evaluation" in t.source
    assert measured_timings(tmp_path).seconds_per_step == 4.5  # every model's runs without a filter


def test_discordance_from_per_pair_files(tmp_path):
    (tmp_path / "ablation.yaml").write_text(yaml.safe_dump(
        {"arms": [{"name": "all"}, {"name": "gap"}], "seeds": [0, 1]}), encoding="utf-8")
    ids = [f"p{i}" for i in range(4)]
    rows = {("all", 0): [1, 1, 0, 0], ("gap", 0): [1, 0, 1, 0], ("all", 1): [1, 1, 1, 1], ("gap", 1): [1, 1, 1, 0]}
    for (arm, seed), correct in rows.items():
        d = tmp_path / "arms" / arm / f"seed{seed}" / "eval"
        d.mkdir(parents=True)
        # stored in another order: the pairs are matched by pair_id
        pd.DataFrame({"pair_id": ids[::-1], "correct": [bool(c) for c in correct[::-1]]}).to_parquet(
            d / "per_pair.parquet")
    found = measured_discordance(tmp_path)
    assert found["discordance"] == pytest.approx(3 / 8) and found["observations"] == 8
    assert measured_discordance(tmp_path / "nothing") is None


def test_power_command(capsys):
    assert main(["power", "--target-diff", "0.05"]) == 0
    out = capsys.readouterr().out
    assert f"needed: {stats.pairs_needed(0.05, DEFAULT_DISCORDANCE):,} paired observations" in out
    assert "assumed default" in out and "documented defaults" in out and "recommended: 1 seed" in out
    assert main(["power", "--target-diff", "0.1", "--discordance", "0.25", "--arms", "3", "--eval-pairs", "48"]) == 0
    out = capsys.readouterr().out
    assert "planned at α/2 = 0.025" in out and "(the eval split has only 48)" in out
    assert main(["power", "--target-diff", "0.5", "--discordance", "0.3"]) == 0
    assert "no design detects 50.0 points" in capsys.readouterr().out
    assert main(["power", "--target-diff", "5"]) == 2
    assert "--target-diff" in capsys.readouterr().err
