"""Train benchmarks: (a) the shared reference cache vs TRL's per-run reference, K=3 arms;
(b) peak RSS of 4-bit QLoRA vs full-precision LoRA on SmolLM2-135M; (c) seconds per optimizer step;
(e) the policy's training forward in the shared-prompt layout against TRL's two rows, at the demo's shape;
(f) the chunked LM-head kernel at TRL's vocabulary tile against pairlab's CPU tile.

(a) Reference forward passes are counted exactly on a 2,000-pair simulator pool with
three overlapping arms (each a seeded 60% sample): with the shared cache a pair's
reference is computed once for all arms; TRL's own handling
(``precompute_ref_log_probs=False``) runs the reference on every micro-batch of every
epoch of every arm (TRL's ``precompute_ref_log_probs=True`` caches per dataset
fingerprint, so each arm's subset is again a full pass). The counting rule is
checked against the trainer's own counters on the wall-time runs, which train
SmolLM2-135M-Instruct (4-bit) on a 30-pair pool of realistic-length pairs (~400 tokens,
cut at max_length 256, pairlab's default) in one process, each arm run both ways: with
the cache, one reference pass over the arms' union first (as `pairlab ablate`'s prefill),
then the arms; TRL's way, each arm with its per-step reference. The goal: the shared
cache >= 1.25x faster in wall time (reference pass + every arm's training). The result
also gives each way's seconds per optimizer step, their difference (TRL's reference
forward) and the ratio this design could reach if loads and set-up cost nothing
(``ratio_bound_without_fixed_costs``): with K=3 arms of 60% of a pool for one epoch, TRL
runs 1.8 reference passes per pool pair and the cache ~0.94, so the saving is capped by
the reference forward's share of a training step. ``PAIRLAB_BENCH_KARM_MODEL`` /
``PAIRLAB_BENCH_KARM_PAIRS`` change the model and pool size.

(b) and (c) run each configuration in a fresh subprocess, so ``ru_maxrss`` is that
run's peak. The goal: QLoRA peak <= 0.5x full-precision LoRA's. Beside each peak: the
RSS after importing the libraries (``baseline_rss_mb``, the same imports in every
child) and the peak above it, so the libraries' share is stated; the weights alone
(``model_footprint_mb``); and a third run, QLoRA with activation checkpointing, since at
135M parameters a training step's activations, which 4-bit does not shrink, outweigh
the weights. Every 4-bit run loads the pre-quantized NF4 checkpoint (built first, in a
process of its own), as a user's second and later runs do. Each configuration runs in
``PAIRLAB_BENCH_MEMORY_REPEATS`` (default 3) processes, interleaved; its figures are the median
run's (a process's peak varies by a few hundred MB between identical runs).

(d) The same two runs (QLoRA, full-precision LoRA) on a model of SmolLM2-1.7B's shape
(24 layers, hidden 2048, MLP 8192, 49,152-token vocabulary, tied embeddings) with random
weights, built once under ``$PAIRLAB_CACHE/models``: memory depends on the shapes, not
the values, and no 1.7B checkpoint can be downloaded here. It shows where the weights,
which 4-bit shrinks, outweigh the activations and the libraries, which it does not.
One run per configuration (minutes each). ``PAIRLAB_BENCH_QUICK=1`` shrinks everything for a
smoke check and skips (d).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUICK = os.environ.get("PAIRLAB_BENCH_QUICK") == "1"
K = 3
ARM_FRACTION = 0.6


def _arms(pool_ids: list[str], k: int = K, fraction: float = ARM_FRACTION, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    size = int(round(fraction * len(pool_ids)))
    return [sorted(rng.choice(pool_ids, size=size, replace=False).tolist()) for _ in range(k)]


def reference_pass_counts(arms: list[list[str]], epochs: int, batch_size: int) -> dict:
    """Reference forwards (in pairs and in batches) each way, for arms run one after another."""
    union = set().union(*map(set, arms))
    per_run = sum(len(a) for a in arms) * epochs
    return {
        "pool_pairs_used": len(union),
        "arm_sizes": [len(a) for a in arms],
        "epochs": epochs,
        "shared_cache_ref_pairs": len(union),
        "trl_per_step_ref_pairs": per_run,
        "trl_precompute_per_run_ref_pairs": sum(len(a) for a in arms),
        "shared_cache_ref_batches": sum(-(-n // batch_size) for n in _new_per_arm(arms)),
        "trl_per_step_ref_batches": epochs * sum(-(-len(a) // batch_size) for a in arms),
        "ratio_ref_pairs_trl_over_cache": round(per_run / len(union), 3),
    }


def _new_per_arm(arms: list[list[str]]) -> list[int]:
    seen: set[str] = set()
    out = []
    for arm in arms:
        out.append(len(set(arm) - seen))
        seen |= set(arm)
    return out


def _sim_pool(n_pairs: int, topics: dict | None = None, length: str = "short"):
    from pairlab.simulate import simulate_pairs

    n = int(n_pairs / 0.85) + 50  # ~0.9 train split, a few records make no pair
    train, _ = simulate_pairs(n=n, seed=0, length=length, **({"topics": topics} if topics else {}))
    if len(train) < n_pairs:
        raise RuntimeError(f"simulator gave {len(train)} pairs, wanted {n_pairs}")
    return train.head(n_pairs).reset_index(drop=True)


def bench_ref_cache(out_dir: Path) -> dict:
    from pairlab.train import load_train_config, train
    from pairlab.train.pipeline import prefill_reference

    pool = _sim_pool(2000)
    arms_2k = _arms(pool["pair_id"].tolist())
    exact = reference_pass_counts(arms_2k, epochs=1, batch_size=4)

    model = os.environ.get("PAIRLAB_BENCH_KARM_MODEL", "smollm2-135m-instruct")
    # 30 pairs: arms of 9 steps (at 6, arms of 2 steps measured the fixed costs, not the reference)
    small = int(os.environ.get("PAIRLAB_BENCH_KARM_PAIRS", 4 if QUICK else 30))
    realistic = model != "tiny-random-llama"
    pool_small = _sim_pool(small, length="realistic" if realistic else "short")
    arms = _arms(pool_small["pair_id"].tolist())
    by_id = pool_small.set_index("pair_id", drop=False)
    max_length = 256 if realistic else 96  # pairlab's default dpo.max_length; realistic pairs fill it
    settings = [f"model={model}", "quantization=4bit", "seed=0", "save_steps=100000",
                "dpo.per_device_train_batch_size=2", "dpo.precompute_ref_batch_size=4",
                f"dpo.max_length={max_length}", "dpo.num_train_epochs=1"]
    # Three modes: pairlab (the shared cache; the policy's forward in the cache's shared-prompt
    # layout), the same cache with the policy in TRL's two-row layout (what pairlab did before:
    # it separates the layout's saving from the cache's), and TRL's per-step reference.
    modes = ("shared_cache", "shared_cache_trl_policy", "trl_per_step")
    timings: dict[str, list[float]] = {m: [] for m in modes}
    loop: dict[str, float] = dict.fromkeys(modes, 0.0)
    runtime: dict[str, float] = dict.fromkeys(modes, 0.0)
    steps: dict[str, int] = dict.fromkeys(modes, 0)
    counted: dict[str, int] = dict.fromkeys(modes, 0)
    layouts: dict[str, list[str]] = {m: [] for m in modes}
    prefill: dict[str, float] = {}
    from unittest import mock

    import pairlab.train.pipeline as train_pipeline

    with tempfile.TemporaryDirectory(prefix="pairlab-bench-train-") as tmp:
        for mode in modes:
            ref_cache = mode != "trl_per_step"

            def config():
                return load_train_config(None, settings + [f"ref_cache={str(ref_cache).lower()}",
                                                           f"ref_cache_dir={tmp}/cache"])
            if mode == "shared_cache":
                # as `pairlab ablate` does: one reference pass over the arms' union, before any arm
                union = sorted(set().union(*map(set, arms)))
                t0 = time.time()
                computed = prefill_reference(by_id.loc[union].reset_index(drop=True), config())
                prefill = {"pairs": computed, "wall_s": round(time.time() - t0, 2)}
                counted[mode] += computed
            if ref_cache:  # the second cache mode reads the first one's prefill: the same cost
                timings[mode].append(prefill["wall_s"])
                loop[mode] += prefill["wall_s"]
            forced = mock.patch.object(train_pipeline, "policy_layout", lambda cache: "trl") \
                if mode == "shared_cache_trl_policy" else contextlib.nullcontext()
            for i, arm in enumerate(arms):
                t0 = time.time()
                with forced:
                    result = train(by_id.loc[arm].reset_index(drop=True), config(), Path(tmp) / f"{mode}-{i}")
                timings[mode].append(round(time.time() - t0, 2))
                counted[mode] += result.ref_cache["computed"]
                layouts[mode].append(json.loads((Path(tmp) / f"{mode}-{i}" / "manifest.json").read_text())
                                     ["policy_layout"]["layout"])
                # reference pass (cache mode) + optimizer loop (where TRL runs its reference)
                loop[mode] += result.ref_cache["precompute_s"] + result.train_runtime_s
                runtime[mode] += result.train_runtime_s
                steps[mode] += result.global_step
    small_counts = reference_pass_counts(arms, epochs=1, batch_size=2)
    assert counted["shared_cache"] == small_counts["shared_cache_ref_pairs"], counted
    assert counted["trl_per_step"] == small_counts["trl_per_step_ref_pairs"], counted
    assert counted["shared_cache_trl_policy"] == 0, counted  # it read the first mode's cache
    wall_cache, wall_trl = sum(timings["shared_cache"]), sum(timings["trl_per_step"])
    wall_cache_trl_policy = sum(timings["shared_cache_trl_policy"])
    step_s = {k: round(runtime[k] / max(steps[k], 1), 2) for k in runtime}
    ref_per_step = step_s["trl_per_step"] - step_s["shared_cache_trl_policy"]
    ref_pair_s = prefill["wall_s"] / max(prefill["pairs"], 1)
    # The best this design can do if every fixed cost (model loads, trainer set-up) were zero:
    # TRL pays (train step + reference forward) per step, the cache (train step) per step plus
    # one reference pass over the union.
    bound = ((step_s["trl_per_step"] * steps["trl_per_step"])
             / (step_s["shared_cache"] * steps["shared_cache"] + ref_pair_s * prefill["pairs"]))
    return {
        "exact_counts_2k_pool": exact,
        "wall_time_runs": {
            "model": f"{model} (4-bit), batch 2, max_length {max_length}, "
                     f"{'realistic' if realistic else 'short'} pairs, 1 epoch per arm",
            "pool_pairs": small, "arm_sizes": [len(a) for a in arms],
            "ref_pairs_counted_by_trainer": counted,
            "shared_cache_prefill": prefill,
            "arm_wall_s": timings,
            "total_wall_s": {"shared_cache": round(wall_cache, 2), "trl_per_step": round(wall_trl, 2)},
            "ratio_wall_trl_over_cache": round(wall_trl / wall_cache, 3),
            "policy_layouts": layouts,
            "total_wall_s_cache_with_trl_layout_policy": round(wall_cache_trl_policy, 2),
            "ratio_wall_trl_over_cache_with_trl_layout_policy": round(wall_trl / wall_cache_trl_policy, 3),
            "ratio_step_trl_layout_over_shared_layout_policy": round(
                step_s["shared_cache_trl_policy"] / max(step_s["shared_cache"], 1e-9), 3),
            "reference_plus_training_loop_s": {k: round(v, 2) for k, v in loop.items()},
            "ratio_loop_trl_over_cache": round(loop["trl_per_step"] / loop["shared_cache"], 3),
            "optimizer_steps": steps,
            "seconds_per_step": step_s,
            "trl_reference_forward_per_step_s": round(ref_per_step, 2),
            "trl_reference_share_of_train_step": round(ref_per_step / step_s["shared_cache_trl_policy"], 3),
            "prefill_seconds_per_pair": round(ref_pair_s, 2),
            "ratio_bound_without_fixed_costs": round(bound, 3),
        },
        "goal": {"measured": round(wall_trl / wall_cache, 3), "goal": ">= 1.25x (TRL per-step / shared cache, wall)",
                 "met": wall_trl / wall_cache >= 1.25,
                 "total_wall_s": {"shared_cache": round(wall_cache, 2), "trl_per_step": round(wall_trl, 2)},
                 "trl_reference_share_of_train_step": round(ref_per_step / step_s["shared_cache_trl_policy"], 3),
                 "bound_without_fixed_costs": round(bound, 3)},
    }


_CHILD = r"""
import json, os, sys, tempfile
# Every library a training run uses, imported before the baseline is read, the same set in
# both configurations, so "above baseline" is what the run itself adds.
import bitsandbytes, pandas, peft, torch, transformers, trl
from pairlab.simulate import simulate_pairs
from pairlab.train import load_train_config, train
from pairlab.train.pipeline import peak_rss_mb
baseline = peak_rss_mb()
model, quant, steps, batch, max_length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pairs, _ = simulate_pairs(n=60, seed=0, topics={"facts": 1.0, "definitions": 1.0})
with tempfile.TemporaryDirectory() as tmp:
    cfg = load_train_config(None, [f"model={model}", f"quantization={quant}", "seed=0",
        f"ref_cache_dir={os.environ.get('PAIRLAB_BENCH_REF_CACHE') or tmp + '/cache'}", "save_steps=100000", f"dpo.max_steps={steps}",
        f"dpo.per_device_train_batch_size={batch}", f"dpo.max_length={max_length}",
        "dpo.learning_rate=0.0001", *sys.argv[6:]])
    r = train(pairs.head(batch * steps), cfg, tmp + "/run")
    print("RESULT " + json.dumps({"peak_rss_mb": r.peak_rss_mb, "baseline_rss_mb": round(baseline, 1),
        "peak_above_baseline_mb": round(r.peak_rss_mb - baseline, 1),
        "train_runtime_s": r.train_runtime_s,
        "steps": r.global_step, "seconds_per_step": round(r.train_runtime_s / r.global_step, 3),
        "model_footprint_mb": r.model_footprint_mb, "final_loss": float(r.train_log["loss"].iloc[-1]),
        "wall_s": r.wall_time_s}))
