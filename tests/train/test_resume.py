"""A real `pairlab train` process killed (SIGKILL) after its first checkpoint resumes with the same data order."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from pairlab.io import write_pairs
from pairlab.train import load_train_config, train

SETTINGS = ["seed=7", "save_steps=4", "dpo.max_steps=20", "dpo.max_length=96",
            "dpo.learning_rate=0.002", "lora.r=8"]  # 16 pairs, batch 2: 8 steps an epoch, 2.5 epochs


def _command(pairs, out, cache, *extra):
    sets = [a for s in SETTINGS + [f"ref_cache_dir={cache}"] for a in ("--set", s)]
    return [sys.executable, "-m", "pairlab", "train", "--pairs", str(pairs), "--model", "tiny-random-llama",
            *sets, "--out", str(out), *extra]


def _complete(checkpoint):
    return (checkpoint / "trainer_state.json").exists() and (checkpoint / "dynamics.parquet").exists()


@pytest.mark.timeout(900)
def test_killed_run_resumes_with_same_data_order(tmp_path, sim_pairs):
    pairs_path = write_pairs(sim_pairs.head(16), tmp_path / "pairs.parquet")
    out, cache = tmp_path / "run", tmp_path / "ref_cache"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_command(pairs_path, out, cache), stdout=log, stderr=subprocess.STDOUT, env=env)
    first = out / "checkpoints" / "checkpoint-4"
    deadline = time.time() + 400
    while not _complete(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, f"the run ended before it could be killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
    assert not (out / "manifest.json").exists()

    assert (first / "pairlab_resume.json").is_file()  # what the run was, for --resume to compare
    # --resume continues only the same run: another setting, or another compute dtype (dtype:
    # auto resolves per CPU kind; PAIRLAB_CPU_BF16 flips the detection), is refused, untouched.
    other = subprocess.run(_command(pairs_path, out, cache, "--set", "dpo.learning_rate=0.001", "--resume"),
                           capture_output=True, text=True, env=env, timeout=400)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "interrupted run of another config (dpo.learning_rate)" in other.stderr, other.stderr[-2000:]
    from pairlab.models import cpu_has_native_bf16

    flipped = {**env, "PAIRLAB_CPU_BF16": "0" if cpu_has_native_bf16() else "1"}
    kind = subprocess.run(_command(pairs_path, out, cache, "--resume"), capture_output=True, text=True,
                          env=flipped, timeout=400)
    assert kind.returncode == 2 and "this one would compute in" in kind.stderr, kind.stderr[-2000:]
    assert _complete(first) and not (out / "manifest.json").exists()

    resumed = subprocess.run(_command(pairs_path, out, cache, "--resume"), capture_output=True, text=True,
                             env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["global_step"] == 20 and manifest["resumed_from"]
    assert manifest["ref_cache"]["cache_hits"] == 16 and manifest["ref_cache"]["computed"] == 0

    config = load_train_config(None, ["model=tiny-random-llama", *SETTINGS, f"ref_cache_dir={cache}"])
    whole = train(pairs_path, config, tmp_path / "whole")
    got = pd.read_parquet(out / "dynamics.parquet")
    want = whole.dynamics
    assert len(got) == len(want) == 20 * 2
    order = ["step", "micro_step", "pair_id", "epoch"]
    pd.testing.assert_frame_equal(got[order].reset_index(drop=True), want[order].reset_index(drop=True))
    np.testing.assert_allclose(got["loss"], want["loss"], atol=2e-3)
    # On a CPU the resumed run is the uninterrupted one, bit for bit, in whatever dtype the
    # adapter trains (TRL keeps a 4-bit run's adapter in bf16 where bf16 is the compute dtype;
    # peft's checkpoint load once turned it fp32 for the rest of a resumed run).
    from safetensors.torch import load_file

    import torch

    a, b = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (out, tmp_path / "whole"))
    assert a.keys() == b.keys() and {k: v.dtype for k, v in a.items()} == {k: v.dtype for k, v in b.items()}
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(got["loss"], want["loss"])
    log_lines = (out / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log_lines] == list(range(1, 21))
