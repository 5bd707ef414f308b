"""`audit()`: a training run + held-out pairs -> OUT/{attribution.parquet, audit.html}. Read top to bottom.

OUT/
  attribution.parquet  one row per training pair: TracIn influence, every cheap baseline,
                       cartography (confidence, variability, region), the rank-average
                       combination, the default harmful ranking, source / filter / truth columns
  cartography.parquet  the cartography table alone
  checkpoints.json     per checkpoint: step, learning-rate weight, held-out loss, timings
  gradients/step-N.npz per checkpoint: the projected train / held-out gradients and losses,
                       keyed by adapter, pairs, projection and loss; a rerun into the same OUT
                       (an interrupted audit, or new scores) reuses them instead of recomputing
  manifest.json        config, inputs, projection size, throughput
  audit.html           the report (pairlab.reports.audit_report)

One model in memory: the run's 4-bit base with a trainable LoRA adapter; each checkpoint's
adapter weights are loaded into it in turn. The reference is the same model with the adapter
disabled, read from (and written to) the run's reference cache.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import ConfigError, check_ranges, to_dict
from ..dirs import AuditDir, RunDir, check_input_file
from ..schema import PairDataError, validate_pairs
from .attribution import GRADIENT_SCORES, checkpoint_terms, run_checkpoints, tracin
from .baselines import baseline_scores, rank_average
from .cartography import cartography
from .registry import ATTRIBUTION_SCORES

ATTRIBUTION = AuditDir.ATTRIBUTION
CARTOGRAPHY = AuditDir.CARTOGRAPHY
CHECKPOINTS = AuditDir.CHECKPOINTS
REPORT = AuditDir.REPORT
#: Every score in attribution.parquet, oriented: higher = more helpful / trustworthy.
SCORES = list(ATTRIBUTION_SCORES)
GRADIENTS = AuditDir.GRADIENTS


@dataclass
class AuditConfig:
    proj_dim: int = field(default=16, metadata={"min": 1, 
        "help": "random projection size per side of each LoRA factor (k_out x k_in per factor; "
                "sides of size <= proj_dim, e.g. the rank, are kept exactly)"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the random projections"})
    batch_size: int = field(default=8, metadata={"min": 1, "help": "pairs per batched forward + backward"})
    max_checkpoints: Optional[int] = field(default=None, metadata={"min": 1, 
        "help": "use at most this many checkpoints, evenly spaced, always the last (null: all)"})
    combine: list[str] = field(default_factory=lambda: ["tracin_cosine", "confidence"], metadata={
        "help": "scores whose percentile ranks are averaged into rank_average (unsupervised): the "
                "direction of each pair's update and how confidently training fitted it"})
    # Chosen by the validation suite across seeds, never one (suite.choose_default: the largest
    # minimum AUROC lead over the best free baseline on every systematic-noise run): on SmolLM2's
    # nine systematic runs (length, marker, source x 3 seeds) that is tracin_cosine (min lead
    # -0.028, mean +0.027; ekfac -0.116, +0.004). The tiny model's suite had picked ekfac. The
    # runs and the tables are in docs/results/audit-suite.md.
    harmful_score: str = field(default="tracin_cosine", metadata={
        "help": "score whose most negative values are the report's harmful pairs (the SmolLM2 suite's "
                "choice across its 9 systematic-noise runs: docs/results/audit-suite.md)"})
    top_k: int = field(default=15, metadata={"min": 1, "help": "helpful and harmful pairs shown in the report"})
    validation_run: Optional[str] = field(default=None, metadata={
        "help": "a `pairlab train` run of the same model on the clean validation pairs (the --eval pairs): "
                "enables the LossDiff / LossDiff-IRM baselines (null: they are NaN)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    report: bool = field(default=True, metadata={"help": "write audit.html"})

    def validate(self) -> "AuditConfig":
        from ..models import check_device

        check_device(self.device)
        check_ranges(self)  # numeric fields: the ranges in their metadata
        for name, scores in (("harmful_score", [self.harmful_score]), ("combine", self.combine)):
            unknown = [s for s in scores if s not in SCORES]
            if unknown:
                raise ConfigError(f"unknown score '{unknown[0]}'", field=name, hint=f"choose from {SCORES}")
        return self


@dataclass
class AuditResult:
    out_dir: Path
    scores: pd.DataFrame
    checkpoints: list[dict[str, Any]]
    throughput: dict[str, float]
    report: Path | None


# ---------------------------------------------------------------- inputs

def read_run_pairs(run_dir: Path, manifest: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """The training pairs a run recorded in its manifest (a pairs.parquet path)."""
    spec = manifest.get("inputs", {}).get("pairs")
    if not spec or not Path(spec).exists():
        raise PairDataError(f"the run's training pairs are not on disk ({spec!r})", file=str(run_dir),
                            field="inputs.pairs", hint="pass them with --pairs")
    check_input_file(spec)  # inside a curate directory: complete and unchanged since training
    from ..io import read_pairs

    return read_pairs(spec, format="pairs" if spec.endswith(".parquet") else "auto"), spec


def curation_columns(pairs_spec: str | None, pair_ids: pd.Series) -> pd.DataFrame:
    """Per pair, the filters of its curation that *would* have dropped it, when the training
    pairs came from a `pairlab curate` directory (its scores.parquet); else empty."""
    if not pairs_spec:
        return pd.DataFrame(index=pair_ids.index)
    from ..dirs import CurateDir

    scores = Path(pairs_spec).parent / CurateDir.SCORES
    if not scores.exists():
        return pd.DataFrame(index=pair_ids.index)
    table = pd.read_parquet(scores)
    if "would_drop" not in table or "pair_id" not in table:
        return pd.DataFrame(index=pair_ids.index)
    would = table.drop_duplicates("pair_id").set_index("pair_id")["would_drop"]
    return pd.DataFrame({"would_drop": pair_ids.map(would).fillna("").astype(str).to_numpy()},
                        index=pair_ids.index)


def load_trainable_policy(setup, first_adapter: Path):
    """(peft model, tokenizer): the run's base with ``first_adapter`` loaded, LoRA trainable."""
    from peft import PeftModel

    from ..models import load_model, load_tokenizer

    tokenizer = load_tokenizer(setup.model)
    # trainable: gradients are taken, so bitsandbytes' inference-only CPU kernel must stay off
    model = load_model(setup.model, quantization=setup.quantization, dtype=setup.dtype, device=setup.device,
                       trainable=True)
    model = PeftModel.from_pretrained(model, str(first_adapter), is_trainable=True,
                                      autocast_adapter_dtype=False)
    model.eval()
    return model, tokenizer