"""

#: (result name, quantization, extra settings): the goal compares the first two, each with
#: pairlab's defaults; the third is QLoRA with activation checkpointing (the QLoRA paper's
#: recipe; off by default here: it re-runs each layer's forward in the backward pass).
MEMORY_RUNS = (("qlora_4bit", "4bit", []), ("lora_full_precision", "none", []),
               ("qlora_4bit_activation_checkpointing", "4bit", ["dpo.activation_checkpointing=true"]))


#: At the 1.7B shape: both defaults, then both with activation checkpointing (the QLoRA
#: paper trains with it; it keeps one layer's activations instead of all of them, so the
#: weights, where 4-bit saves, dominate the peak).
SCALE_WARM_REPEATS = int(os.environ.get("PAIRLAB_BENCH_MEMORY_REPEATS", "3"))
SCALE_RUNS = (MEMORY_RUNS[0], MEMORY_RUNS[1], MEMORY_RUNS[2],
              ("lora_full_precision_activation_checkpointing", "none", ["dpo.activation_checkpointing=true"]))


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _child_env() -> dict:
    return {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}


def _warm_nf4_checkpoint(model: str) -> None:
    """Build the model's pre-quantized NF4 checkpoint in a process of its own (once per cache)."""
    code = f"from pairlab.models import load_model; load_model({model!r}, quantization='4bit')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_child_env(), timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"4-bit load of {model} failed:\n{proc.stderr[-3000:]}")


