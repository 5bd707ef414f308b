"""train(): the reference cache gives TRL's own losses, is reused across subsets; dynamics; outputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pairlab.train import DYNAMICS_COLUMNS, train


def test_cache_gives_the_same_losses_as_trl_computing_the_reference(tmp_path, sim_pairs, tiny_config, monkeypatch):
    from trl.trainer import dpo_trainer

    hashed = []  # TRL hashes every weight to name its own cache; with pairlab's cache it is never read
    real_hash = dpo_trainer.hash_module
    monkeypatch.setattr(dpo_trainer, "hash_module", lambda module: hashed.append(1) or real_hash(module))
    pairs = sim_pairs.head(12)
    # fp32 so the only difference left is where the reference comes from (bf16 would add rounding noise).
    extra = ("dpo.max_steps=4", "dtype=float32")
    own = train(pairs, tiny_config(tmp_path, *extra, ref_cache=False), tmp_path / "trl")
    cached = train(pairs, tiny_config(tmp_path, *extra), tmp_path / "cache")
    # TRL would hash the model for its precomputed reference (ref_cache=true sets it); the
    # same losses below without it. The spy is back in place after the skip.
    assert hashed == [] and dpo_trainer.hash_module is not real_hash

    assert own.global_step == cached.global_step == 4
    a, b = own.dynamics, cached.dynamics
    assert list(a["pair_id"]) == list(b["pair_id"])  # same seed -> same data order
    np.testing.assert_allclose(b["ref_chosen_logps"], a["ref_chosen_logps"], rtol=1e-4)
    np.testing.assert_allclose(b["ref_rejected_logps"], a["ref_rejected_logps"], rtol=1e-4)
    # On AVX512-BF16 CPUs the cached reference comes from bitsandbytes' inference kernel and
    # TRL's from the trainable one; they differ by ~1e-3 in a summed log-prob (x beta).
    np.testing.assert_allclose(cached.train_log["loss"], own.train_log["loss"], atol=3e-4)
    np.testing.assert_allclose(cached.train_log["grad_norm"], own.train_log["grad_norm"], rtol=1e-3)
    assert not np.allclose(own.train_log["loss"], np.log(2))  # the adapter did move
    # TRL's own handling runs the reference on every micro-batch; the cache runs it once per pair.
    assert own.ref_cache["computed"] == 4 * 2
    assert cached.ref_cache["computed"] == 12 and cached.ref_cache["cache_hits"] == 0
    # CPU + 4-bit: the cached reference is in the shared-prompt layout, and so is the policy's
    # training forward (every batch); TRL computing its own reference keeps TRL's layout.
    from pairlab.models import pick_device

    layouts = [json.loads((run / "manifest.json").read_text())["policy_layout"]
               for run in (tmp_path / "trl", tmp_path / "cache")]
    assert layouts[0] == {"layout": "trl", "shared_batches": 0, "trl_batches": 0}
    if pick_device("auto") == "cpu":
        assert layouts[1] == {"layout": "shared", "shared_batches": 4, "trl_batches": 0}


def test_full_precision_cpu_runs_prefill_and_train_in_the_shared_layout(tmp_path, sim_pairs, tiny_config):
    from pairlab.models import pick_device

    if pick_device("auto") != "cpu":
        pytest.skip("the shared-prompt layout is a CPU path")
    run = train(sim_pairs.head(4), tiny_config(tmp_path, "quantization=none", "dpo.max_steps=2"), tmp_path / "fp")
    manifest = json.loads((tmp_path / "fp" / "manifest.json").read_text())
    assert manifest["policy_layout"] == {"layout": "shared", "shared_batches": 2, "trl_batches": 0}
    # computed by the prefill, before the trainable model loaded: no reference batch in the trainer
    assert run.ref_cache["computed"] == 4 and run.ref_cache["forward_batches"] == 0


def test_overlapping_subset_computes_only_missing_pairs(tmp_path, sim_pairs, tiny_config):
    first = train(sim_pairs.iloc[0:10], tiny_config(tmp_path, "dpo.max_steps=1"), tmp_path / "a")
    second = train(sim_pairs.iloc[6:20], tiny_config(tmp_path, "dpo.max_steps=1"), tmp_path / "b")
    assert first.ref_cache["computed"] == 10
    assert second.ref_cache["computed"] == 10 and second.ref_cache["cache_hits"] == 4
    assert first.ref_cache["key"] == second.ref_cache["key"]
    # Another max_length changes the tokens, so it is another cache.
    third = train(sim_pairs.iloc[0:4], tiny_config(tmp_path, "dpo.max_steps=1", "dpo.max_length=80"),
                  tmp_path / "c")
    assert third.ref_cache["computed"] == 4 and third.ref_cache["key"] != first.ref_cache["key"]


def test_prefill_fills_the_cache_train_then_reads(tmp_path, sim_pairs, tiny_config):
    """One reference pass over several runs' union (what ablate's prefill does), then a run on a
    subset computes nothing: the key the prefill writes under is the one train() reads."""
    from pairlab.models import pick_device
    from pairlab.train.pipeline import prefill_reference

    config = tiny_config(tmp_path, "dpo.max_steps=1")
    on_cpu = pick_device(config.device) == "cpu"  # it prefills where train() would: CPU
    assert prefill_reference(sim_pairs.iloc[0:10], config) == (10 if on_cpu else 0)
    assert prefill_reference(sim_pairs.iloc[0:10], config) == 0  # warm: nothing loads
    run = train(sim_pairs.iloc[2:8], config, tmp_path / "run")
    if on_cpu:
        assert run.ref_cache["computed"] == 0 and run.ref_cache["cache_hits"] == 6


def test_dynamics_log_and_outputs(tmp_path, sim_pairs, tiny_config):
    pairs = sim_pairs.head(8)
    run = train(pairs, tiny_config(tmp_path, "quantization=none", "dpo.num_train_epochs=2",
                                   "dpo.gradient_accumulation_steps=2", "save_steps=2"), tmp_path / "run")
    dyn = run.dynamics
    assert list(dyn.columns) == list(DYNAMICS_COLUMNS)
    # 8 pairs x 2 epochs, 2 pairs per micro-batch, 2 micro-batches per step -> 4 steps.
    assert run.global_step == 4 and len(dyn) == 16
    assert dyn.groupby("pair_id").size().eq(2).all() and set(dyn["pair_id"]) == set(pairs["pair_id"])
    assert dyn.groupby("pair_id")["epoch"].apply(lambda e: sorted(e) == [0, 1]).all()
    assert sorted(dyn["micro_step"].unique()) == [0, 1] and sorted(dyn["step"].unique()) == [1, 2, 3, 4]
    # Per-pair losses average to the loss TRL back-propagated for each micro-batch.
    micro = dyn.groupby(["step", "micro_step"]).agg(loss=("loss", "mean"), batch=("batch_loss", "first"))
    np.testing.assert_allclose(micro["loss"], micro["batch"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dyn["margin"], dyn["chosen_reward"] - dyn["rejected_reward"], atol=1e-6)

    log = pd.read_json(tmp_path / "run" / "train_log.jsonl", lines=True)
    assert list(log["step"]) == [1, 2, 3, 4] and (log["pairs"] == 4).all()
    exact = dyn.groupby("step")["margin"].apply(lambda m: (m > 0).mean()).to_numpy()
    np.testing.assert_allclose(log["rewards/accuracies"], exact)
    assert {"loss", "rewards/margins", "learning_rate"} <= set(log.columns)

    out = tmp_path / "run"
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 8
    assert pd.read_parquet(out / "dynamics.parquet").shape == dyn.shape
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["seed"] == 3 and manifest["global_step"] == 4
    assert manifest["inputs"]["n_pairs"] == 8 and manifest["inputs"]["pairs_frame_sha256"]
    assert manifest["memory"]["peak_rss_mb"] > 0 and manifest["wall_time_s"] > 0
    assert manifest["config"]["quantization"] == "none" and manifest["ref_cache"]["computed"] == 8
    assert manifest["environment"]["packages"]["trl"].startswith("1.16")
    # Checkpoints carry the dynamics up to their step.
    ck = pd.read_parquet(out / "checkpoints" / "checkpoint-2" / "dynamics.parquet")
    assert ck["step"].max() == 2 and len(ck) == 8


def test_refuses_to_overwrite_a_run_and_bad_pairs(tmp_path, sim_pairs, tiny_config):
    from pairlab.schema import PairDataError

    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "manifest.json").write_text("{}")
    with pytest.raises(PairDataError, match="manifest.json with no stage"):
        train(sim_pairs.head(2), tiny_config(tmp_path), tmp_path / "done")
    (tmp_path / "done" / "manifest.json").write_text('{"stage": "train"}')  # not verifiable: kept
    with pytest.raises(PairDataError, match="does not verify.*--overwrite"):
        train(sim_pairs.head(2), tiny_config(tmp_path), tmp_path / "done", resume=True)
    checkpoint = tmp_path / "killed" / "checkpoints" / "checkpoint-1"  # an interrupted run
    checkpoint.mkdir(parents=True)
    for name in ("trainer_state.json", "dynamics.parquet"):
        (checkpoint / name).write_text("{}")
    with pytest.raises(PairDataError, match="interrupted run.*--resume"):
        train(sim_pairs.head(2), tiny_config(tmp_path), tmp_path / "killed")
    with pytest.raises(PairDataError, match="twice"):
        train(pd.concat([sim_pairs.head(2)] * 2), tiny_config(tmp_path), tmp_path / "dup")


def test_peak_rss_is_this_process_not_its_parent():
    """A run started by a larger process (a bench, an executor) reports its own peak:
    ru_maxrss would carry the parent's over fork + exec."""
    import subprocess
    import sys

    from pairlab.train.pipeline import peak_rss_mb

    ballast = bytearray(600 * 2**20)  # the parent's peak: at least 600 MB above the child's needs
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page
    child = subprocess.run([sys.executable, "-c", "from pairlab.train.pipeline import peak_rss_mb; "
                            "print(peak_rss_mb())"], capture_output=True, text=True, check=True)
    assert peak_rss_mb() >= 600
    assert float(child.stdout) < peak_rss_mb() - 400, (child.stdout, peak_rss_mb())
    del ballast


