"""`evaluate()`: a trained run (or a bare model) + held-out pairs -> EVAL_DIR. Read top to bottom.

EVAL_DIR/
  per_pair.parquet     one row per pair: policy/reference log-probs (sum and per-token mean),
                       implicit rewards, margin, correct/tie, reference-free correctness,
                       token lengths, source, rating gap, and the texts
  metrics.json         aggregates (metrics.summarize) + verdict, model, run, eval data hash, timing
  generations.parquet  base vs aligned on a fixed prompt set (see generate.py)
  manifest.json        config, inputs, versions, wall time
  report.html          when pairlab.reports provides render_report

Efficiency, and why the numbers equal TRL's:

* One model in memory: the 4-bit base with the run's LoRA adapter; the reference is the
  same model with the adapter disabled (as in training).
* Reference log-probs come from the shared on-disk cache under the key training used
  (same model fingerprint, compute dtype, tokenizer, max_length, truncation), so K arms
  evaluated on one eval set cost one reference pass, and a re-evaluation costs none.
* Log-probs go through :func:`pairlab.logprobs.sequence_logps`: TRL's tokenization, TRL's
  collator and fused LM head, in length-sorted batches (little padding).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import artifacts
from ..config import to_dict
from ..schema import PairDataError, validate_pairs
from . import metrics
from .config import BARE_MODEL_DEFAULTS, EvalConfig

log = logging.getLogger(__name__)

PER_PAIR = "per_pair.parquet"
METRICS = "metrics.json"
GENERATIONS = "generations.parquet"
ADAPTER_DIR = "adapter"  # inside a run directory (pairlab.train writes it)
TEXT_COLUMNS = ["prompt_id", "prompt_text", "chosen", "rejected"]


@dataclass(frozen=True)
class EvalSetup:
    """Concrete settings of one evaluation, after reading the run's manifest."""

    model: str
    quantization: str
    dtype: str
    device: str
    compute_dtype: str
    beta: float
    max_length: int | None
    truncation_mode: str
    ref_cache_dir: str | None
    run: str | None
    adapter_dir: str | None


@dataclass
class EvalResult:
    out_dir: Path
    per_pair: pd.DataFrame
    metrics: dict[str, Any]
    generations: pd.DataFrame | None
    reference: dict[str, Any]
    report: Path | None


# ---------------------------------------------------------------- settings

def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A training run's manifest, after checking the directory holds a finished run."""
    run = Path(run_dir)
    if not (run / artifacts.MANIFEST).exists():
        raise PairDataError("not a finished run directory (no manifest.json)", file=str(run),
                            hint="pass the --out of a completed `pairlab train`, or --model for a bare model")
    manifest = artifacts.read_manifest(run)
    if manifest.get("stage") != "train":
        raise PairDataError(f"manifest is from stage '{manifest.get('stage')}', not train", file=str(run))
    if not (run / ADAPTER_DIR / "adapter_config.json").exists():
        raise PairDataError("run has no adapter (adapter/adapter_config.json)", file=str(run / ADAPTER_DIR))
    return manifest


def resolve_setup(config: EvalConfig, *, run: str | os.PathLike | None = None,
                  model: str | None = None) -> EvalSetup:
    """Fill every setting: the config's where set, else the run's, else the bare-model defaults."""
    from ..models import pick_compute_dtype, pick_device

    if (run is None) == (model is None):
        raise PairDataError("give exactly one of a run directory (--run) or a model spec (--model)")
    trained: dict[str, Any] = {}
    dpo: dict[str, Any] = {}
    if run is not None:
        trained = read_run(run)["config"]
        dpo = {**trained.get("dpo", {}), **trained.get("dpo_effective", {})}
        if dpo.get("ld_alpha") is not None:
            log.warning("run used LD-DPO (ld_alpha=%s); evaluate reports standard DPO rewards "
                        "(log-probs summed over all completion tokens)", dpo["ld_alpha"])

    def pick(name: str, source: dict[str, Any]) -> Any:
        value = getattr(config, name)
        if value is not None:
            return value
        return source.get(name, BARE_MODEL_DEFAULTS[name])

    device = pick_device(config.device)
    dtype = pick("dtype", trained)
    return EvalSetup(
        model=model if model is not None else trained["model"],
        quantization=pick("quantization", trained), dtype=dtype, device=device,
        compute_dtype=str(pick_compute_dtype(device, dtype)).replace("torch.", ""),
        beta=float(pick("beta", dpo)),
        max_length=None if pick("max_length", dpo) is None else int(pick("max_length", dpo)),
        truncation_mode=pick("truncation_mode", dpo),
        ref_cache_dir=config.ref_cache_dir or trained.get("ref_cache_dir"),
        run=None if run is None else str(run),
        adapter_dir=None if run is None else str(Path(run) / ADAPTER_DIR))