#: Processes per configuration: one process's peak varies by a few hundred MB from run to run
#: (how the allocator's heap fragments depends on thread timing), so each figure is the median
#: run's, with every run's peak beside it. The runs of the configurations are interleaved.
MEMORY_REPEATS = int(os.environ.get("PAIRLAB_BENCH_MEMORY_REPEATS", "3"))


def _memory_runs(model: str, runs, steps: int, batch: int, max_length: int, repeats: int = MEMORY_REPEATS,
                 ref_cache: Path | None = None) -> dict:
    """Peak RSS of each run, each in a process of its own. ``ref_cache``: a reference cache
    every run shares, filled first by one untimed run per configuration, so each measured
    run reads its reference log-probs as an arm of `pairlab ablate` does (its prefill step
    computed them); None: a fresh cache per run, so 4-bit runs compute them in-process."""
    _warm_nf4_checkpoint(model)
    env = _child_env()
    env.pop("PAIRLAB_BENCH_REF_CACHE", None)  # cold: a fresh cache per run
    if ref_cache is not None:
        env["PAIRLAB_BENCH_REF_CACHE"] = str(ref_cache)
        for name, quant, extra in runs:
            proc = subprocess.run([sys.executable, "-c", _CHILD, model, quant, str(steps), str(batch),
                                   str(max_length), *extra], capture_output=True, text=True, env=env, timeout=3600)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} run (filling the reference cache) failed:\n{proc.stderr[-3000:]}")
    every: dict[str, list[dict]] = {name: [] for name, _, _ in runs}
    for _ in range(max(1, repeats)):
        for name, quant, extra in runs:
            proc = subprocess.run([sys.executable, "-c", _CHILD, model, quant, str(steps), str(batch),
                                   str(max_length), *extra], capture_output=True, text=True, env=env,
                                  timeout=3600)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                raise RuntimeError(f"{name} run failed:\n{proc.stderr[-3000:]}")
            every[name].append(json.loads(line[0][7:]))
    results = {}
    for name, found in every.items():
        found = sorted(found, key=lambda r: r["peak_rss_mb"])
        results[name] = {**found[len(found) // 2], "peak_rss_mb_runs": [r["peak_rss_mb"] for r in found]}
    return results


def bench_memory_and_step_time(out_dir: Path) -> dict:
    # one optimizer step: the peak is reached in the first (optimizer state, activations)
    steps, batch, max_length = (1, 2, 64) if QUICK else (1, 2, 96)
    results = _memory_runs("smollm2-135m-instruct", MEMORY_RUNS, steps, batch, max_length)
    from pairlab.models import cpu_has_native_bf16

    q, full, ckpt = (results[name] for name, _, _ in MEMORY_RUNS)
    return {
        "model": "smollm2-135m-instruct", "batch": batch, "max_length": max_length, "steps": steps,
        "device": "cpu", "compute_dtype": "bfloat16" if cpu_has_native_bf16() else "float32",
        "baseline": "RSS after importing torch, transformers, TRL, PEFT, bitsandbytes, pandas and pairlab",
        **results,
        "peak_rss_ratio_full_over_4bit": _ratio(full["peak_rss_mb"], q["peak_rss_mb"]),
        "peak_rss_ratio_4bit_over_full": _ratio(q["peak_rss_mb"], full["peak_rss_mb"]),
        "above_baseline_ratio_4bit_over_full": _ratio(q["peak_above_baseline_mb"], full["peak_above_baseline_mb"]),
        "libraries_share_of_peak": {name: _ratio(r["baseline_rss_mb"], r["peak_rss_mb"]) for name, r in results.items()},
        "peak_rss_ratio_4bit_checkpointing_over_full": _ratio(ckpt["peak_rss_mb"], full["peak_rss_mb"]),
        "above_baseline_ratio_4bit_checkpointing_over_full": _ratio(ckpt["peak_above_baseline_mb"],
                                                                    full["peak_above_baseline_mb"]),
        "weights_ratio_4bit_over_full": _ratio(q["model_footprint_mb"], full["model_footprint_mb"]),
        "gpu": "not measured (no GPU in this environment)",
    }


#: SmolLM2-1.7B's published shape (config.json of HuggingFaceTB/SmolLM2-1.7B-Instruct).
SCALE_SHAPE = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
               "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 8192,
               "rope_theta": 130000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}


def _build_scale_model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pairlab.models import EMBEDDED, load_tokenizer

    tokenizer = load_tokenizer(EMBEDDED)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SCALE_SHAPE)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)  # bf16 on disk: half the bytes; loads as fp32
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def bench_memory_at_scale(out_dir: Path) -> dict:
    if QUICK:
        return {"skipped": "PAIRLAB_BENCH_QUICK=1"}
    from pairlab import models

    started = time.time()
    path = models._build_once(models._models_cache() / "smollm2-1.7b-shape-random-v1", _build_scale_model)
    build_s = round(time.time() - started, 1)
    steps, batch, max_length = 1, 2, 96
    runs = SCALE_RUNS
    results = _memory_runs(str(path), runs, steps, batch, max_length, repeats=1)  # ~30 s a run (bf16 kind)
    q, full, q_ckpt, full_ckpt = (results[name] for name, _, _ in runs)
    # As an arm of `pairlab ablate` trains: its reference log-probs were computed by the
    # prefill step, so no inference copy of the base is loaded in the training process.
    warm = _memory_runs(str(path), runs, steps, batch, max_length, repeats=SCALE_WARM_REPEATS,
                        ref_cache=Path(out_dir) / "memory_scale_ref_cache")
    wq, wfull, wq_ckpt, wfull_ckpt = (warm[name] for name, _, _ in runs)
    warm_cache = {**warm, "repeats": SCALE_WARM_REPEATS,
                  "peak_rss_ratio_4bit_over_full": _ratio(wq["peak_rss_mb"], wfull["peak_rss_mb"]),
                  "peak_rss_ratio_4bit_over_full_both_checkpointing": _ratio(wq_ckpt["peak_rss_mb"],
                                                                             wfull_ckpt["peak_rss_mb"])}
    from pairlab.models import cpu_has_native_bf16

    return {"model": "random weights in SmolLM2-1.7B's shape", "shape": SCALE_SHAPE, "build_s": build_s,
            "batch": batch, "max_length": max_length, "steps": steps,
            "compute_dtype": "bfloat16" if cpu_has_native_bf16() else "float32", **results,
            "peak_rss_ratio_4bit_over_full": _ratio(q["peak_rss_mb"], full["peak_rss_mb"]),
            "above_baseline_ratio_4bit_over_full": _ratio(q["peak_above_baseline_mb"],
                                                          full["peak_above_baseline_mb"]),
            # like for like with the QLoRA paper's recipe: activation checkpointing in both
            "peak_rss_ratio_4bit_over_full_both_checkpointing": _ratio(q_ckpt["peak_rss_mb"],
                                                                       full_ckpt["peak_rss_mb"]),
            "above_baseline_ratio_4bit_over_full_both_checkpointing": _ratio(
                q_ckpt["peak_above_baseline_mb"], full_ckpt["peak_above_baseline_mb"]),
            "weights_ratio_4bit_over_full": _ratio(q["model_footprint_mb"], full["model_footprint_mb"]),
            "reference_cached": warm_cache}


