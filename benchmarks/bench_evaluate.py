"""`pairlab evaluate` vs TRL's `DPOTrainer.evaluate()` on the same adapter and the same pairs.

Setup: SmolLM2-135M-Instruct in 4-bit, a LoRA adapter from a short real `pairlab.train`
run, simulator held-out pairs at realistic length (~1,200 characters per completion),
max_length 384, the same batch size on both sides. Measured, in one process:

* TRL ``evaluate()`` (policy and reference forwards on every batch, dataset order);
* ``pairlab evaluate`` with a cold reference cache (reference + policy, length-sorted);
* ``pairlab evaluate`` again with the cache warm (policy only);
* K = 3 arms on the same eval set: the reference is computed once, by the first arm.
  Arms 2 and 3 are the trained adapter with its LoRA B matrices scaled by 0.5 and 1.5
  (distinct policies on the same base), so the bench trains once.

* the forward-pass floor: the policy and reference forwards alone on pre-tokenized,
  pre-collated length-sorted batches of the same model (one untimed warm-up batch first,
  so no measurement below pays the process's first-forward costs).

Goals: cold (tokenization + reference + policy passes) >= 2x faster than TRL's
``evaluate()``, and <= 1.5x the floor. Accuracy must be identical (TRL's mean of batch
means equals the per-pair mean when the pair count is a multiple of the batch size). ``PAIRLAB_BENCH_QUICK=1`` shrinks it;
``PAIRLAB_BENCH_EVAL_PAIRS`` sets the pair count.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from pairlab.dirs import MANIFEST, hash_outputs

MODEL = "smollm2-135m-instruct"
MAX_LENGTH = 384
BATCH_SIZE = 4


def _scaled_arm(run: Path, out: Path, scale: float) -> Path:
    """A copy of ``run`` whose adapter's LoRA B weights are multiplied by ``scale``."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(run, out, ignore=shutil.ignore_patterns("checkpoints"))
    path = out / "adapter" / "adapter_model.safetensors"
    weights = load_file(path)
    save_file({k: (v * scale if "lora_B" in k else v) for k, v in weights.items()}, path)
    # A new run directory: its manifest lists the edited adapter's hash, so readers accept it.
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["outputs"].update(hash_outputs(out, ["adapter/adapter_model.safetensors"]))
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out


def _stock_4bit_kernels(model) -> None:
    """Undo pairlab's kernel choice: bitsandbytes' default, which repacks CPU 4-bit weights for
    its inference kernel on AVX512-BF16 CPUs (what a model loaded by plain
    ``from_pretrained`` runs; see :func:`pairlab.models.keep_4bit_weights_trainable`)."""
    from bitsandbytes.functional import has_avx512bf16

    from pairlab.models import set_4bit_repacking

    native = bool(has_avx512bf16())
    set_4bit_repacking(model, lambda module: native)


def _trl_evaluate(run: Path, pairs, work: Path, beta: float, stock: bool = True) -> tuple[dict, float]:
    """TRL's DPOTrainer.evaluate() on the run's adapter; returns (metrics, seconds in evaluate()).

    ``stock``: on bitsandbytes' default kernels, as a user's plain TRL script runs it; False:
    on the kernel pairlab picks (the same FLOPs and kernels as pairlab's evaluation)."""
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    from pairlab.io import to_trl_dataset
    from pairlab.models import load_model, load_tokenizer, pick_compute_dtype, precision_flags

    tokenizer = load_tokenizer(MODEL)
    base = load_model(MODEL, quantization="4bit")
    if stock:
        _stock_4bit_kernels(base)
    model = PeftModel.from_pretrained(base, str(run / "adapter"), is_trainable=False, autocast_adapter_dtype=False)
    dataset = to_trl_dataset(pairs)
    args = DPOConfig(output_dir=str(work / "trl"), per_device_eval_batch_size=BATCH_SIZE, max_length=MAX_LENGTH,
                     beta=beta, use_cpu=True, report_to="none", precompute_ref_log_probs=False,
                     **precision_flags(pick_compute_dtype("cpu")))
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset,
                         processing_class=tokenizer)
    trainer.model.delete_adapter("ref")  # the DPO reference is the base (adapter disabled), as in training
    t0 = time.time()
    metrics = trainer.evaluate()
    return metrics, time.time() - t0