def load_adapter_weights(model, adapter_dir: Path) -> None:
    """Swap the adapter weights in place (one base model in memory for every checkpoint)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(adapter_dir / "adapter_model.safetensors")))
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if unexpected:
        raise PairDataError(f"checkpoint adapter does not fit the run's model ({unexpected[0]})",
                            file=str(adapter_dir))


# ---------------------------------------------------------------- the audit

def audit(run_dir: str | os.PathLike, eval_pairs: pd.DataFrame, out_dir: str | os.PathLike, *,
          config: AuditConfig | None = None, train_pairs: pd.DataFrame | None = None,
          eval_spec: str | None = None, extra: dict[str, Any] | None = None,
          overwrite: bool = False) -> AuditResult:
    """Score every training pair of a run: TracIn over its checkpoints, baselines, cartography.

    Parameters
    ----------
    run_dir : a finished `pairlab train` run (checkpoints kept with ``save_total_limit: null``).
    eval_pairs : held-out pairs whose DPO loss defines "helped".
    out_dir : where attribution.parquet, checkpoints.json, manifest.json and audit.html go.
    config : :class:`AuditConfig`.
    train_pairs : the run's training pairs (default: the pairs.parquet its manifest names).
    extra : more results for the report (e.g. validation), written into the manifest too.
    overwrite : replace a finished audit in ``out_dir`` (its gradient cache is kept: it is
        keyed by adapter, pairs and projection, so only matching entries are reused).
    """
    started = time.time()
    config = (config or AuditConfig()).validate()
    from ..policy import SetupOverrides, read_run, reference_cache, reference_logps, resolve_setup

    run = Path(run_dir)
    AuditDir.prepare(out_dir, inputs=[run, eval_spec], overwrite=overwrite)  # refuse before any work
    manifest = read_run(run)
    pairs_spec = None
    if train_pairs is None:
        train_pairs, pairs_spec = read_run_pairs(run, manifest)
    validate_pairs(train_pairs)
    validate_pairs(eval_pairs, file=eval_spec)
    train_pairs = train_pairs.reset_index(drop=True)
    eval_pairs = eval_pairs.reset_index(drop=True)
    if eval_pairs.empty:
        raise PairDataError("no held-out pairs to attribute against", file=eval_spec)
    if config.validation_run and not (Path(config.validation_run) / "adapter" / "adapter_model.safetensors").exists():
        raise PairDataError("the validation run has no adapter", file=str(config.validation_run),
                            field="validation_run", hint="train it with `pairlab train` on the --eval pairs")
    dpo = {**manifest["config"].get("dpo", {}), **manifest["config"].get("dpo_effective", {})}
    setup = resolve_setup(SetupOverrides(device=config.device), run=run)
    from .gradients import SUPPORTED_LOSSES, LossSettings

    loss_type = dpo.get("loss_type", "sigmoid")
    loss_type = loss_type[0] if isinstance(loss_type, list) and len(loss_type) == 1 else loss_type
    if loss_type not in SUPPORTED_LOSSES:
        raise ConfigError(f"audit cannot differentiate loss_type {loss_type!r}", field="dpo.loss_type",
                          hint=f"supported: {SUPPORTED_LOSSES}")
    loss = LossSettings(beta=setup.beta, loss_type=loss_type,
                        label_smoothing=float(dpo.get("label_smoothing", 0.0) or 0.0),
                        max_length=setup.max_length, truncation_mode=setup.truncation_mode)
    checkpoints = run_checkpoints(run, final_step=int(manifest.get("global_step") or 0),
                                  default_lr=float(dpo.get("learning_rate", 5e-5)),
                                  limit=config.max_checkpoints)
    timing: dict[str, float] = {}

    # 1. Cartography from the dynamics training recorded (no model needed).
    dynamics_path = run / RunDir.DYNAMICS
    carto = cartography(pd.read_parquet(dynamics_path)) if dynamics_path.exists() else cartography(pd.DataFrame())

    # 2. Reference and final-policy log-probs: the cheap baselines.
    t0 = time.time()
    model, tokenizer = load_trainable_policy(setup, run / RunDir.ADAPTER)
    timing["load_s"] = time.time() - t0
    t0 = time.time()
    cache = reference_cache(setup, tokenizer)
    ref_train, _ = reference_logps(model, tokenizer, train_pairs, setup, cache, batch_size=config.batch_size)
    ref_eval, _ = reference_logps(model, tokenizer, eval_pairs, setup, cache, batch_size=config.batch_size)
    timing["logps_s"] = time.time() - t0

    # 3. TracIn: per checkpoint, projected per-pair gradients of train and eval pairs.
    from .gradients import build_projections, pair_gradients

    projections = build_projections(model, config.proj_dim, config.seed)
    ref_train_arr = ref_train[["chosen_logps", "rejected_logps"]].to_numpy(np.float32)
    ref_eval_arr = ref_eval[["chosen_logps", "rejected_logps"]].to_numpy(np.float32)
    terms: dict[str, list[np.ndarray]] = {name: [] for name in GRADIENT_SCORES}
    blocks = [p.k_out * p.k_in for p in projections]  # one block per LoRA factor (DataInf)
    shapes = [(p.k_out, p.k_in) for p in projections]
    records = []
    grad_s = 0.0
    policy_train = None  # the final policy's log-probs, from the last checkpoint's forward
    final_step = int(manifest.get("global_step") or 0)
    out = Path(out_dir)
    from ..policy import logps_layout_of

    # Every policy pass in the layout of the reference values it is compared with (the cache's:
    # shared-prompt on CPU, TRL's elsewhere), so policy and reference round alike.
    # Part of the resume key, as the reference values are: the K-FAC factors count prompt
    # tokens differently in the two layouts.
    grad_layout = cache.layout if cache is not None else logps_layout_of(setup)
    pairs_key = {"train": _pairs_sha256(train_pairs), "eval": _pairs_sha256(eval_pairs),
                 "proj_dim": config.proj_dim, "seed": config.seed, "loss": vars(loss),
                 "kfac_factors": 1,  # caches written before EK-FAC lack the factors: recompute
                 "layout": grad_layout,
                 "reference_sha256": hashlib.sha256(ref_train_arr.tobytes() + ref_eval_arr.tobytes()).hexdigest()}
    for ckpt in checkpoints:
        t0 = time.time()
        key = {**pairs_key, "adapter": artifacts.file_sha256(ckpt.path / "adapter_model.safetensors")}
        cached = _read_gradients(out / GRADIENTS / f"step-{ckpt.step}.npz", key)
        if cached is None:
            load_adapter_weights(model, ckpt.path)
            factors: list = []  # EK-FAC's Kronecker factors of the training loss, from the same pass
            g_train, l_train, logps = pair_gradients(model, tokenizer, train_pairs, ref_train_arr, projections,
                                                     loss, batch_size=config.batch_size,
                                                     progress=f"gradients step {ckpt.step}: train",
                                                     factors=factors, layout=grad_layout)
            t_train = time.time() - t0
            g_eval, l_eval, _ = pair_gradients(model, tokenizer, eval_pairs, ref_eval_arr, projections, loss,
                                               batch_size=config.batch_size, layout=grad_layout,
                                               progress=f"gradients step {ckpt.step}: held-out")
            elapsed = time.time() - t0
            _write_gradients(out / GRADIENTS / f"step-{ckpt.step}.npz", key, g_train=g_train, g_eval=g_eval,
                             l_train=l_train, l_eval=l_eval, logps=logps, seconds=[elapsed, t_train],
                             kfac_a=np.concatenate([a.ravel() for a, _ in factors]),
                             kfac_s=np.concatenate([s.ravel() for _, s in factors]))
        else:
            g_train, g_eval, l_train, l_eval, logps = (cached[k] for k in ("g_train", "g_eval", "l_train",
                                                                          "l_eval", "logps"))
            factors = _split_factors(cached["kfac_a"], cached["kfac_s"], shapes)
            elapsed, t_train = (float(v) for v in cached["seconds"])  # timings of the run that computed them
        if ckpt.step == final_step:
            policy_train = pd.DataFrame({"chosen_logps": logps[:, 0], "rejected_logps": logps[:, 1]})
        grad_s += elapsed
        for name, term in checkpoint_terms(g_train, g_eval, blocks, shapes, factors).items():
            terms[name].append(term)
        records.append({"step": ckpt.step, "path": str(ckpt.path), "lr_weight": ckpt.lr_weight,
                        "train_loss": float(np.nanmean(l_train)), "eval_loss": float(np.nanmean(l_eval)),
                        "seconds": round(elapsed, 3), "reused": cached is not None,
                        "train_pairs_per_s": round(len(train_pairs) / max(t_train, 1e-9), 3)})
    if policy_train is None:  # the last checkpoint is not the final adapter: one more pass
        from ..logprobs import sequence_logps

        load_adapter_weights(model, run / RunDir.ADAPTER)
        # in the gradient pass's layout, the reference values' (see grad_layout)
        policy_train = sequence_logps(model, tokenizer, train_pairs, max_length=setup.max_length,
                                      truncation_mode=setup.truncation_mode, batch_size=config.batch_size,
                                      layout=grad_layout)
    validation_policy = None
    if config.validation_run:  # LossDiff: the same pairs under a policy trained on the validation set
        from ..logprobs import sequence_logps

        load_adapter_weights(model, Path(config.validation_run) / "adapter")
        validation_policy = sequence_logps(model, tokenizer, train_pairs, max_length=setup.max_length,
                                           truncation_mode=setup.truncation_mode, batch_size=config.batch_size,
                                           layout=grad_layout)
    scores = baseline_scores(train_pairs, policy_train, ref_train, carto, beta=setup.beta,
                             validation_policy=validation_policy)
    weights = [c.lr_weight for c in checkpoints]
    for i, name in enumerate(GRADIENT_SCORES):
        scores.insert(1 + i, name, tracin(terms[name], weights))
    for ckpt, term in zip(checkpoints, terms["tracin"]):
        scores[f"tracin_step_{ckpt.step}"] = term
    # A pair training never saw (TRL drops one whose prompt alone fills max_length: no
    # completion token left) has zero gradients and empty margins, which would rank it as
    # neutral: it gets no score (the ratings' gap, which needs no model, stays) and is counted.
    untrained = untrained_mask(ref_train)
    if untrained.any():
        model_scores = [c for c in scores.columns if c.startswith("tracin_step_")
                        or c in ATTRIBUTION_SCORES and c not in DATA_ONLY_SCORES]
        scores.loc[untrained, model_scores] = np.nan
    scores["excluded"] = np.where(untrained, EXCLUDED_REASON, "")
    scores["rank_average"] = rank_average(scores, config.combine)
    scores["harmful_rank"] = scores[config.harmful_score].rank(method="first").astype("Int64")
    carto_cols = carto.drop(columns=["confidence"]).set_index("pair_id")
    for col in ("variability", "correctness", "passes", "region"):
        scores[col] = scores["pair_id"].map(carto_cols[col]) if len(carto_cols) else np.nan
    for col in ("source", "topic", "flipped", "true_preference_correct", "noise_type", "prompt_text", "chosen",
                "rejected"):
        if col in train_pairs:
            scores[col] = train_pairs[col].to_numpy()
    for col, values in curation_columns(pairs_spec, train_pairs["pair_id"]).items():
        scores[col] = values.to_numpy()
    timing["gradients_s"] = grad_s
    n_pass = (len(train_pairs) + len(eval_pairs)) * max(len(checkpoints), 1)
    throughput = {"pairs_per_s_per_checkpoint": round(n_pass / max(grad_s, 1e-9), 3),
                  "projected_dim": int(sum(p.k_out * p.k_in for p in projections)),
                  "lora_params": int(sum(p.module.weight.numel() for p in projections))}

    # 4. Outputs: old manifest and files first, then the tables, the manifest last.
    AuditDir.start(out, inputs=[run, eval_spec], overwrite=overwrite)
    artifacts.write_parquet(out / ATTRIBUTION, scores)
    artifacts.write_parquet(out / CARTOGRAPHY, carto)
    artifacts.write_json(out / CHECKPOINTS, records)
    timing["total_s"] = time.time() - started
    timing = {k: round(v, 3) for k, v in timing.items()}
    AuditDir.finish(
        out, config=to_dict(config), seed=config.seed, started=started,
        inputs={"run": str(run), "train_pairs": pairs_spec or "in-memory table",
                "n_train_pairs": len(train_pairs), "n_eval_pairs": len(eval_pairs),
                "n_not_trained_on": int(untrained.sum()),
                "eval": eval_spec, "eval_pairs_sha256": artifacts.frame_sha256(eval_pairs, ["pair_id"])},
        loss=vars(loss), checkpoints=records, throughput=throughput, timing=timing, **(extra or {}))
    report = write_report(out) if config.report else None
    return AuditResult(out_dir=out, scores=scores, checkpoints=records, throughput=throughput, report=report)


#: Scores computed from the data alone, defined for a pair training never saw.
DATA_ONLY_SCORES = frozenset({"rating_gap"})
#: ``attribution.parquet``'s ``excluded`` for such a pair.
EXCLUDED_REASON = "no completion token within max_length: not trained on"


def untrained_mask(ref_logps: pd.DataFrame) -> np.ndarray:
    """Pairs with no completion token within max_length (prompt alone fills it): TRL drops
    them from training, so no checkpoint saw them."""
    return ((ref_logps["chosen_tokens"].to_numpy() == 0) | (ref_logps["rejected_tokens"].to_numpy() == 0))


def _pairs_sha256(pairs: pd.DataFrame) -> str:
    return artifacts.frame_sha256(pairs, [c for c in ("pair_id", "prompt", "chosen", "rejected") if c in pairs])


def _read_gradients(path: Path, key: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """A checkpoint's cached gradients when they were computed for exactly ``key``, else None."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != artifacts.to_json(key):
            return None
        return {k: data[k] for k in data.files}


def _split_factors(flat_a: np.ndarray, flat_s: np.ndarray, shapes: list[tuple[int, int]]) -> list:
    """The per-layer (A, S) K-FAC factors back from their flat concatenations in the cache."""
    ends_a = np.cumsum([k_i * k_i for _, k_i in shapes])[:-1]
    ends_s = np.cumsum([k_o * k_o for k_o, _ in shapes])[:-1]
    return [(a.reshape(k_i, k_i), s.reshape(k_o, k_o))
            for a, s, (k_o, k_i) in zip(np.split(flat_a, ends_a), np.split(flat_s, ends_s), shapes)]


def _write_gradients(path: Path, key: dict[str, Any], **arrays: Any) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(artifacts.to_json(key)), **{k: np.asarray(v) for k, v in arrays.items()})
    artifacts.write_bytes(path, buffer.getvalue())


def write_report(out: Path) -> Path | None:
    """Render OUT/audit.html from the files above (and validation.json when present)."""
    from ..rendering import render

    return render("audit", out)