def bench_policy_layout(out_dir: Path) -> dict:
    """(e) Optimizer steps with the policy's forward in the shared-prompt layout (pairlab's CPU
    4-bit default) against TRL's two-row layout, same process, same pairs, same cached
    reference: SmolLM2-135M 4-bit at `make demo`'s shape (short simulator answers, batch 4,
    max_length 160, 10 steps), alternating layouts twice. The final losses agree to rounding."""
    from unittest import mock

    import pairlab.train.pipeline as train_pipeline
    from pairlab.simulate import simulate_pairs
    from pairlab.train import load_train_config, train

    steps = 2 if QUICK else 10
    pairs, _ = simulate_pairs(n=200, seed=0, length="short")
    pairs = pairs.head(4 * steps).reset_index(drop=True)
    runs: dict[str, list[float]] = {"shared": [], "trl": []}
    losses: dict[str, list[float]] = {"shared": [], "trl": []}
    with tempfile.TemporaryDirectory(prefix="pairlab-bench-layout-") as tmp:
        def config():
            return load_train_config(None, [
                "model=smollm2-135m-instruct", "quantization=4bit", "seed=0", f"ref_cache_dir={tmp}/cache",
                "save_steps=100000", f"dpo.max_steps={steps}", "dpo.per_device_train_batch_size=4",
                "dpo.max_length=160", "dpo.learning_rate=5e-4", "dpo.warmup_steps=0"])
        train_pipeline.prefill_reference(pairs, config())
        for rep in range(2):
            for layout in ("shared", "trl"):
                forced = mock.patch.object(train_pipeline, "policy_layout", lambda cache: "trl") \
                    if layout == "trl" else contextlib.nullcontext()
                with forced:
                    result = train(pairs, config(), Path(tmp) / f"{layout}-{rep}")
                ran = json.loads((Path(tmp) / f"{layout}-{rep}" / "manifest.json").read_text())["policy_layout"]
                assert ran["layout"] == layout, ran
                runs[layout].append(result.train_runtime_s)
                losses[layout].append(float(result.train_log["loss"].iloc[-1]))
    best = {k: min(v) for k, v in runs.items()}
    # the same training up to the layouts' rounding (bf16: ~1e-3 after 10 steps)
    assert abs(losses["trl"][0] - losses["shared"][0]) < 0.02, losses
    return {"shape": f"SmolLM2-135M 4-bit, {len(pairs)} short simulator pairs, batch 4, max_length 160, "
                     f"{steps} steps, reference cached",
            "train_runtime_s": runs, "final_loss": losses,
            "seconds_per_step_best": {k: round(v / steps, 3) for k, v in best.items()},
            "ratio_trl_layout_over_shared": round(best["trl"] / best["shared"], 3),
            "final_loss_abs_difference": round(abs(losses["trl"][0] - losses["shared"][0]), 6)}