# ---------------------------------------------------------------- model and reference

def load_policy(setup: EvalSetup):
    """(model, tokenizer): the base as training loaded it, with the run's adapter when there is one."""
    from ..models import load_model, load_tokenizer

    tokenizer = load_tokenizer(setup.model)
    model = load_model(setup.model, quantization=setup.quantization, dtype=setup.dtype, device=setup.device)
    if setup.adapter_dir is not None:
        from peft import PeftModel

        # autocast_adapter_dtype=False keeps the adapter in the dtype it was trained and saved in
        # (bf16 under QLoRA), so the policy here is the policy training ended with.
        model = PeftModel.from_pretrained(model, setup.adapter_dir, is_trainable=False,
                                          autocast_adapter_dtype=False)
        model.eval()
    return model, tokenizer


def reference_cache(setup: EvalSetup, tokenizer):
    """The shared reference cache under exactly the key `pairlab train` uses for this model."""
    from ..logprobs import RefLogpCache, ref_cache_key_fields
    from ..models import model_fingerprint, pick_compute_dtype

    return RefLogpCache(ref_cache_key_fields(
        model_fingerprint=model_fingerprint(setup.model, setup.quantization, setup.dtype),
        compute_dtype=pick_compute_dtype(setup.device, setup.dtype), tokenizer=tokenizer,
        max_length=setup.max_length, truncation_mode=setup.truncation_mode, ld_alpha=None),
        root=setup.ref_cache_dir)