def test_ablate_step_redoes_an_interrupted_run_of_another_config(tmp_path, sim_pairs, tiny_config):
    """ensure_trained (ablate's train step) resumes an interrupted run only when it is the same
    run; one of another config is redone from scratch, and says why."""
    from pairlab.experiments import ensure_trained
    from pairlab.io import write_pairs

    pairs = write_pairs(sim_pairs.head(8), tmp_path / "pairs.parquet")
    run = tmp_path / "run"
    train(pairs, tiny_config(tmp_path, "dpo.max_steps=4", "save_steps=2"), run)
    (run / "manifest.json").unlink()  # as if killed after its last checkpoint, before the outputs
    assert (run / "checkpoints" / "checkpoint-4" / "pairlab_resume.json").is_file()
    step = ensure_trained(pairs, tiny_config(tmp_path, "dpo.max_steps=2", "save_steps=2"), run)
    assert step["state"] == "trained" and step["steps"] == 2
    assert step["replaced"] == "interrupted run of another config (dpo.max_steps)"
    assert json.loads((run / "manifest.json").read_text())["resumed_from"] is None
    (run / "manifest.json").unlink()  # the same config again: resumed, not redone
    again = ensure_trained(pairs, tiny_config(tmp_path, "dpo.max_steps=2", "save_steps=2"), run)
    assert again["state"] == "resumed" and "replaced" not in again
