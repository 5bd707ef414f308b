"""Train benchmarks: (a) the shared reference cache vs TRL's per-run reference, K=3 arms;
(b) peak RSS of 4-bit QLoRA vs full-precision LoRA on SmolLM2-135M; (c) seconds per optimizer step.

(a) Reference forward passes are counted exactly on a 2,000-pair simulator pool with
three overlapping arms (each a seeded 60% sample): with the shared cache a pair's
reference is computed once for all arms; TRL's own handling
(``precompute_ref_log_probs=False``) runs the reference on every micro-batch of every
epoch of every arm (TRL's ``precompute_ref_log_probs=True`` caches per dataset
fingerprint, so each arm's subset is again a full pass). The counting rule is
checked against the trainer's own counters on the wall-time runs, which train
SmolLM2-135M-Instruct (4-bit) on a smaller pool of realistic-length pairs (max_length
384; sizes in the result) in one process, each arm run both ways. The goal: the shared
cache >= 1.25x faster in wall time (reference pass + every arm's training).
``PAIRLAB_BENCH_KARM_MODEL`` / ``PAIRLAB_BENCH_KARM_PAIRS`` change the model and pool size.

(b) and (c) run each configuration in a fresh subprocess, so ``ru_maxrss`` is that
run's peak. The goal: QLoRA peak <= 0.5x full-precision LoRA's. At 135M parameters
the weights are a small part of a CPU process's peak (the libraries, activations,
optimizer and the unquantized embedding dominate), so the weights alone
(``model_footprint_mb``) are reported beside the peak. ``PAIRLAB_BENCH_QUICK=1`` shrinks everything for a smoke check.
"""
from __future__ import annotations

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

    pool = _sim_pool(2000)
    arms_2k = _arms(pool["pair_id"].tolist())
    exact = reference_pass_counts(arms_2k, epochs=1, batch_size=4)

    model = os.environ.get("PAIRLAB_BENCH_KARM_MODEL", "smollm2-135m-instruct")
    small = int(os.environ.get("PAIRLAB_BENCH_KARM_PAIRS", 6 if QUICK else 16))
    realistic = model != "tiny-random-llama"
    pool_small = _sim_pool(small, length="realistic" if realistic else "short")
    arms = _arms(pool_small["pair_id"].tolist())
    by_id = pool_small.set_index("pair_id", drop=False)
    max_length = 384 if realistic else 96
    settings = [f"model={model}", "quantization=4bit", "seed=0", "save_steps=100000",
                "dpo.per_device_train_batch_size=2", "dpo.precompute_ref_batch_size=4",
                f"dpo.max_length={max_length}", "dpo.num_train_epochs=1"]
    timings: dict[str, list[float]] = {"shared_cache": [], "trl_per_step": []}
    loop: dict[str, float] = {"shared_cache": 0.0, "trl_per_step": 0.0}
    counted: dict[str, int] = {"shared_cache": 0, "trl_per_step": 0}
    with tempfile.TemporaryDirectory(prefix="pairlab-bench-train-") as tmp:
        for mode, ref_cache in (("shared_cache", True), ("trl_per_step", False)):
            for i, arm in enumerate(arms):
                cfg = load_train_config(None, settings + [f"ref_cache={str(ref_cache).lower()}",
                                                          f"ref_cache_dir={tmp}/cache"])
                t0 = time.time()
                result = train(by_id.loc[arm].reset_index(drop=True), cfg, Path(tmp) / f"{mode}-{i}")
                timings[mode].append(round(time.time() - t0, 2))
                counted[mode] += result.ref_cache["computed"]
                # reference pass (cache mode) + optimizer loop (where TRL runs its reference)
                loop[mode] += result.ref_cache["precompute_s"] + result.train_runtime_s
    small_counts = reference_pass_counts(arms, epochs=1, batch_size=2)
    assert counted["shared_cache"] == small_counts["shared_cache_ref_pairs"], counted
    assert counted["trl_per_step"] == small_counts["trl_per_step_ref_pairs"], counted
    wall_cache, wall_trl = sum(timings["shared_cache"]), sum(timings["trl_per_step"])
    return {
        "exact_counts_2k_pool": exact,
        "wall_time_runs": {
            "model": f"{model} (4-bit), batch 2, max_length {max_length}, "
                     f"{'realistic' if realistic else 'short'} pairs, 1 epoch per arm",
            "pool_pairs": small, "arm_sizes": [len(a) for a in arms],
            "ref_pairs_counted_by_trainer": counted,
            "arm_wall_s": timings,
            "total_wall_s": {"shared_cache": round(wall_cache, 2), "trl_per_step": round(wall_trl, 2)},
            "ratio_wall_trl_over_cache": round(wall_trl / wall_cache, 3),
            "reference_plus_training_loop_s": {k: round(v, 2) for k, v in loop.items()},
            "ratio_loop_trl_over_cache": round(loop["trl_per_step"] / loop["shared_cache"], 3),
        },
        "goal": {"measured": round(wall_trl / wall_cache, 3), "goal": ">= 1.25x (TRL per-step / shared cache, wall)",
                 "met": wall_trl / wall_cache >= 1.25},
    }