def reference_logps(model, tokenizer, pairs: pd.DataFrame, setup: EvalSetup, cache, *,
                    batch_size: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Reference log-probs (adapter disabled) of every pair: cached ones read, missing ones computed."""
    from ..logprobs import REF_COLUMNS, sequence_logps

    kwargs = dict(max_length=setup.max_length, truncation_mode=setup.truncation_mode,
                  batch_size=batch_size, adapter=False)
    ids = pairs["pair_id"].astype(str)
    missing = set(ids) if cache is None else set(cache.missing(ids))
    stats = {"enabled": cache is not None, "dir": None if cache is None else str(cache.dir),
             "key": None if cache is None else cache.key, "pairs": len(ids),
             "cache_hits": len(ids) - len(missing), "computed": len(missing),
             "forward_batches": math.ceil(len(missing) / batch_size)}
    computed = None
    if missing:
        computed = sequence_logps(model, tokenizer, pairs[ids.isin(missing)], **kwargs)
    if cache is None:
        return computed, stats
    if computed is not None:
        cache.put(computed.rename(columns={"chosen_logps": "ref_chosen_logps",
                                           "rejected_logps": "ref_rejected_logps"})[REF_COLUMNS])
    ref = cache.get(list(ids)).rename(columns={"ref_chosen_logps": "chosen_logps",
                                               "ref_rejected_logps": "rejected_logps"})
    return ref, stats


# ---------------------------------------------------------------- the evaluation

def eval_record(pairs: pd.DataFrame, spec: str | None = None) -> dict[str, Any]:
    """What was evaluated: the spec and a content hash of the pairs (ids + ratings)."""
    columns = [c for c in ("pair_id", "score_chosen", "score_rejected") if c in pairs]
    record: dict[str, Any] = {"spec": spec, "n_pairs": len(pairs),
                              "pairs_sha256": artifacts.frame_sha256(pairs, columns)}
    if spec and Path(spec).is_file():
        record["file_sha256"] = artifacts.file_sha256(spec)
    return record


def evaluate(pairs: pd.DataFrame, out_dir: str | os.PathLike, *, run: str | os.PathLike | None = None,
             model: str | None = None, config: EvalConfig | None = None,
             eval_spec: str | None = None) -> EvalResult:
    """Score held-out pairs with a trained adapter (``run``) or a bare model (``model``); write EVAL_DIR.

    Parameters
    ----------
    pairs : a pairs table (the eval split).
    out_dir : the evaluation directory.
    run : a `pairlab train` run directory (its adapter, model and DPO settings are used).
    model : instead of ``run``, a model spec evaluated as is: policy == reference, so every
        margin is 0 (all ties) and the reference-free accuracy is the meaningful number.
    config : :class:`EvalConfig` (``None`` fields come from the run).
    eval_spec : where ``pairs`` came from, recorded in metrics.json and the manifest.
    """
    started = time.time()
    config = (config or EvalConfig()).validate()
    validate_pairs(pairs, file=eval_spec)
    pairs = pairs.reset_index(drop=True)
    if pairs.empty:
        raise PairDataError("no pairs to evaluate", file=eval_spec)
    if pairs["pair_id"].duplicated().any():
        dup = pairs.loc[pairs["pair_id"].duplicated(), "pair_id"].iloc[0]
        raise PairDataError(f"pair_id '{dup}' appears twice", file=eval_spec, field="pair_id",
                            hint="deduplicate with `pairlab curate`")
    setup = resolve_setup(config, run=run, model=model)
    out = Path(out_dir)
    timing: dict[str, float] = {}

    t0 = time.time()
    policy_model, tokenizer = load_policy(setup)
    timing["load_s"] = time.time() - t0

    t0 = time.time()
    cache = reference_cache(setup, tokenizer) if config.ref_cache else None
    ref, ref_stats = reference_logps(policy_model, tokenizer, pairs, setup, cache,
                                     batch_size=config.batch_size)
    timing["reference_s"] = time.time() - t0

    t0 = time.time()
    has_adapter = setup.adapter_dir is not None
    if has_adapter:
        from ..logprobs import sequence_logps

        policy = sequence_logps(policy_model, tokenizer, pairs, max_length=setup.max_length,
                                truncation_mode=setup.truncation_mode, batch_size=config.batch_size)
    else:
        policy = ref  # an untrained model is its own reference
    timing["policy_s"] = time.time() - t0

    per_pair = metrics.per_pair_table(pairs, policy, ref, setup.beta)
    for col in TEXT_COLUMNS:
        per_pair[col] = pairs[col].to_numpy()
    summary = metrics.summarize(per_pair, setup.beta, n_boot=config.n_boot, seed=config.seed)
    summary["policy_is_reference"] = not has_adapter
    summary["verdict"] = metrics.verdict(summary)

    generations = None
    if config.generate and config.n_prompts > 0:
        from .generate import generate_table, select_prompts

        t0 = time.time()
        generations = generate_table(
            policy_model, tokenizer, select_prompts(pairs, config.n_prompts, config.prompts_file),
            has_adapter=has_adapter, modes=config.modes, sample_seeds=config.sample_seeds,
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
            beta=setup.beta, max_length=setup.max_length, truncation_mode=setup.truncation_mode,
            batch_size=config.batch_size)
        timing["generate_s"] = time.time() - t0
    timing["total_s"] = time.time() - started
    timing = {k: round(v, 3) for k, v in timing.items()}
    timing["logps_s_per_pair"] = round((timing["reference_s"] + timing["policy_s"]) / len(pairs), 4)

    record = eval_record(pairs, eval_spec)
    summary.update(model=setup.model, run=setup.run, eval=record, timing=timing,
                   reference=ref_stats, settings=asdict(setup))
    artifacts.write_parquet(out / PER_PAIR, per_pair)
    artifacts.write_json(out / METRICS, summary)
    outputs = {"per_pair": PER_PAIR, "metrics": METRICS}
    if generations is not None:
        artifacts.write_parquet(out / GENERATIONS, generations)
        outputs["generations"] = GENERATIONS
    artifacts.write_manifest(out, stage="evaluate", config=to_dict(config), seed=config.seed,
                             started=started, inputs={"eval": record, "run": setup.run, "model": setup.model},
                             outputs=outputs, settings=asdict(setup), reference=ref_stats, timing=timing)
    report = write_report(out)
    return EvalResult(out_dir=out, per_pair=per_pair, metrics=summary, generations=generations,
                      reference=ref_stats, report=report)


def write_report(out: Path) -> Path | None:
    """``pairlab.reports.render_report(EVAL_DIR)`` when the reports stage provides it."""
    try:
        from ..reports import render_report
    except ImportError:
        return None
    try:
        path = render_report(out)
    except Exception as err:  # the evaluation's files are written and valid; say why no report
        log.warning("report not written: %s: %s", type(err).__name__, err)
        return None
    return None if path is None else Path(path)
