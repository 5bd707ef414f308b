"""pairlab ablate end to end on tiny-random-llama: kill + resume, skip finished, report, plan."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pairlab.ablate import load_ablation_config, plan_commands, ablate, Layout
from pairlab.config import ConfigError
from pairlab.train import load_train_config
from stats_reference import assert_comparison_matches

TINY = {
    "name": "tiny ablation <script>alert(1)</script>",
    "pool": {"simulate": {"n": 120, "seed": 3, "length": "short", "rater_noise": 1.5},
             "max_eval_pairs": 12},
    "budget": {"unit": "steps", "value": 2},
    "seeds": [0],
    "curate": {"max_length": 128},
    "train": {"model": "tiny-random-llama", "save_steps": 1,
              "dpo": {"per_device_train_batch_size": 2, "max_length": 128, "learning_rate": 1e-3}},
    "eval": {"batch_size": 8, "n_prompts": 1, "max_new_tokens": 4, "modes": ["greedy"]},
    "arms": [{"name": "all", "filters": []},
             {"name": "gap1", "filters": [{"min_rating_gap": 1.0}]}],
}


def write_config(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**TINY, **changes}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    """Start `pairlab ablate` as a process, SIGKILL it once the first arm is finished,
    then re-run the same config to completion."""
    root = tmp_path_factory.mktemp("ablate")
    config = write_config(root / "ablation.yaml")
    out = root / "out"
    first_manifest = Layout(out).run("all", 0) / "manifest.json"
    proc = subprocess.Popen([sys.executable, "-m", "pairlab", "ablate", "--config", str(config), "--out",
                             str(out), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 900
    while not first_manifest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert first_manifest.exists(), "first arm never finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = first_manifest.stat().st_mtime_ns
    assert not (out / "comparison.json").exists()  # it really was interrupted
    result = ablate(load_ablation_config(str(config)), out, progress=False)
    return {"root": root, "out": out, "config": config, "result": result,
            "first_mtime": finished_before, "first_manifest": first_manifest,
            "resumed_manifest": json.loads((out / "manifest.json").read_text())}


def test_killed_ablation_resumes_without_redoing_finished_arms(killed_then_resumed):
    r = killed_then_resumed
    assert r["first_manifest"].stat().st_mtime_ns == r["first_mtime"]
    events = {e["arm"]: e for e in r["result"]["events"]}
    assert events["all"]["train"]["state"].startswith("skipped")
    assert events["gap1"]["train"]["state"] in ("trained", "resumed")
    assert r["result"]["complete"]


def test_comparison_accounts_for_every_arm(killed_then_resumed):
    out = killed_then_resumed["out"]
    comparison = json.loads((out / "comparison.json").read_text())
    assert [a["name"] for a in comparison["arms"]] == ["all", "gap1"]
    eval_pairs = pd.read_parquet(out / "pool" / "eval.parquet")
    for arm in comparison["arms"]:
        kept = pd.read_parquet(out / "arms" / arm["name"] / "curate" / "pairs.parquet")
        assert arm["pairs_kept"] == len(kept)
        truth = kept["true_preference_correct"].astype(bool)
        assert arm["true_label_noise"] == pytest.approx(1 - truth.mean())
        per_pair = pd.read_parquet(out / "arms" / arm["name"] / "seed0" / "eval" / "per_pair.parquet")
        assert set(per_pair["pair_id"]) == set(eval_pairs["pair_id"])  # same eval pairs for every arm
        run = json.loads((out / "arms" / arm["name"] / "seed0" / "run" / "manifest.json").read_text())
        assert run["config"]["dpo"]["max_steps"] == 2  # the common budget
        assert arm["seeds"][0]["accuracy"] == pytest.approx(per_pair["correct"].mean())
        metrics = json.loads((out / "arms" / arm["name"] / "seed0" / "eval" / "metrics.json").read_text())
        assert metrics["reference"]["computed"] == 0  # the base evaluation's reference pass is shared
    gap = [a for a in comparison["arms"] if a["name"] == "gap1"][0]
    all_ = [a for a in comparison["arms"] if a["name"] == "all"][0]
    assert gap["pairs_kept"] < all_["pairs_kept"]
    assert gap["true_label_noise"] < all_["true_label_noise"]  # the filter removes noisy labels
    assert gap["vs_baseline"] is not None and all_["vs_baseline"] is None
    assert comparison["base_model"]["accuracy"] == 0.0  # untrained: policy == reference


def test_comparison_numbers_match_an_independent_recomputation(killed_then_resumed):
    """Delta, discordant counts, p, MDE, Holm p and the winner, recomputed from per_pair.parquet."""
    checked = assert_comparison_matches(killed_then_resumed["out"])
    verdict = checked["comparison"]["verdict"]
    gap = checked["expected"]["arms"]["gap1"]
    if verdict["winner"] is None:  # the tiny random model learns nothing: say what it could detect
        assert "not significant" in verdict["text"] and "this design" in verdict["text"]
    assert f"{100 * gap['delta']:+.1f} points" in verdict["text"]


def test_rerun_skips_everything(killed_then_resumed):
    r = killed_then_resumed
    again = ablate(load_ablation_config(str(r["config"])), r["out"], progress=False)
    assert all(e["evaluate"].startswith("skipped") for e in again["events"])
    assert all(e["train"]["state"].startswith("skipped") for e in again["events"] if "train" in e)
    assert r["first_manifest"].stat().st_mtime_ns == r["first_mtime"]


def test_comparison_report_in_headless_chromium(killed_then_resumed, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reports"))
    from headless import chromium, probed_copy

    report = killed_then_resumed["out"] / "report.html"
    html = report.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    page = probed_copy(report, tmp_path / "probed.html")
    dom, console = chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")
    assert not [c for c in console if "ALERT" in c or "Uncaught" in c], console
    for section in ('id="verdict"', 'id="arms"', 'id="plots"', 'id="sources"', 'id="runs"'):
        assert section in dom
    assert "gap1" in dom and "true label noise" in dom
    assert "MDE" in dom and "Holm" in dom  # power and the correction, in the arms table
    shot = tmp_path / "shot.png"
    chromium(page.as_uri(), tmp_path / "profile2", f"--screenshot={shot}", width=390, height=844)
    assert shot.exists() and shot.stat().st_size > 5000


def test_report_only_and_plan(killed_then_resumed, capsys):
    r = killed_then_resumed
    cfg = load_ablation_config(str(r["config"]))
    cmds = plan_commands(cfg, Layout(r["out"]), str(r["config"]))
    assert len(cmds) == 1 + 2 + 1  # base eval, one per arm, report-only
    assert cmds[-1].endswith("--report-only")
    train_yaml = r["out"] / "arms" / "gap1" / "seed0" / "train.yaml"
    assert f"--config {train_yaml}" in cmds[2]
    tcfg = load_train_config(str(train_yaml))
    assert tcfg.dpo["max_steps"] == 2 and tcfg.model == "tiny-random-llama"
    # A resubmitted plan line on a finished run redoes nothing and succeeds (train and evaluate --resume).
    import os
    import shlex
    import subprocess
    import sys

    arm_dir = r["out"] / "arms" / "gap1" / "seed0"
    stamp = {str(p): p.stat().st_mtime_ns for p in arm_dir.rglob("*") if p.is_file()}
    line = cmds[2].replace("pairlab ", f"{shlex.quote(sys.executable)} -m pairlab ")
    proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already holds this evaluation" in proc.stdout
    assert {str(p): p.stat().st_mtime_ns for p in arm_dir.rglob("*") if p.is_file()} == stamp
    from pairlab.cli import main

    assert main(["ablate", "--config", str(r["config"]), "--out", str(r["out"]), "--report-only"]) == 0
    printed = capsys.readouterr().out
    assert "comparison report:" in printed
    assert json.loads((r["out"] / "comparison.json").read_text())["verdict"]["text"] in printed


@pytest.mark.parametrize("change, field", [
    ({"arms": [{"name": "a", "filters": [{"no_such_filter": 1}]}]}, "arms.a.filters"),
    ({"arms": [{"name": "a", "filters": [{"min_rating_gap": "high"}]}]}, "arms.a.filters"),
    ({"baseline": "nope"}, "baseline"),
    ({"budget": {"unit": "hours", "value": 1}}, "budget.unit"),
    ({"arms": []}, "arms"),
    ({"arms": [{"name": "a", "filters": []}, {"name": "a", "filters": []}]}, "arms.name"),
    ({"train": {"dpo": {"rpo_alpha": 0.5}}}, "rpo_alpha"),
    ({"pool": {"input": "x.jsonl", "simulate": {"n": 10}}}, "pool"),
])
def test_bad_configs_fail_before_any_work_naming_the_key(tmp_path, change, field):
    config = write_config(tmp_path / "bad.yaml", **change)
    with pytest.raises(ConfigError) as err:
        load_ablation_config(str(config))
    assert field in str(err.value)
    from pairlab.cli import main

    assert main(["ablate", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["ablation-demo.yaml", "ablation-h4-qwen2-gpu.yaml"])
def test_example_configs_validate(name):
    cfg = load_ablation_config(str(Path(__file__).resolve().parents[2] / "examples" / name))
    assert len(cfg.arms) >= 2 and cfg.budget.unit == "steps"  # the demo: one comparison (issue 17)


def test_comparison_parquet_and_load(killed_then_resumed):
    """comparison.parquet: one row per arm x seed, the same figures as comparison.json; pairlab.load reads it all."""
    import pairlab
    from pairlab.dirs import StageDirError

    out = killed_then_resumed["out"]
    comparison = json.loads((out / "comparison.json").read_text())
    table = pd.read_parquet(out / "comparison.parquet")
    assert list(zip(table["arm"], table["seed"])) == [(a["name"], s["seed"]) for a in comparison["arms"]
                                                      for s in a["seeds"]]
    for arm in comparison["arms"]:
        row = table[table["arm"] == arm["name"]].iloc[0]
        assert row["accuracy"] == pytest.approx(arm["seeds"][0]["accuracy"])
        assert row["pairs_kept"] == arm["pairs_kept"]
    abl = pairlab.load(out)
    assert type(abl).__name__ == "Ablation" and abl.arms == ["all", "gap1"]
    assert abl.table.equals(table) and len(abl.eval_pairs) == len(pd.read_parquet(out / "pool" / "eval.parquet"))
    ev = abl.evaluation("gap1", 0)
    assert type(ev).__name__ == "Evaluation"
    assert ev.metrics["accuracy"] == pytest.approx(ev.per_pair["correct"].mean())
    run = abl.run("gap1", 0)
    assert run.train_log["step"].max() == 2 and run.adapter.is_dir()
    assert abl.curation("gap1").counts["train"] == len(abl.curation("gap1").pairs)
    with pytest.raises(AttributeError, match="has no 'nope'"):
        ev.nope
    with pytest.raises(StageDirError):
        pairlab.load(out / "arms")  # not a stage directory


def test_export_an_ablation_arm(killed_then_resumed, tmp_path):
    """`pairlab export ABLATION --arm NAME`: the arm's run, its curated data and its evaluation in the card."""
    from pairlab.cli import main

    out = killed_then_resumed["out"]
    assert main(["export", str(out), "--arm", "gap1", "--out", str(tmp_path / "gap1")]) == 0
    trl = yaml.safe_load((tmp_path / "gap1" / "trl_dpo.yaml").read_text())
    assert trl["hub_model_id"] == "out-gap1-seed0" and trl["max_steps"] == 2
    kept = pd.read_parquet(out / "arms" / "gap1" / "curate" / "pairs.parquet")
    assert len(pd.read_parquet(tmp_path / "gap1" / "data" / "train.parquet")) == len(kept)
    metrics = json.loads((out / "arms" / "gap1" / "seed0" / "eval" / "metrics.json").read_text())
    card = (tmp_path / "gap1" / "README.md").read_text()
    assert f"implicit-reward accuracy | {100 * metrics['accuracy']:.1f}%" in card and "min_rating_gap" in card


def test_phase_timings_in_comparison_and_manifest(killed_then_resumed):
    """Each phase's wall time and share (what `make bench` reports for `make demo`)."""
    out = killed_then_resumed["out"]
    timings = killed_then_resumed["result"]["phase_timings"]  # of the resumed run (later tests rerun it)
    assert killed_then_resumed["resumed_manifest"]["phase_timings"] == timings
    seconds, share = timings["seconds"], timings["share"]
    expected = {"pool_and_curation", "model_conversion", "reference_pass", "evaluate/base", "train/all/seed0",
                "evaluate/all/seed0", "train/gap1/seed0", "evaluate/gap1/seed0", "reports", "other"}
    assert set(seconds) == expected and set(share) == expected
    assert all(v >= 0 for v in seconds.values())
    assert sum(seconds.values()) == pytest.approx(timings["wall_s"], abs=0.05)
    assert sum(share.values()) == pytest.approx(1.0, abs=0.01)
    assert seconds["model_conversion"] == 0  # the model cache was already built: no conversion per arm
    # the resumed run skipped the finished training of "all" (a manifest check) and trained "gap1"
    assert seconds["train/gap1/seed0"] > seconds["train/all/seed0"]