_CHILD = r"""
import json, sys, tempfile
from pathlib import Path
from pairlab.simulate import simulate_pairs
from pairlab.train import load_train_config, train
quant, steps, batch, max_length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pairs, _ = simulate_pairs(n=60, seed=0, topics={"facts": 1.0, "definitions": 1.0})
with tempfile.TemporaryDirectory() as tmp:
    cfg = load_train_config(None, ["model=smollm2-135m-instruct", f"quantization={quant}", "seed=0",
        f"ref_cache_dir={tmp}/cache", "save_steps=100000", f"dpo.max_steps={steps}",
        f"dpo.per_device_train_batch_size={batch}", f"dpo.max_length={max_length}",
        "dpo.learning_rate=0.0001"])
    r = train(pairs.head(batch * steps), cfg, Path(tmp) / "run")
    print("RESULT " + json.dumps({"peak_rss_mb": r.peak_rss_mb, "train_runtime_s": r.train_runtime_s,
        "steps": r.global_step, "seconds_per_step": round(r.train_runtime_s / r.global_step, 3),
        "model_footprint_mb": r.model_footprint_mb,
        "wall_s": r.wall_time_s}))
"""


def bench_memory_and_step_time(out_dir: Path) -> dict:
    steps, batch, max_length = (1, 2, 64) if QUICK else (2, 2, 96)
    results = {}
    for quant in ("4bit", "none"):
        env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        proc = subprocess.run([sys.executable, "-c", _CHILD, quant, str(steps), str(batch), str(max_length)],
                              capture_output=True, text=True, env=env, timeout=900)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise RuntimeError(f"{quant} run failed:\n{proc.stderr[-3000:]}")
        results["qlora_4bit" if quant == "4bit" else "lora_full_precision"] = json.loads(line[0][7:])
    from pairlab.models import cpu_has_native_bf16

    return {
        "model": "smollm2-135m-instruct", "batch": batch, "max_length": max_length, "steps": steps,
        "device": "cpu", "compute_dtype": "bfloat16" if cpu_has_native_bf16() else "float32",
        **results,
        "peak_rss_ratio_full_over_4bit": round(results["lora_full_precision"]["peak_rss_mb"]
                                               / results["qlora_4bit"]["peak_rss_mb"], 3),
        "peak_rss_ratio_4bit_over_full": round(results["qlora_4bit"]["peak_rss_mb"]
                                               / results["lora_full_precision"]["peak_rss_mb"], 3),
        "weights_ratio_4bit_over_full": (
            round(results["qlora_4bit"]["model_footprint_mb"] / results["lora_full_precision"]["model_footprint_mb"], 3)
            if results["qlora_4bit"].get("model_footprint_mb") and results["lora_full_precision"].get("model_footprint_mb")
            else None),
        "gpu": "not measured (no GPU in this environment)",
    }


def main(out_dir: Path) -> dict:
    t0 = time.time()
    result = {"quick": QUICK, "a_reference_cache": bench_ref_cache(out_dir)}
    result["b_c_memory_and_step_time"] = memory = bench_memory_and_step_time(out_dir)
    ratio = memory["peak_rss_ratio_4bit_over_full"]
    result["goals"] = {
        "k_arm_reference_saving": result["a_reference_cache"]["goal"],
        "qlora_peak_memory": {"measured": ratio, "goal": "<= 0.5x full-precision LoRA peak RSS (separate processes)",
                              "met": ratio <= 0.5,
                              "weights_only_ratio": memory["weights_ratio_4bit_over_full"]},
    }
    result["wall_s"] = round(time.time() - t0, 1)
    return result


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(main(Path("bench_results")), indent=2))