_LM_HEAD_CHILD = r"""
import json, sys, time
import torch
from trl.kernels import ChunkedLogProbFunction
hidden, tokens, chunk, reps = (int(a) for a in sys.argv[1:5])
torch.manual_seed(0)
weight = (torch.randn(49152, hidden) * 0.02).to(torch.bfloat16)
h0 = torch.randn(tokens, hidden).to(torch.bfloat16)
labels = torch.randint(0, 49152, (tokens,))
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS"))
def step():
    h = h0.clone().requires_grad_(True)
    lp = ChunkedLogProbFunction.apply(h, weight, None, labels, 1.0, chunk, None, 1.0, ("log_probs",))[0]
    lp.sum().backward()
    return float(lp.detach().double().sum()), float(h.grad.double().abs().sum())
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))
t = time.perf_counter(); step(); seconds = [time.perf_counter() - t]  # first call: one-off set-up
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
baseline = rss()
for _ in range(reps):
    t = time.perf_counter(); sums = step(); seconds.append(time.perf_counter() - t)
peak = hwm()
print("RESULT " + json.dumps({"seconds": seconds, "peak_above_baseline_mb": round(peak - baseline, 1),
                              "logp_sum": sums[0], "grad_abs_sum": sums[1]}))
"""


def bench_lm_head_chunk(out_dir: Path) -> dict:
    """(f) TRL's chunked LM-head kernel (forward + backward, bf16, 49,152-token vocabulary) at
    TRL's vocabulary tile (32,768 rows) against pairlab's CPU tile (``CPU_LM_HEAD_CHUNK``), each
    run in a process of its own, alternated three times: peak RSS above the RSS after a first,
    untimed call (the peak is reset then, so it is the kernel's transient fp32 tiles) and
    seconds per call (best of the timed calls). Shapes: SmolLM2-135M (hidden 576) with 1,200 scored tokens, a
    training batch of 4 real-length pairs; SmolLM2-1.7B's hidden size (2,048) with 400."""
    from pairlab.logprobs import CPU_LM_HEAD_CHUNK
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    shapes = [(576, 200)] if QUICK else [(576, 1200), (2048, 400)]
    reps, rounds = (2, 1) if QUICK else (4, 3)
    tiles = {"trl": _CHUNKED_LOGPROB_CHUNK_SIZE, "pairlab_cpu": CPU_LM_HEAD_CHUNK}
    out = {}
    for hidden, tokens in shapes:
        runs: dict[str, list[dict]] = {name: [] for name in tiles}
        for _ in range(rounds):
            for name, tile in tiles.items():
                proc = subprocess.run([sys.executable, "-c", _LM_HEAD_CHILD, str(hidden), str(tokens), str(tile),
                                       str(reps)], capture_output=True, text=True, env=_child_env(), timeout=1800)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    raise RuntimeError(f"LM-head run failed:\n{proc.stderr[-3000:]}")
                runs[name].append(json.loads(line[0][7:]))
        row = {}
        for name, found in runs.items():
            peaks = sorted(r["peak_above_baseline_mb"] for r in found)
            row[name] = {"tile_rows": tiles[name], "peak_above_baseline_mb": peaks[len(peaks) // 2],
                         "peak_above_baseline_mb_runs": peaks,
                         "seconds_best": round(min(min(r["seconds"][1:]) for r in found), 3)}
        trl_run, ours = runs["trl"][0], runs["pairlab_cpu"][0]
        row["memory_ratio_pairlab_over_trl"] = _ratio(row["pairlab_cpu"]["peak_above_baseline_mb"],
                                                      row["trl"]["peak_above_baseline_mb"])
        row["speedup_pairlab_over_trl"] = _ratio(row["trl"]["seconds_best"], row["pairlab_cpu"]["seconds_best"])
        row["logp_sum_relative_difference"] = abs(ours["logp_sum"] - trl_run["logp_sum"]) / abs(trl_run["logp_sum"])
        row["grad_abs_sum_relative_difference"] = (abs(ours["grad_abs_sum"] - trl_run["grad_abs_sum"])
                                                   / abs(trl_run["grad_abs_sum"]))
        out[f"hidden_{hidden}_tokens_{tokens}"] = row
    return out


def main(out_dir: Path) -> dict:
    t0 = time.time()
    result = {"quick": QUICK, "a_reference_cache": bench_ref_cache(out_dir)}
    result["f_lm_head_chunk"] = bench_lm_head_chunk(out_dir)
    result["e_policy_layout"] = bench_policy_layout(out_dir)
    result["b_c_memory_and_step_time"] = memory = bench_memory_and_step_time(out_dir)
    result["d_memory_at_scale"] = scale = bench_memory_at_scale(out_dir)
    ratio = memory["peak_rss_ratio_4bit_over_full"]
    result["goals"] = {
        "k_arm_reference_saving": result["a_reference_cache"]["goal"],
        "qlora_peak_memory": {"measured": ratio, "goal": "<= 0.5x full-precision LoRA peak RSS (separate processes)",
                              "met": ratio <= 0.5,
                              "peak_mb": {"qlora_4bit": memory["qlora_4bit"]["peak_rss_mb"],
                                          "lora_full_precision": memory["lora_full_precision"]["peak_rss_mb"]},
                              "baseline_mb": {"qlora_4bit": memory["qlora_4bit"]["baseline_rss_mb"],
                                              "lora_full_precision": memory["lora_full_precision"]["baseline_rss_mb"]},
                              "above_baseline_ratio": memory["above_baseline_ratio_4bit_over_full"],
                              "with_activation_checkpointing": memory["peak_rss_ratio_4bit_checkpointing_over_full"],
                              "weights_only_ratio": memory["weights_ratio_4bit_over_full"],
                              "at_1_7b_shape": scale.get("peak_rss_ratio_4bit_over_full"),
                              "met_at_1_7b_shape": (scale.get("peak_rss_ratio_4bit_over_full") or 1) <= 0.5,
                              "at_1_7b_shape_both_checkpointing":
                                  scale.get("peak_rss_ratio_4bit_over_full_both_checkpointing"),
                              "met_at_1_7b_shape_both_checkpointing":
                                  (scale.get("peak_rss_ratio_4bit_over_full_both_checkpointing") or 1) <= 0.5,
                              "at_1_7b_shape_reference_cached": {
                                  k: (scale.get("reference_cached") or {}).get(k) for k in (
                                      "peak_rss_ratio_4bit_over_full",
                                      "peak_rss_ratio_4bit_over_full_both_checkpointing")}},
    }
    result["wall_s"] = round(time.time() - t0, 1)
    return result


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(main(Path("bench_results")), indent=2))
