"""Attribution throughput vs training throughput vs the naive per-pair loop, one process.

Setup: SmolLM2-135M-Instruct in 4-bit with a LoRA adapter from a short `pairlab.train` run on
simulator arithmetic pairs (max_length 96). On the same pairs, model and adapter:

* training: TRL DPO optimizer steps (``train_runtime`` of the run, reference cached beforehand),
  pairs/s = steps x batch / runtime;
* attribution: :func:`pairlab.audit.gradients.pair_gradients` (one batched forward+backward,
  per-example LoRA gradients from hooks, Kronecker projection), pairs/s for one checkpoint;
* naive: one backward per pair, full LoRA gradient flattened, then projected by the dense
  Kronecker matrix (:func:`naive_pair_gradients`).

The goals (issue 18, item 6): attribution >= 0.8x training throughput and >= 2x the naive loop.
Each pass reports the dtype it ran in: the model's compute dtype (bf16 where the CPU does bf16
natively, else fp32; the 4-bit base is dequantized to it) and the dtype of the projected
gradients (the hooks project in fp32). ``PAIRLAB_BENCH_QUICK=1`` shrinks it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

MODEL = "smollm2-135m-instruct"
#: The batched-vs-naive agreement the gradient tests require (their rtol).
NAIVE_TOLERANCE = 1e-3


def _bf16_native() -> bool:
    """Does the CPU do bf16 natively (AVX512-BF16 / AMX), the other kind of CPU in the goal?"""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main(out_dir: Path) -> dict:
    import numpy as np

    from pairlab.artifacts import read_manifest
    from pairlab.audit.gradients import LossSettings, build_projections, naive_pair_gradients, pair_gradients
    from pairlab.audit.pipeline import load_trainable_policy
    from pairlab.audit.validate import ValidateConfig, simulate_data, train_config
    from pairlab.evaluate.config import EvalConfig
    from pairlab.logprobs import shared_prompt_supported
    from pairlab.policy import reference_cache, reference_logps, resolve_setup
    from pairlab.train import train

    import torch

    quick = os.environ.get("PAIRLAB_BENCH_QUICK") == "1"
    n, batch = (8, 4) if quick else (32, 4)
    work = Path(out_dir) / "audit_bench"
    run = work / f"run-{int(time.time())}"
    cfg = ValidateConfig(n=n, n_eval=4, max_steps=n // batch, batch_size=batch, max_length=96,
                         save_steps=1000, ref_cache_dir=str(work / "ref_cache"))
    pairs, _ = simulate_data(cfg)
    # Fill the reference cache first so training time is optimizer steps only.
    train(pairs.head(batch), train_config(cfg, **{"dpo.max_steps": 1}), work / f"warm-{int(time.time())}")
    train(pairs, train_config(cfg), run)
    manifest = read_manifest(run)
    train_s = manifest["timing"]["train_runtime_s"]
    steps = manifest["timing"]["optimizer_steps"]

    setup = resolve_setup(EvalConfig(), run=run)
    model, tokenizer = load_trainable_policy(setup, run / "adapter")
    ref, _ = reference_logps(model, tokenizer, pairs, setup, reference_cache(setup, tokenizer), batch_size=batch)
    ref = ref[["chosen_logps", "rejected_logps"]].to_numpy(np.float32)
    loss = LossSettings(beta=setup.beta, max_length=setup.max_length)
    projections = build_projections(model, 16, seed=0)
    t0 = time.time()
    batched, _, _ = pair_gradients(model, tokenizer, pairs, ref, projections, loss, batch_size=batch)
    attr_s = time.time() - t0
    n_naive = min(len(pairs), 4 if quick else 8)
    t0 = time.time()
    naive = naive_pair_gradients(model, tokenizer, pairs.head(n_naive), ref[:n_naive], projections, loss)
    naive_s = time.time() - t0
    rel = np.abs(batched[:n_naive] - naive).max() / np.abs(naive).max()
    rel_fp32 = None
    if str(next(p.dtype for p in model.parameters() if p.is_floating_point())) != "torch.float32":
        # In bf16 both passes round differently (batch of 4 with padding against batch of 1), so
        # the tolerance the tests set (fp32) is checked on the same pairs in fp32 compute too.
        model32, _ = load_trainable_policy(resolve_setup(EvalConfig(dtype="float32"), run=run), run / "adapter")
        proj32 = build_projections(model32, 16, seed=0)
        b32, _, _ = pair_gradients(model32, tokenizer, pairs.head(n_naive), ref[:n_naive], proj32, loss,
                                   batch_size=batch)
        n32 = naive_pair_gradients(model32, tokenizer, pairs.head(n_naive), ref[:n_naive], proj32, loss)
        rel_fp32 = float(np.abs(b32 - n32).max() / np.abs(n32).max())
        del model32
    # The dtype each pass computed in: training and attribution load the base the same way.
    compute = str(next(p.dtype for p in model.parameters() if p.is_floating_point())).removeprefix("torch.")
    lora = str(projections[0].module.weight.dtype).removeprefix("torch.")
    train_pps = steps * batch / train_s
    attr_pps = len(pairs) / attr_s
    return {
        "model": MODEL, "quantization": "4bit", "max_length": 96, "pairs": len(pairs), "batch_size": batch,
        "projected_dim": int(batched.shape[1]),
        "lora_params": int(sum(p.module.weight.numel() for p in projections)),
        "training_pairs_per_s": round(train_pps, 3),
        "attribution_pairs_per_s_per_checkpoint": round(attr_pps, 3),
        "naive_pairs_per_s_per_checkpoint": round(n_naive / naive_s, 3),
        "attribution_vs_training": round(attr_pps / train_pps, 3),
        "attribution_vs_naive": round(attr_pps / (n_naive / naive_s), 3),
        "goal_attribution_vs_training": 0.8,
        "goal_attribution_vs_naive": 2.0,
        "attribution_layout": "shared" if shared_prompt_supported(model) else "trl",
        "naive_layout": "trl",
        "dtype": {"training": manifest.get("environment", {}).get("compute_dtype") or compute,
                  "attribution_model": compute, "attribution_lora": lora, "projected_gradients": "float32",
                  "naive": compute},
        "bf16_native_cpu": _bf16_native(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")(),
        "threads": torch.get_num_threads(),
        "max_rel_diff_batched_vs_naive": float(rel),
        "max_rel_diff_batched_vs_naive_fp32": rel_fp32,
        "goals": {
            "attribution_vs_training": {
                "measured": round(attr_pps / train_pps, 3), "goal": ">= 0.8x training throughput (pairs/s)",
                "met": attr_pps / train_pps >= 0.8, "dtype": compute,
                "cpu": "bf16-native" if _bf16_native() else "no native bf16"},
            "attribution_vs_naive": {
                "measured": round(attr_pps / (n_naive / naive_s), 3), "goal": ">= 2x the naive per-pair loop",
                "met": attr_pps / (n_naive / naive_s) >= 2.0, "dtype": compute},
            "batched_equals_naive": {
                "measured": float(rel if rel_fp32 is None else rel_fp32),
                "goal": f"max |batched - naive| / max |naive| <= {NAIVE_TOLERANCE} in fp32 (the scale of "
                        "tests/audit/test_gradients.py's tolerance: rtol 1e-3, atol 1e-4 x max)",
                "met": float(rel if rel_fp32 is None else rel_fp32) <= NAIVE_TOLERANCE,
                "in_compute_dtype": {"dtype": compute, "max_rel_diff": float(rel)}},
        },
    }


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench_results")), indent=2))
