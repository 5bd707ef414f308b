"""Model card and dataset card text for an exported run: pure functions of the manifests.

Both are Hugging Face cards (YAML front matter + Markdown), so the export directory's
``README.md`` and ``data/README.md`` can be pushed to the hub as they are.
"""
from __future__ import annotations

from typing import Any

import yaml


def _front_matter(meta: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump({k: v for k, v in meta.items() if v is not None}, sort_keys=False) + "---\n"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _ci(ci: Any) -> str:
    if not ci or any(v is None for v in ci):
        return ""
    return f" (95% CI {_pct(ci[0])} to {_pct(ci[1])})"


def _filters(filters: list[Any]) -> str:
    if not filters:
        return "none (every pair of the pool, less the held-out split)"
    return "; ".join(yaml.safe_dump(f, default_flow_style=True).strip() for f in filters)


def metrics_lines(metrics: dict[str, Any] | None, benchmark: dict[str, Any] | None = None) -> list[str]:
    """Held-out figures with their confidence intervals (none: says there is no evaluation)."""
    if not metrics:
        return ["No held-out evaluation was found for this run; run `pairlab evaluate --run RUN_DIR "
                "--eval EVAL_PAIRS --out EVAL_DIR` and export with `--eval EVAL_DIR`."]
    lines = [f"Held-out pairs: {metrics.get('n_pairs')} (`{(metrics.get('eval') or {}).get('spec')}`), "
             f"beta {metrics.get('beta')}. Ties (margin exactly 0) count as wrong.", "",
             "| metric | value |", "|---|---|",
             f"| implicit-reward accuracy | {_pct(metrics.get('accuracy'))}{_ci(metrics.get('accuracy_ci95'))} |",
             f"| reference-free accuracy | {_pct(metrics.get('ref_free_accuracy'))}"
             f"{_ci(metrics.get('ref_free_accuracy_ci95'))} |",
             f"| mean reward margin | {metrics.get('mean_margin', float('nan')):.4f} |",
             f"| ties | {metrics.get('ties')} |"]
    if metrics.get("true_accuracy") is not None:
        lines.append(f"| accuracy against the true preference | {_pct(metrics['true_accuracy'])} |")
    verdict = (metrics.get("verdict") or {}).get("text")
    if verdict:
        lines += ["", f"Verdict: {verdict}"]
    if benchmark:
        lines += ["", f"Preference benchmark ({benchmark.get('kind')}): score {_pct(benchmark.get('score'))}"]
        for name, row in (benchmark.get("sections") or {}).items():
            lines.append(f"- {name}: {_pct(row.get('accuracy'))} over {row.get('n')} examples")
    return lines


def model_card(*, name: str, base_model: str, run: dict[str, Any], curate: dict[str, Any] | None,
               metrics: dict[str, Any] | None, benchmark: dict[str, Any] | None, counts: dict[str, int],
               merged: bool, launch: str) -> str:
    """README.md of the export: base model, data, filters, pair counts, DPO settings, held-out metrics."""
    config = run.get("config", {})
    dpo = config.get("dpo_effective") or config.get("dpo") or {}
    lora = config.get("lora", {})
    meta = {"base_model": base_model if "/" in base_model and not base_model.startswith("/") else None,
            "library_name": "peft", "license": None, "tags": ["dpo", "trl", "pairlab", "lora"],
            "datasets": None, "model_name": name}
    curate = curate or {}
    lines = [_front_matter(meta), f"# {name}", "",
             f"A LoRA adapter trained with DPO (TRL `DPOTrainer`, through pairlab) on `{base_model}`"
             + (" in 4-bit NF4 (QLoRA)" if config.get("quantization") == "4bit" else " in full precision")
             + f", for {run.get('global_step')} optimizer steps."
             + (" `merged/` holds the adapter merged into the full-precision base (safetensors, base dtype);"
                " with a 4-bit run, that model is the adapter on the unquantized base, which differs slightly"
                " from the quantized model training saw." if merged else ""), "",
             "## Data", "",
             f"- training pairs: {counts.get('train')} (`data/train.parquet`; dataset card: `data/README.md`)",
             f"- held-out pairs: {counts.get('test', 0)} (`data/test.parquet`, not trained on)",
             f"- curation: {curate.get('counts', {}).get('input', 'n/a')} pairs read, "
             f"{curate.get('counts', {}).get('dropped', 'n/a')} dropped by the filters",
             f"- filters, in order: {_filters(curate.get('filters', []))}", ""]
    for step in curate.get("steps", []):
        lines.append(f"  - `{step.get('label')}`: {step.get('rows_in')} in, {step.get('dropped')} dropped "
                     f"({step.get('reason', '')})")
    lines += ["", "## Training", "",
              "| setting | value |", "|---|---|",
              f"| base model | `{base_model}` |",
              f"| quantization | {config.get('quantization')} (compute dtype {run.get('compute_dtype')}) |",
              f"| LoRA | r {lora.get('r')}, alpha {lora.get('alpha')}, dropout {lora.get('dropout')}, "
              f"targets {lora.get('target_modules')} |",
              f"| seed | {config.get('seed')} |"]
    for key in ("beta", "loss_type", "learning_rate", "lr_scheduler_type", "num_train_epochs", "max_steps",
                "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "truncation_mode"):
        if key in dpo:
            lines.append(f"| {key} | {dpo[key]} |")
    lines += ["", "Retrain with TRL itself on the exported data and settings:", "", "```bash", launch, "```",
              "", "## Held-out evaluation", "", *metrics_lines(metrics, benchmark), ""]
    return "\n".join(lines)


def dataset_card(*, name: str, curate: dict[str, Any] | None, counts: dict[str, int], source: str | None) -> str:
    """data/README.md: the curated preference pairs in TRL's conversational format."""
    curate = curate or {}
    meta = {"configs": [{"config_name": "default", "data_files": [
        {"split": split, "path": f"{split}.parquet"} for split in ("train", "test") if counts.get(split)]}],
        "tags": ["dpo", "preference", "pairlab"]}
    lines = [_front_matter(meta), f"# {name}: curated preference pairs", "",
             "Preference pairs in TRL's conversational format: `prompt` (messages), `chosen` and "
             "`rejected` (one assistant message each), and `pair_id` (pairlab's id, to join per-pair "
             "results back). Load with `datasets.load_dataset(\"parquet\", data_files=...)` or "
             "`datasets.load_from_disk(\"../dataset\")`.", "",
             f"- source: `{source}`",
             f"- train: {counts.get('train')} pairs; test: {counts.get('test', 0)} pairs (held out by "
             f"{(curate.get('split') or {}).get('by', 'the run')}, never trained on)",
             f"- filters, in order: {_filters(curate.get('filters', []))}",
             f"- pairs read: {curate.get('counts', {}).get('input', 'n/a')}, dropped by the filters: "
             f"{curate.get('counts', {}).get('dropped', 'n/a')}", ""]
    return "\n".join(lines)