def _forward_floor(run: Path, pairs, batch_size: int) -> dict:
    """Seconds of the policy + reference forwards alone (no tokenization, collation or cache).

    On pre-tokenized, pre-collated, length-sorted batches, in TRL's layout (one row per
    completion) and, where the model supports it, in the shared-prompt layout that
    `pairlab evaluate` uses by default (``PAIRLAB_LOGPS_LAYOUT=trl`` turns it off); the
    floor is the layout evaluate used.
    """
    from pairlab import logprobs
    from pairlab.evaluate import load_eval_config
    from pairlab.evaluate.runner import load_policy, resolve_setup

    setup = resolve_setup(load_eval_config(None, ["generate=false"]), run=run)
    model, tokenizer = load_policy(setup)
    tokenized = logprobs.tokenize_pairs(tokenizer, pairs)
    model.eval()
    layouts = {"trl": (logprobs.preference_collator(tokenizer, setup.max_length, setup.truncation_mode),
                       logprobs.completion_logps, False)}
    if logprobs.shared_prompt_supported(model, setup.truncation_mode):
        layouts["shared_prompt"] = (
            lambda examples: logprobs.shared_prompt_batch(examples, tokenizer.pad_token_id, setup.max_length),
            logprobs.shared_prompt_logps, True)
    logprobs.ensure_fused_lm_head(model)
    result = {}
    for name, (collate, forward, shared) in layouts.items():
        order = logprobs.length_order(tokenized, shared)
        batches = [collate([tokenized[i] for i in order[s:s + batch_size]]) for s in range(0, len(order), batch_size)]
        forward(model, batches[-1])  # warm-up (untimed): first-call costs of the process
        t0 = time.time()
        for batch in batches:
            forward(model, batch)
            with model.disable_adapter():
                forward(model, batch)
        result[name] = {"seconds": round(time.time() - t0, 2), "batches": len(batches),
                        "padded_shapes": [list(b["input_ids"].shape) for b in batches]}
    del model
    used = "shared_prompt" if "shared_prompt" in result else "trl"
    return {"layout": used, "seconds": result[used]["seconds"], "layouts": result,
            "ratio_trl_layout_over_used": round(result["trl"]["seconds"] / result[used]["seconds"], 3)}


