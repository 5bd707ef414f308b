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

* One model in memory: the base (4-bit by default) with the run's LoRA adapter; the reference is the
  same model with the adapter disabled (as in training).
* Reference log-probs come from the shared on-disk cache under the key training used
  (same model fingerprint, compute dtype, tokenizer, max_length, truncation), so K arms
  evaluated on one eval set cost one reference pass, and a re-evaluation costs none.
* Log-probs go through :func:`pairlab.logprobs.sequence_logps`: TRL's tokenization, in
  length-sorted batches (little padding), in the layout the cache key names
  (:func:`pairlab.policy.logps_layout_of`): the shared-prompt layout on CPU (4-bit or full
  precision) where the model supports it, TRL's collator and fused LM head elsewhere.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import artifacts
from ..config import to_dict
from ..dirs import EvalDir
from ..distributed import is_main, world_size
from ..errors import PairlabError
from ..policy import load_policy, reference_cache, resolve_setup
from ..schema import PairDataError, validate_pairs
from . import benchmarks, metrics
from .config import EvalConfig
from .distributed import sharded_logps

log = logging.getLogger(__name__)

PER_PAIR = EvalDir.PER_PAIR
METRICS = EvalDir.METRICS
GENERATIONS = EvalDir.GENERATIONS
EXCLUDED = EvalDir.EXCLUDED
TEXT_COLUMNS = ["prompt_id", "prompt_text", "chosen", "rejected"]
#: Per pair, from :func:`pairlab.logprobs.truncation_table`: full token lengths, which part
#: truncation cut, and whether any completion token is left to score.
TRUNCATION_COLUMNS = ["prompt_tokens", "chosen_tokens_full", "rejected_tokens_full", "truncated",
                      "scorable", "excluded_reason"]
EXCLUDED_COLUMNS = ["pair_id", *TRUNCATION_COLUMNS, *TEXT_COLUMNS]


@dataclass
class EvalResult:
    out_dir: Path
    per_pair: pd.DataFrame
    metrics: dict[str, Any]
    generations: pd.DataFrame | None
    reference: dict[str, Any]
    report: Path | None
    excluded: pd.DataFrame | None = None
    policy_logps: dict[str, Any] | None = None
    #: Why ``report`` is None: the report failed to render ("ReportError: ..."); the
    #: evaluation's files are complete regardless. The CLI summary states it.
    report_error: str | None = None


# ---------------------------------------------------------------- the evaluation

def eval_record(pairs: pd.DataFrame, spec: str | None = None) -> dict[str, Any]:
    """What was evaluated: the spec and a content hash of the pairs (ids + ratings)."""
    columns = [c for c in ("pair_id", "score_chosen", "score_rejected") if c in pairs]
    record: dict[str, Any] = {"spec": spec, "n_pairs": len(pairs),
                              "pairs_sha256": artifacts.frame_sha256(pairs, columns),
                              # every column (source, true preference, ...): what `--resume` compares
                              "table_sha256": artifacts.frame_sha256(pairs, sorted(map(str, pairs.columns)))}
    if spec and Path(spec).is_file():
        record["file_sha256"] = artifacts.file_sha256(spec)
    return record


