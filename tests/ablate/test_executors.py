"""`pairlab ablate --executor local|ray|slurm` on one tiny grid (tiny-random-llama): the same
comparison from each, the reference computed once by the prefill, finished runs skipped,
Slurm's dry-run scripts, tracking read back (TensorBoard EventAccumulator, W&B offline)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks.bench_executors import GRID  # the grid `make bench` times, one definition
from pairlab.ablate import Layout, load_ablation_config

EXECUTORS = ("local", "ray", "slurm")
TRACK = {"local": ["tensorboard", "wandb"], "ray": ["tensorboard"], "slurm": []}


def write_grid(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**GRID, **changes}), encoding="utf-8")
    return path


class _Grids(dict):
    """The grid under each executor, run on first use (each with its own reference cache, so each
    prefill computes): `make test` runs local and ray; slurm (submitit's local executor, five
    fresh processes) only under `make test-all`."""

    def __missing__(self, name: str):
        from pairlab.executors import run_ablation

        root = self["root"]
        saved = {k: os.environ.get(k) for k in ("PAIRLAB_CACHE", "WANDB_MODE", "WANDB_SILENT", "OMP_NUM_THREADS")}
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1",
                          PAIRLAB_CACHE=str(root / f"cache-{name}"))
        try:
            cfg = load_ablation_config(str(self["config"]), [f"report_to={TRACK[name]}"])
            started = time.time()
            self[name] = run_ablation(cfg, root / name, executor=name, progress=False)
            self["seconds"][name] = round(time.time() - started, 1)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        print("executor wall seconds:", self["seconds"])
        return self[name]


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    root = tmp_path_factory.mktemp("executors")
    return _Grids(root=root, config=write_grid(root / "grid.yaml"), seconds={})


def _figures(comparison: dict) -> dict:
    """What must not depend on the executor: per arm x seed accuracy, margin, kept pairs, comparison."""
    out = {}
    for arm in comparison["arms"]:
        for s in arm["seeds"]:
            out[(arm["name"], s["seed"])] = (arm["pairs_kept"], s["status"], s["accuracy"], round(s["mean_margin"], 5))
        vs = arm.get("vs_baseline") or {}
        out[(arm["name"], "vs")] = tuple((k, round(v, 6) if isinstance(v, float) else v) for k, v in sorted(vs.items())
                                         if isinstance(v, (int, float, bool)))
    return out


HEAVY = pytest.mark.heavy


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ray", pytest.param("slurm", marks=HEAVY)])
def test_every_executor_gives_the_same_comparison(grids, name):
    local = _figures(grids["local"])
    assert grids["local"]["complete"] and grids[name]["complete"]
    assert len(local) == 4 and local[("gap1", 0)][0] < local[("all", 0)][0]
    assert _figures(grids[name]) == local, name
    if name == "slurm":
        assert len(grids["slurm"]["submitted"]["arms"]) == 2  # one array task per arm x seed


@pytest.mark.slow
@pytest.mark.parametrize("name", ["local", "ray", pytest.param("slurm", marks=HEAVY)])
def test_reference_is_computed_once_by_the_prefill_under_every_executor(grids, name):
    layout = Layout(grids["root"] / name)
    prefill = grids[name]["reference_prefill"]
    kept = pd.concat([pd.read_parquet(layout.curate(a) / "pairs.parquet") for a in ("all", "gap1")])
    expected = len(set(kept["pair_id"]) | set(pd.read_parquet(layout.eval)["pair_id"]))
    assert prefill["computed"] == expected, name
    for arm in ("all", "gap1"):
        run = json.loads((layout.run(arm, 0) / "manifest.json").read_text())
        metrics = json.loads((layout.arm_eval(arm, 0) / "metrics.json").read_text())
        assert run["ref_cache"]["computed"] == 0 and run["ref_cache"]["cache_hits"] > 0, (name, arm)
        assert metrics["reference"]["computed"] == 0, (name, arm)


@pytest.mark.slow
def test_ray_ran_each_run_as_a_task_in_its_own_worker(grids):
    events = [e for e in grids["ray"]["events"] if "seed" in e]
    assert [(e["arm"], e["seed"]) for e in events] == [("all", 0), ("gap1", 0)]
    assert {e["executor"] for e in events} == {"ray"}
    assert len({e["pid"] for e in events}) == 2 and os.getpid() not in {e["pid"] for e in events}


@pytest.mark.slow
@pytest.mark.heavy
def test_slurm_ran_each_run_as_a_submitit_job(grids):
    assert {e["executor"] for e in grids["slurm"]["events"] if "seed" in e} == {"local"}  # submitit's local jobs


@pytest.mark.slow
def test_ray_rerun_skips_finished_runs(grids):
    from pairlab.executors import run_ablation

    layout = Layout(grids["root"] / "ray")
    before = {a: (layout.run(a, 0) / "manifest.json").stat().st_mtime_ns for a in ("all", "gap1")}
    os.environ["PAIRLAB_CACHE"], old = str(grids["root"] / "cache-ray"), os.environ.get("PAIRLAB_CACHE")
    try:
        again = run_ablation(load_ablation_config(str(grids["config"])), layout.root, executor="ray", progress=False)
    finally:
        os.environ.pop("PAIRLAB_CACHE") if old is None else os.environ.__setitem__("PAIRLAB_CACHE", old)
    assert {a: (layout.run(a, 0) / "manifest.json").stat().st_mtime_ns for a in ("all", "gap1")} == before
    assert _figures(again) == _figures(grids["ray"])
    assert again["reference_prefill"]["computed"] > 0  # the record of the pass that computed, kept


# ---------------------------------------------------------------- tracking

def read_wandb(path: Path) -> list:
    """The records of a W&B offline run file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.slow
