"""EvalConfig: what a `pairlab evaluate` run does, loaded from YAML + ``key=value`` overrides.

Fields left ``None`` are taken from the run being evaluated (``RUN_DIR/manifest.json``:
model spec, quantization, dtype, beta, max_length, truncation mode, reference-cache
directory), so an adapter is scored with exactly the model, precision and tokenization
it was trained with, and reads the same reference cache. For a bare ``--model`` they
fall back to :data:`pairlab.policy.BARE_MODEL_DEFAULTS` (the same values `pairlab train` defaults to).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ..config import ConfigError, check_ranges, load_config

MODES = ("greedy", "sample")


# Optional[...] rather than `X | None`: pairlab.config's coercion recognises typing.Union.
@dataclass
class EvalConfig:
    quantization: Optional[str] = field(default=None, metadata={
        "help": "4bit or none; default: the run's (4bit for a bare --model)"})
    dtype: Optional[str] = field(default=None, metadata={
        "help": "compute dtype (auto, bfloat16, float16, float32); default: the run's"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    beta: Optional[float] = field(default=None, metadata={"gt": 0,
        "help": "beta of the implicit reward beta*(log pi - log pi_ref); default: the run's dpo.beta (0.1 bare)"})
    max_length: Optional[int] = field(default=None, metadata={"min": 1,
        "help": "prompt+completion tokens kept per sequence; default: the run's dpo.max_length (256 bare)"})
    truncation_mode: Optional[str] = field(default=None, metadata={
        "help": "keep_start (keep the first max_length tokens; keep_end is deprecated in TRL 1.16); "
                "default: the run's dpo.truncation_mode"})
    batch_size: int = field(default=8, metadata={"min": 1,
        "help": "pairs per forward (length-sorted, so batches pad little)"})
    ref_cache: bool = field(default=True, metadata={
        "help": "read/write reference log-probs in the shared on-disk cache (the one training used), and "
                "a run's policy log-probs there too, saved as computed: a rerun recomputes none"})
    chunk_pairs: int = field(default=64, metadata={"min": 1,
        "help": "pairs per chunk of log-probs saved to the cache while a pass runs"})
    ref_cache_dir: Optional[str] = field(default=None, metadata={
        "help": "reference cache root; default: the run's ref_cache_dir, else $PAIRLAB_CACHE/ref_logps"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples for the accuracy CI", "min": 1})
    seed: int = field(default=0, metadata={"help": "seed for the bootstrap", "min": 0})
    generate: bool = field(default=True, metadata={
        "help": "write generations.parquet (base vs aligned on a fixed prompt set)"})
    n_prompts: int = field(default=8, metadata={"min": 0,
        "help": "prompts for generations: the first N distinct prompts of the eval set (or of prompts_file)"})
    prompts_file: Optional[str] = field(default=None, metadata={
        "help": "prompts for generations: .txt (one per line) or .jsonl with a 'prompt' (text or messages)"})
    max_new_tokens: int = field(default=64, metadata={"help": "tokens generated per prompt at most", "min": 1})
    modes: list[str] = field(default_factory=lambda: list(MODES), metadata={
        "help": "decoding modes: greedy and/or sample"})
    sample_seeds: list[int] = field(default_factory=lambda: [0], metadata={"min": 0,
        "help": "one sampled generation per seed (torch seeded per prompt, so reruns are identical)"})
    benchmark: str = field(default="auto", metadata={
        "help": "RewardBench-style figures in metrics.json['benchmark']: auto (when the eval file has a "
                "`subset` column or its sources are RewardBench subsets), rewardbench, best-of-n, none"})
    benchmark_reference_free: str = field(default="none", metadata={
        "help": "benchmark ranking: none (implicit reward, reference = the base), sum or norm "
                "(reference-free: policy log-prob summed, or per token)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature", "gt": 0})
    top_p: float = field(default=0.95, metadata={"help": "sampling nucleus", "gt": 0, "max": 1})

    def validate(self) -> "EvalConfig":
        from ..models import DTYPES, QUANTIZATIONS, check_device

        check_device(self.device)
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"unknown quantization '{self.quantization}'", field="quantization",
                              hint=f"choose one of {QUANTIZATIONS}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype '{self.dtype}'", field="dtype", hint=f"choose one of {DTYPES}")
        if self.truncation_mode not in (None, "keep_start", "keep_end"):
            raise ConfigError(f"unknown truncation_mode '{self.truncation_mode}'", field="truncation_mode",
                              hint="keep_start or keep_end")
        check_ranges(self)  # the numeric fields' ranges, from their metadata
        if self.benchmark not in ("auto", "rewardbench", "best-of-n", "none"):
            raise ConfigError(f"unknown benchmark '{self.benchmark}'", field="benchmark",
                              hint="auto, rewardbench, best-of-n or none")
        if self.benchmark_reference_free not in ("none", "sum", "norm"):
            raise ConfigError(f"unknown benchmark_reference_free '{self.benchmark_reference_free}'",
                              field="benchmark_reference_free", hint="none, sum or norm")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ConfigError(f"unknown mode '{bad[0]}'", field="modes", hint=f"choose from {MODES}")
        return self


def load_eval_config(path: str | os.PathLike | None = None,
                     overrides: list[str] | dict[str, Any] | None = None) -> EvalConfig:
    """Defaults < YAML < ``key=value`` overrides, validated."""
    return load_config(EvalConfig, path, overrides).validate()