def main(out_dir: Path) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    from pairlab.evaluate import evaluate, load_eval_config
    from pairlab.simulate import simulate_pairs
    from pairlab.train import load_train_config, train

    quick = os.environ.get("PAIRLAB_BENCH_QUICK") == "1"
    n_eval = int(os.environ.get("PAIRLAB_BENCH_EVAL_PAIRS", 8 if quick else 24))
    n_eval -= n_eval % BATCH_SIZE
    work = Path(out_dir) / "bench_evaluate_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ref_dir = work / "ref_cache"

    train_pairs, held_out = simulate_pairs(n=max(40, 3 * n_eval), seed=7, length="realistic",
                                           eval_fraction=0.5)
    pairs = held_out.head(n_eval).reset_index(drop=True)
    if len(pairs) < n_eval:
        raise RuntimeError(f"simulator gave {len(pairs)} held-out pairs, wanted {n_eval}")

    t0 = time.time()
    run = work / "run"
    train(train_pairs.head(4), load_train_config(None, [
        f"model={MODEL}", f"ref_cache_dir={ref_dir}", "save_steps=100", f"dpo.max_length={MAX_LENGTH}",
        "dpo.learning_rate=0.001", "dpo.max_steps=2", "lora.r=8"]), run)
    train_s = time.time() - t0

    floor = _forward_floor(run, pairs, BATCH_SIZE)  # first: it also warms the process up
    trl_metrics, trl_s = _trl_evaluate(run, pairs, work, beta=0.1)
    _, trl_same_kernel_s = _trl_evaluate(run, pairs, work, beta=0.1, stock=False)

    config = load_eval_config(None, ["generate=false", f"batch_size={BATCH_SIZE}"])
    cold = evaluate(pairs, work / "eval_cold", run=run, config=config)
    warm = evaluate(pairs, work / "eval_warm", run=run, config=config)
    arms = [_scaled_arm(run, work / f"arm{i}", s) for i, s in ((2, 0.5), (3, 1.5))]
    arm_results = [evaluate(pairs, work / f"eval_{a.name}", run=a, config=config) for a in arms]

    def logps_s(result) -> float:
        return result.metrics["timing"]["reference_s"] + result.metrics["timing"]["policy_s"]

    def passes_s(result) -> float:  # what evaluate() does that TRL's evaluate() does: tokenize + forwards
        return result.metrics["timing"]["tokenize_s"] + logps_s(result)

    ours_acc = float(cold.per_pair["correct"].mean())
    trl_acc = float(trl_metrics["eval_rewards/accuracies"])
    reference_computed = [r.reference["computed"] for r in (cold, *arm_results)]
    return {
        "setup": {"model": MODEL, "quantization": "4bit", "compute_dtype": cold.metrics["settings"]["compute_dtype"],
                  "max_length": MAX_LENGTH, "batch_size": BATCH_SIZE, "eval_pairs": n_eval,
                  "length": "realistic", "quick": quick,
                  "mean_tokens_per_pair": float((cold.per_pair["chosen_tokens"] + cold.per_pair["rejected_tokens"]).mean()),
                  "train_s": round(train_s, 1)},
        "trl_evaluate_s": round(trl_s, 2),
        "trl_evaluate_kernels": "bitsandbytes default (stock from_pretrained)",
        "trl_evaluate_same_kernel_s": round(trl_same_kernel_s, 2),
        "ratio_trl_same_kernel_over_cold": round(trl_same_kernel_s / passes_s(cold), 2),
        "trl_s_per_pair": round(trl_s / n_eval, 3),
        "pairlab_cold_s": round(logps_s(cold), 2),
        "pairlab_cold_total_s": cold.metrics["timing"]["total_s"],
        "pairlab_warm_s": round(logps_s(warm), 2),
        "pairlab_warm_total_s": warm.metrics["timing"]["total_s"],
        "ratio_trl_over_cold": round(trl_s / logps_s(cold), 2),
        "ratio_trl_over_warm": round(trl_s / logps_s(warm), 2),
        "accuracy_pairlab": ours_acc,
        "accuracy_trl": trl_acc,
        "accuracy_identical": ours_acc == trl_acc,
        "mean_margin_pairlab": float(cold.per_pair["margin"].mean()),
        "mean_margin_trl": float(trl_metrics["eval_rewards/margins"]),
        "warm_reference_computed": warm.reference["computed"],
        "forward_floor": floor,
        "pairlab_cold_passes_s": round(passes_s(cold), 2),
        "pairlab_cold_timing": cold.metrics["timing"],
        "ratio_cold_over_floor": round(passes_s(cold) / floor["seconds"], 3),
        "ratio_trl_over_floor": round(trl_s / floor["seconds"], 3),
        "goals": {
            "cold_vs_trl_evaluate": {"measured": round(trl_s / passes_s(cold), 2), "goal": ">= 2x faster",
                                     "met": trl_s / passes_s(cold) >= 2.0},
            "cold_vs_forward_floor": {"measured": round(passes_s(cold) / floor["seconds"], 3),
                                      "goal": "<= 1.5x the floor", "met": passes_s(cold) <= 1.5 * floor["seconds"]},
            "identical_accuracy": {"measured": [ours_acc, trl_acc], "goal": "equal", "met": ours_acc == trl_acc},
        },
        "k_arms": {"k": 1 + len(arms), "reference_pairs_computed_per_arm": reference_computed,
                   "reference_passes": sum(reference_computed) / n_eval,
                   "arm_logps_s": [round(logps_s(r), 2) for r in (cold, *arm_results)],
                   "arm_accuracy": [float(r.per_pair["correct"].mean()) for r in (cold, *arm_results)]},
    }


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench_results")), indent=2))