def test_tensorboard_log_reads_back_one_run_per_arm_and_seed(grids):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for name in ("local", "ray"):  # ray: each run logged from its worker, the comparison from the driver
        logdir = grids["root"] / name / "tracking" / "tensorboard"
        assert sorted(p.name for p in logdir.iterdir()) == ["all-seed0", "gap1-seed0"]
        for arm in grids[name]["arms"]:
            acc = EventAccumulator(str(logdir / f"{arm['name']}-seed0"))
            acc.Reload()
            assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]  # the training curve
            assert acc.Scalars("eval/accuracy")[-1].value == pytest.approx(arm["seeds"][0]["accuracy"])
            assert acc.Scalars("hparam/accuracy")[-1].value == pytest.approx(arm["seeds"][0]["accuracy"])
            start = plugin_data_pb2.HParamsPluginData.FromString(
                acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
            assert start.hparams["pairs_kept"].number_value == arm["pairs_kept"]  # the comparison table row
            assert json.loads(start.hparams["filters"].string_value) == arm["filters"]
            text = acc.Tensors("arm/text_summary")[0].tensor_proto.string_val[0].decode()
            assert f"**pairs_kept**: {arm['pairs_kept']}" in text


@pytest.mark.slow
def test_wandb_offline_runs_grouped_by_ablation_with_table_and_artifacts(grids):
    runs = sorted((grids["root"] / "local" / "tracking" / "wandb").glob("offline-run-*/run-*.wandb"))
    seen = {}
    for path in runs:
        records = read_wandb(path)
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                   for r in records if r.WhichOneof("record_type") == "history"]
        artifact_files = [m.path for r in records if r.WhichOneof("record_type") == "artifact"
                          for m in r.artifact.manifest.contents]
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        seen[run.display_name] = {"group": run.run_group, "job": run.job_type, "history": history,
                                  "artifacts": artifact_files, "config": config}
    assert set(seen) == {"all-seed0", "gap1-seed0", "comparison"}
    assert {v["group"] for v in seen.values()} == {"tiny grid"}
    arm = seen["gap1-seed0"]
    assert [h["_step"] for h in arm["history"] if "train/loss" in h] == [1, 2]
    assert arm["config"]["pairs_kept"] == grids["local"]["arms"][1]["pairs_kept"]
    assert json.loads(arm["config"]["filters"]) == [{"min_rating_gap": 1.0}]
    assert "report.html" in arm["artifacts"] and "curation.html" in arm["artifacts"]
    comparison = seen["comparison"]
    assert any(k.startswith("comparison/") for h in comparison["history"] for k in h)  # the W&B Table
    assert {"report.html", "comparison.json"} <= set(comparison["artifacts"])