def evaluate(pairs: pd.DataFrame, out_dir: str | os.PathLike, *, run: str | os.PathLike | None = None,
             model: str | None = None, config: EvalConfig | None = None,
             eval_spec: str | None = None, progress: bool = True, overwrite: bool = False,
             resume: bool = False) -> EvalResult:
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
    progress : tqdm bars (with an ETA) over the log-prob passes.
    overwrite : replace a finished evaluation in ``out_dir`` (else it is refused; an
        interrupted one is always redone).
    resume : a finished evaluation in ``out_dir`` of the same pairs, config, model and run
        (the run's manifest unchanged since) is returned as it is, nothing recomputed
        (``metrics["already_finished"]``); a finished one that differs is refused. What an
        `ablate --plan` resubmission needs.
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
    prompts = None
    if config.generate and config.n_prompts > 0:  # a bad prompts_file fails before the model loads
        from .generate import select_prompts

        prompts = select_prompts(pairs, config.n_prompts, config.prompts_file)
    state = EvalDir.prepare(out, inputs=[run, eval_spec], overwrite=overwrite, resume=resume)  # before any work
    if state == "complete":
        return finished_evaluation(out, pairs, config, setup, eval_spec)
    timing: dict[str, float] = {}

    t0 = time.time()
    policy_model, tokenizer = load_policy(setup)
    timing["load_s"] = time.time() - t0

    # Truncation exactly as training applies it: counted, and pairs with no completion
    # token left are excluded (listed in excluded.parquet) instead of scored as NaN.
    from ..logprobs import token_lengths, tokenize_pairs, truncation_counts, truncation_table, truncation_warning

    t0 = time.time()
    tokenized = tokenize_pairs(tokenizer, pairs)
    truncation = truncation_table(token_lengths(tokenized, pairs["pair_id"]), setup.max_length,
                                  setup.truncation_mode).rename(
        columns={"chosen_tokens": "chosen_tokens_full", "rejected_tokens": "rejected_tokens_full"})
    counts = truncation_counts(truncation, setup.max_length, setup.truncation_mode)
    warning = truncation_warning(counts, "eval pairs")
    if warning and is_main():
        print(f"warning: {warning}", file=sys.stderr)
    timing["tokenize_s"] = time.time() - t0

    t0 = time.time()
    has_adapter = setup.adapter_dir is not None
    cache = reference_cache(setup, tokenizer) if config.ref_cache else None
    passes = dict(batch_size=config.batch_size, tokenized=tokenized, chunk_pairs=config.chunk_pairs)
    # Under a launcher each process scores its shard of the pairs (evaluate/distributed.py).
    ref, ref_stats = sharded_logps(policy_model, tokenizer, pairs, setup, cache,
                                     progress="reference log-probs" if progress else False, **passes)
    timing["reference_s"] = time.time() - t0

    t0 = time.time()
    policy_stats = None
    if has_adapter:
        policy_cache = reference_cache(setup, tokenizer, policy=True) if config.ref_cache else None
        policy, policy_stats = sharded_logps(policy_model, tokenizer, pairs, setup, policy_cache, adapter=True,
                                               progress="policy log-probs" if progress else False, **passes)
    else:
        policy = ref  # an untrained model is its own reference
    timing["policy_s"] = time.time() - t0

    scored = metrics.per_pair_table(pairs, policy, ref, setup.beta)
    for col in TEXT_COLUMNS:
        scored[col] = pairs[col].to_numpy()
    for col in TRUNCATION_COLUMNS:
        scored[col] = truncation[col].to_numpy()
    for col in benchmarks.BENCH_COLUMNS:  # a RewardBench-style set: which example each pair belongs to
        if col in pairs:
            scored[col] = pairs[col].to_numpy()
    summary = metrics.summarize(scored, setup.beta, n_boot=config.n_boot, seed=config.seed)
    summary["truncation"] = counts
    excluded = scored.loc[~scored["scorable"], EXCLUDED_COLUMNS].reset_index(drop=True)
    per_pair = scored.loc[scored["scorable"]].reset_index(drop=True)
    if per_pair.empty:
        raise PairDataError(
            f"none of the {len(pairs)} pairs can be scored: {excluded['excluded_reason'].iloc[0]}",
            file=eval_spec, field="max_length",
            hint=f"raise --max-length above the prompts' length (longest prompt "
                 f"{int(truncation['prompt_tokens'].max())} tokens); the log-probs computed so far are cached")
    summary["policy_is_reference"] = not has_adapter
    summary["verdict"] = metrics.verdict(summary)
    bench = benchmarks.for_eval(scored, config)
    if bench is not None:
        summary["benchmark"] = bench

    if not is_main():  # the other processes scored their shards; rank 0 alone writes EVAL_DIR
        return EvalResult(out_dir=out, per_pair=per_pair, metrics=summary, generations=None,
                          reference=ref_stats, report=None, excluded=excluded, policy_logps=policy_stats)
    generations = None
    if prompts is not None:
        from .generate import generate_table

        t0 = time.time()
        generations = generate_table(
            policy_model, tokenizer, prompts,
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
                   reference=ref_stats, policy_logps=policy_stats, settings=asdict(setup))
    EvalDir.start(out, inputs=[run, eval_spec], overwrite=overwrite)  # old manifest, outputs, report go first
    artifacts.write_parquet(out / PER_PAIR, per_pair)
    artifacts.write_parquet(out / EXCLUDED, excluded)
    artifacts.write_json(out / METRICS, summary)
    if generations is not None:
        artifacts.write_parquet(out / GENERATIONS, generations)
    EvalDir.finish(out, config=to_dict(config), seed=config.seed,  # last: complete from here on
                   started=started, inputs={"eval": record, "run": str(Path(setup.run).resolve()) if setup.run else None,
                                            "model": setup.model,
                                            **_resume_identity(config, setup)},
                   settings=asdict(setup), reference=ref_stats, timing=timing,
                   distributed={"world_size": world_size()})
    report, report_error = write_report(out)
    return EvalResult(out_dir=out, per_pair=per_pair, metrics=summary, generations=generations,
                      reference=ref_stats, report=report, excluded=excluded, policy_logps=policy_stats,
                      report_error=report_error)


def _resume_identity(config: EvalConfig, setup) -> dict[str, Any]:
    """What else makes an evaluation this one, beyond its pairs and config: the run's manifest
    (a retrained run changes it), the model's weights and the prompts file's content."""
    from ..logprobs import LOGP_METHOD_VERSION
    from ..models import model_fingerprint
    from ..policy import logps_layout_of

    prompts = config.prompts_file
    return {"logps_method": f"{LOGP_METHOD_VERSION}/{logps_layout_of(setup)}",  # how log-probs are computed
            "run_manifest_sha256": artifacts.file_sha256(Path(setup.run) / artifacts.MANIFEST) if setup.run else None,
            "model_fingerprint": model_fingerprint(setup.model, setup.quantization, setup.dtype,
                                                   (setup.model_options or {}).get("model_revision")),
            "prompts_file_sha256": artifacts.file_sha256(prompts) if prompts and Path(prompts).is_file() else None,
            # dtype: auto resolves per machine (bf16 on one CPU kind, fp32 on another)
            "compute_dtype": setup.compute_dtype}


def finished_evaluation(out: Path, pairs: pd.DataFrame, config: EvalConfig, setup, eval_spec: str | None) -> EvalResult:
    """The finished evaluation in ``out`` (verified), when it is this one: the same eval table
    (every column), config, model (its weights' fingerprint), run (its manifest unchanged since)
    and prompts file. Else a :class:`StageDirError` naming the first difference."""
    import json

    from ..dirs import StageDirError

    def where(run: str | None) -> str | None:
        return str(Path(run).resolve()) if run else None

    manifest = EvalDir.verify(out)
    done = manifest.get("inputs") or {}
    identity = _resume_identity(config, setup)
    now = {"eval pairs": eval_record(pairs, eval_spec)["table_sha256"], "config": json.loads(json.dumps(to_dict(config))),
           "run": where(setup.run), "run manifest": identity["run_manifest_sha256"],
           "model": identity["model_fingerprint"], "prompts file": identity["prompts_file_sha256"],
           "log-prob method": identity["logps_method"], "compute dtype": identity["compute_dtype"]}
    recorded = {"eval pairs": "table_sha256" in (done.get("eval") or {}), "run manifest": "run_manifest_sha256" in done,
                "model": "model_fingerprint" in done, "prompts file": "prompts_file_sha256" in done,
                "log-prob method": "logps_method" in done, "compute dtype": "compute_dtype" in done}
    missing = [name for name, present in recorded.items() if not present]
    if missing:
        raise StageDirError(f"holds a finished evaluation that does not record its {missing[0]} (written by an "
                            "older pairlab), so --resume cannot tell it is this one", file=str(out), field="--out",
                            hint="pass --overwrite to redo it, or choose another --out")
    before = {"eval pairs": done["eval"]["table_sha256"], "config": manifest.get("config"), "run": where(done.get("run")),
              "run manifest": done["run_manifest_sha256"], "model": done["model_fingerprint"],
              "prompts file": done["prompts_file_sha256"], "log-prob method": done["logps_method"],
              "compute dtype": done["compute_dtype"]}
    differs = [name for name in now if now[name] != before[name]]
    if differs:
        raise StageDirError(f"holds a finished evaluation of a different {differs[0]}; --resume keeps only "
                            "the same evaluation", file=str(out), field="--out",
                            hint="pass --overwrite to replace it, or choose another --out")
    metrics_ = artifacts.read_json(out / METRICS)
    metrics_["already_finished"] = True
    generations = pd.read_parquet(out / GENERATIONS) if (out / GENERATIONS).exists() else None
    report = out / EvalDir.REPORT
    return EvalResult(out_dir=out, per_pair=pd.read_parquet(out / PER_PAIR), metrics=metrics_,
                      generations=generations, reference=manifest.get("reference") or {},
                      report=report if report.exists() else None, excluded=pd.read_parquet(out / EXCLUDED),
                      policy_logps=metrics_.get("policy_logps"))


def write_report(out: Path) -> tuple[Path | None, str | None]:
    """(report path, None), or (None, why) when the report fails to render.

    The evaluation's files are complete and valid at this point, so a report failure does
    not undo them: it is a warning (logged with its traceback) that the command's summary
    states, with how to retry (``pairlab report EVAL_DIR``).
    """
    from ..rendering import render

    try:
        return Path(render("eval", out)), None
    except Exception as err:
        why = f"{type(err).__name__}: {err}"
        log.warning("report not written: %s", why, exc_info=not isinstance(err, PairlabError))
        return None, why
