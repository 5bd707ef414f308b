"""Two processes on the CPU (gloo): `accelerate launch` training and sharded evaluation.

The launchers run as the user runs them (subprocesses, real process group), on tiny-random-llama
in fp32 without quantization. Training writes its directory once (rank 0) with every pair's
dynamics row present once; evaluation over two shards equals a single-process evaluation.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pairlab.distributed import shard_rows

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
       "TOKENIZERS_PARALLELISM": "false"}
# `--multi_gpu` is accelerate's torchrun-style launcher; on a machine without a GPU each process
# then runs on the CPU over gloo (`--cpu` alone would start one process, see pairlab.distributed).
LAUNCH = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "pairlab"]
TRAIN_SETTINGS = ["--model", "tiny-random-llama", "--quantization", "none", "--set", "dtype=float32",
                  "--set", "dpo.max_steps=3", "--set", "dpo.max_length=96", "--set", "save_steps=2",
                  "--set", "seed=3"]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_shard_rows_deal_every_row_once():
    shards = [shard_rows(11, r, 3) for r in range(3)]
    assert sorted(sum((list(s) for s in shards), [])) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, sim_pairs):
    """16 pairs trained for 3 steps by `accelerate launch --multi_gpu --num_processes 2` on the CPU."""
    root = tmp_path_factory.mktemp("ddp")
    sim_pairs.head(16).to_parquet(root / "train.parquet")
    sim_pairs.iloc[16:37].to_parquet(root / "eval.parquet")  # 21 pairs: shards of 11 and 10
    done = _run([*LAUNCH, "train", "--pairs", str(root / "train.parquet"),
                 "--out", str(root / "run"), "--set", f"ref_cache_dir={root / 'cache'}", *TRAIN_SETTINGS],
                cwd=root)
    return root, done


@pytest.mark.slow
def test_accelerate_launch_trains_over_two_processes_and_rank0_writes_once(two_process_run, sim_pairs):
    root, done = two_process_run
    run = root / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    # Two ranks really formed a gloo process group (not two copies of a 1-process run).
    assert manifest["num_processes"] == 2
    assert manifest["distributed"] == {"world_size": 2, "distributed_type": "MULTI_CPU", "backend": "gloo"}
    assert done.stdout.count("trained 3 steps") == 1  # rank 0 alone reports
    # 3 steps x 2 processes x batch 2: 12 distinct pairs, each seen once, half by each rank.
    dyn = pd.read_parquet(run / "dynamics.parquet")
    assert len(dyn) == 12 and not dyn["pair_id"].duplicated().any()
    assert set(dyn["pair_id"]) <= set(sim_pairs.head(16)["pair_id"])
    assert dyn.groupby("process_index").size().to_dict() == {0: 6, 1: 6}
    assert sorted(dyn["step"].unique()) == [1, 2, 3]
    log = pd.read_json(run / "train_log.jsonl", lines=True)
    assert list(log["step"]) == [1, 2, 3]
    # Checkpoints hold both ranks' RNG state and the dynamics up to their step.
    ckpt = run / "checkpoints" / "checkpoint-2"
    assert (ckpt / "rng_state_0.pth").exists() and (ckpt / "rng_state_1.pth").exists()
    ckpt_dyn = pd.read_parquet(ckpt / "dynamics.parquet")
    pd.testing.assert_frame_equal(ckpt_dyn, dyn[dyn["step"] <= 2].reset_index(drop=True))
    # The reference was computed once per pair across both ranks.
    assert manifest["ref_cache"]["computed"] == 16


@pytest.mark.slow
def test_sharded_evaluation_over_two_processes_equals_one_process(two_process_run):
    root, _ = two_process_run
    settings = ["--run", str(root / "run"), "--eval", str(root / "eval.parquet"), "--no-generate",
                # batch 1: each pair's forward pass has the same shape in both runs, so bit-identical
                "--set", "batch_size=1", "--set", f"ref_cache_dir={root / 'eval_cache'}", "--set", "n_boot=200"]
    _run([str(BIN / "python"), "-m", "pairlab", "evaluate", "--out", str(root / "one"), *settings], cwd=root)
    # accelerate, not torchrun: torchrun's own parser would read `--run` as its `--run-path`.
    done = _run([*LAUNCH, "evaluate", "--out", str(root / "two"), *settings,
                 "--set", f"ref_cache_dir={root / 'eval_cache_two'}"], cwd=root)
    assert done.stdout.count("pairs scored") == 1  # rank 0 alone reports
    one = json.loads((root / "one" / "metrics.json").read_text())
    two = json.loads((root / "two" / "metrics.json").read_text())
    manifest = json.loads((root / "two" / "manifest.json").read_text())
    assert manifest["distributed"] == {"world_size": 2}
    assert two["reference"]["processes"] == 2 and two["reference"]["computed"] == 21
    assert one["reference"]["computed"] == 21  # both computed everything: no shared cache
    a = pd.read_parquet(root / "one" / "per_pair.parquet")
    b = pd.read_parquet(root / "two" / "per_pair.parquet")
    pd.testing.assert_frame_equal(a, b)  # merged in pair order, the same numbers
    assert list(b["pair_id"]) == list(pd.read_parquet(root / "eval.parquet")["pair_id"])
    volatile = {"timing", "reference", "policy_logps", "settings"}
    assert {k: v for k, v in one.items() if k not in volatile} == {k: v for k, v in two.items() if k not in volatile}