# ---------------------------------------------------------------- Slurm scripts, missing extras

def test_slurm_dry_run_writes_array_script_and_dependency_chain(tmp_path):
    pytest.importorskip("submitit")
    config = write_grid(tmp_path / "grid.yaml", seeds=[0, 1], executor={
        "slurm": {"partition": "a100", "gpus_per_task": 1, "cpus_per_task": 8, "mem_gb": 64, "time_min": 90,
                  "array_parallelism": 3, "setup": ["source /opt/venv/bin/activate"]}})
    out = tmp_path / "out"
    from pairlab.cli import main

    assert main(["ablate", "--config", str(config), "--out", str(out), "--executor", "slurm", "--dry-run"]) == 0
    folder = out / "slurm"
    arms = (folder / "arms.sbatch").read_text()
    assert "#SBATCH --array=0-3%3" in arms  # 2 arms x 2 seeds, at most 3 at once
    assert "#SBATCH --partition=a100" in arms and "#SBATCH --gpus-per-task=1" in arms
    assert "#SBATCH --time=90" in arms and "#SBATCH --cpus-per-task=8" in arms and "#SBATCH --mem=64GB" in arms
    assert "source /opt/venv/bin/activate" in arms
    assert re.search(r'--step arm --task "\$SLURM_ARRAY_TASK_ID"', arms)
    prefill, report = (folder / "prefill.sbatch").read_text(), (folder / "report.sbatch").read_text()
    assert "--step prefill" in prefill and "#SBATCH --time=120" in prefill and "--array" not in prefill
    assert "--step report" in report and "#SBATCH --time=60" in report
    submit = (folder / "submit.sh").read_text()
    chain = [line for line in submit.splitlines() if line.startswith(("prefill=", "arms=", "report="))]
    assert "sbatch --parsable prefill.sbatch" in chain[0]
    assert "--dependency=afterok:${prefill} arms.sbatch" in chain[1]
    assert "--dependency=afterok:${arms} report.sbatch" in chain[2]
    assert subprocess.run(["bash", "-n", str(folder / "submit.sh")]).returncode == 0
    # The scripts run the resolved config: it loads back to the same grid.
    again = load_ablation_config(str(folder / "ablation.yaml"))
    assert [a.name for a in again.arms] == ["all", "gap1"] and again.seeds == [0, 1]
    assert not (out / "pool").exists()  # a dry run does no work


def test_missing_extra_names_the_pip_command(tmp_path, monkeypatch, capsys):
    from pairlab.cli import main
    from pairlab.extras import MissingExtraError, require

    config = write_grid(tmp_path / "grid.yaml")
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without pairlab[cluster] sees
    assert main(["ablate", "--config", str(config), "--out", str(tmp_path / "o"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'pairlab[cluster]'" in err and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'pairlab\[tracking\]'"):
        require("wandb")


def test_bad_executor_and_tracker_fail_naming_the_key(tmp_path):
    from pairlab.config import ConfigError

    for changes, field in (({"executor": {"name": "kubernetes"}}, "executor.name"),
                           ({"report_to": ["mlflow"]}, "report_to")):
        with pytest.raises(ConfigError, match=field):
            load_ablation_config(str(write_grid(tmp_path / "bad.yaml", **changes)))
