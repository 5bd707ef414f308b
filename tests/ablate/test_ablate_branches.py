"""Every AblationConfig branch through the CLI, in one small two-seed ablation on tiny-random-llama:
`pool.input`, `pool.eval_from`, `pool.flip_rate`, `budget: epochs`, per-arm `train` overrides,
`evaluate_base: false`, `--plan` (with its power plan), `pairlab power --from`, and the two seeds
pooled in one paired test (recomputed from the per_pair files)."""
from __future__ import annotations

import contextlib
import io
import json
import math

import pandas as pd
import pytest
import yaml

from pairlab.cli import main
from stats_reference import assert_comparison_matches

pytestmark = pytest.mark.slow

FLIP_RATE = 0.5
BATCH = 4


@pytest.fixture(scope="module")
def branches(tmp_path_factory):
    from pairlab.io import write_pairs
    from pairlab.simulate import simulate_pairs

    root = tmp_path_factory.mktemp("ablate-branches")
    train, held_out = simulate_pairs(n=40, seed=7, length="short", eval_fraction=0.3, rater_noise=1.5)
    eval_pairs = held_out.head(6).reset_index(drop=True)
    # one pool row shares its prompt with the eval split: eval_from must drop it from every arm
    pool = pd.concat([train.head(8), eval_pairs.head(1)], ignore_index=True)
    write_pairs(pool, root / "pool.jsonl")
    write_pairs(eval_pairs, root / "eval.jsonl")
    config = {
        "name": "branches",
        "pool": {"input": str(root / "pool.jsonl"), "eval_from": str(root / "eval.jsonl"),
                 "flip_rate": FLIP_RATE, "flip_by": "uniform"},
        "budget": {"unit": "epochs", "value": 1},
        "seeds": [0, 1],
        "evaluate_base": False,
        "curate": {"max_length": 128},
        "train": {"model": "tiny-random-llama", "save_steps": 50,
                  "dpo": {"per_device_train_batch_size": BATCH, "max_length": 128, "learning_rate": 1e-3}},
        "eval": {"batch_size": 8, "generate": False},
        "arms": [{"name": "all", "filters": []},
                 {"name": "gap1", "filters": [{"min_rating_gap": 1.0}], "train": {"dpo.beta": 0.3}}],
    }
    path = root / "ablation.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = root / "out"
    return {"root": root, "config": path, "out": out, "pool": pool, "eval": eval_pairs}


@pytest.fixture(scope="module")
def planned(branches):
    """`pairlab ablate --plan` output (stdout), before anything has run."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["ablate", "--config", str(branches["config"]), "--out", str(branches["out"]), "--plan",
                     "--target-diff", "0.1"]) == 0
    return buffer.getvalue()


@pytest.fixture(scope="module")
def ran(branches, planned):
    assert main(["ablate", "--config", str(branches["config"]), "--out", str(branches["out"]),
                 "--no-progress"]) == 0
    return branches["out"]


def test_plan_prints_power_and_cost_then_commands_without_a_base_evaluation(planned):
    lines = planned.strip().splitlines()
    comments = [ln for ln in lines if ln.startswith("# ")]
    commands = [ln for ln in lines if not ln.startswith("#")]
    assert comments[0].startswith("# power: detect a 10.0-point accuracy difference with 80% power")
    assert any("this config: 6 eval pairs × 2 seeds" in ln for ln in comments)  # its own MDE
    assert any("assumed default" in ln for ln in comments)  # nothing evaluated yet
    assert any("documented defaults" in ln for ln in comments)  # no manifest of a run yet
    table = [ln for ln in comments if ln[2:].split() and ln[2:].split()[0] in {"1", "2", "3", "5"}]
    assert len(table) == 4
    # evaluate_base: false -> no `pairlab evaluate --model` line; 2 arms x 2 seeds + report-only
    assert len(commands) == 4 + 1 and not any("--model" in c for c in commands)


def test_pool_input_eval_from_and_flip_rate(ran, branches):
    pool = pd.read_parquet(ran / "pool" / "pool.parquet")
    eval_pairs = pd.read_parquet(ran / "pool" / "eval.parquet")
    assert set(eval_pairs["pair_id"]) == set(branches["eval"]["pair_id"])  # eval_from, as given
    assert set(pool["original_pair_id"]) == set(branches["pool"]["pair_id"])  # pool.input, every row
    assert int(pool["flipped"].sum()) == round(FLIP_RATE * len(branches["pool"]))  # flip_rate
    truth_before = branches["pool"].set_index("pair_id")["true_preference_correct"].astype(bool)
    expected = truth_before.loc[pool["original_pair_id"]].to_numpy() ^ pool["flipped"].to_numpy(bool)
    assert (pool["true_preference_correct"].to_numpy(bool) == expected).all()  # a flip makes a label wrong
    overlap = branches["eval"]["prompt"].iloc[0]
    for arm in ("all", "gap1"):
        kept = pd.read_parquet(ran / "arms" / arm / "curate" / "pairs.parquet")
        assert not any(p == overlap for p in kept["prompt"])  # eval prompts never train


def test_epochs_budget_and_per_arm_overrides(ran):
    for arm, beta in (("all", None), ("gap1", 0.3)):
        kept = len(pd.read_parquet(ran / "arms" / arm / "curate" / "pairs.parquet"))
        for seed in (0, 1):
            manifest = json.loads((ran / "arms" / arm / f"seed{seed}" / "run" / "manifest.json").read_text())
            dpo = manifest["config"]["dpo"]
            assert dpo["num_train_epochs"] == 1 and dpo["max_steps"] == -1
            assert manifest["global_step"] == math.ceil(kept / BATCH)  # one pass over the arm's pairs
            assert manifest["seed"] == seed
            effective = manifest["config"]["dpo_effective"]["beta"]
            if beta is None:
                assert effective != 0.3  # the common setting
            else:
                assert effective == beta  # the arm's override


def test_no_base_evaluation(ran):
    comparison = json.loads((ran / "comparison.json").read_text())
    assert comparison["base_model"] is None and not (ran / "base" / "eval").exists()


def test_two_seeds_pooled_in_one_test_and_recomputed(ran):
    checked = assert_comparison_matches(ran)
    gap = next(a for a in checked["comparison"]["arms"] if a["name"] == "gap1")["vs_baseline"]
    assert gap["n_seeds"] == 2 and gap["n_pairs"] == 12 and len(gap["per_seed"]) == 2
    assert "6 pairs × 2 seeds" in checked["comparison"]["verdict"]["text"] or gap["significant"]
    html = (ran / "report.html").read_text(encoding="utf-8")
    assert "seeds: " in html and "MDE" in html and "Holm" in html


def test_power_from_the_finished_ablation_uses_its_measurements(ran, capsys):
    assert main(["power", "--from", str(ran), "--target-diff", "0.2"]) == 0
    out = capsys.readouterr().out
    assert f"measured in {ran}" in out  # discordance from the per_pair files
    assert "measured on this machine" in out  # s/step and s/pair from the manifests
    assert main(["power", "--from", str(ran / "nope"), "--target-diff", "0.2"]) == 2
