"""`train()`: pairs table -> QLoRA DPO run directory. Read top to bottom.

RUN_DIR/
  adapter/            LoRA adapter (adapter_model.safetensors + adapter_config.json) and tokenizer
  checkpoints/        checkpoint-N/ (adapter, optimizer, scheduler, RNG, trainer state, dynamics)
  train_log.jsonl     one line per optimizer step (loss, rewards, exact accuracy, margins, lr)
  dynamics.parquet    one row per pair per time it was seen (see dynamics.DYNAMICS_COLUMNS)
  manifest.json       config, versions, data hash, model fingerprint, seed, wall time, peak memory
"""
from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import ConfigError, to_dict
from ..dirs import RunDir, StageDirError, check_input_file
from ..distributed import gather_objects, is_main, local_device, world_size
from ..schema import PairDataError, validate_pairs
from .config import TrainConfig, build_dpo_config, check_wandb, dpo_settings, reports_to, validate
from .dynamics import step_log
from .resume import checkpoint_dynamics, identity_mismatch, latest_checkpoint, run_identity

ADAPTER_DIR = RunDir.ADAPTER
CHECKPOINT_DIR = RunDir.CHECKPOINTS
TRAIN_LOG = RunDir.TRAIN_LOG
DYNAMICS = RunDir.DYNAMICS


@dataclass
class TrainResult:
    out_dir: Path
    adapter_dir: Path
    global_step: int
    train_log: pd.DataFrame
    dynamics: pd.DataFrame
    ref_cache: dict[str, Any]
    resumed_from: str | None
    wall_time_s: float
    train_runtime_s: float
    peak_rss_mb: float
    model_footprint_mb: float
    #: True when ``resume`` found the run already finished: nothing was trained.
    already_finished: bool = False
    #: Truncation at dpo.max_length (:func:`pairlab.logprobs.truncation_counts`), with TRL's
    #: own count of the pairs it dropped (``trl_dropped``: prompt alone reaches max_length).
    truncation: dict[str, Any] | None = None


def read_train_pairs(pairs: pd.DataFrame | str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A pairs table, or a path (``DIR`` or ``DIR/pairs.parquet``) -> (table, input record for the manifest)."""
    if isinstance(pairs, pd.DataFrame):
        validate_pairs(pairs)
        return pairs.reset_index(drop=True), {"pairs": "in-memory table"}
    path = Path(pairs)
    # A stage directory (or a file in one) must be complete, its files as written: the
    # pairs.parquet of an interrupted or re-run curate is refused here.
    kind = check_input_file(path)
    if kind is not None:
        if "PAIRS" not in vars(kind):
            raise StageDirError(f"a {kind.STAGE} directory holds no pairs to train on", file=str(path),
                                hint="pass a `pairlab curate` directory or a pairs file")
        path = path / kind.PAIRS
    from ..io import read_pairs

    df = read_pairs(str(path), format="pairs" if path.suffix == ".parquet" else "auto")
    record: dict[str, Any] = {"pairs": str(path)}
    if path.is_file():
        record["pairs_sha256"] = artifacts.file_sha256(path)
    return df.reset_index(drop=True), record


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes).

    On Linux from ``VmHWM``: ``ru_maxrss`` survives fork + exec, so a process started by a
    larger one (a bench, an executor) would report its parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _trainable_to(model, dtype) -> None:
    """TRL casts QLoRA adapter weights to bf16; where bf16 is not the compute dtype
    (a T4 in fp16, a CPU without native bf16) keep them in fp32 instead: fp16 master
    weights break the grad scaler and emulated bf16 is slow."""
    import torch

    if dtype == torch.bfloat16:
        return
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def _prefill_reference(df: pd.DataFrame, config: TrainConfig, tokenizer, ref_cache, args, device: str,
                       tokenized: list[dict[str, list[int]]]) -> int:
    """CPU: compute the reference log-probs the cache lacks with an inference-only copy of
    the base, before the trainable model is loaded. Returns how many it computed.

    Why a separate copy: the reference pass needs no adapter, no optimizer and no
    gradient-checkpointing hooks, and runs in eval mode at the eval batch size; all CPU
    4-bit models compute on the same kernel (:func:`pairlab.models.keep_4bit_weights_trainable`),
    so the cached values are the trainer's own up to float rounding: in one process both
    are in the cache's layout (the trainer's policy forward too, see :func:`policy_layout`).
    Runs 4-bit, and full precision where the cache is in the shared-prompt layout.
    """
    if device != "cpu" or args.ld_alpha is not None or (config.quantization != "4bit" and ref_cache.layout != "shared"):
        return 0  # on CUDA the trainer's own pass is as fast; LD-DPO needs TRL's weighting
    from ..logprobs import _as_ref_rows, sequence_logps
    from ..models import load_model, load_options, release_freed_memory

    def compute(missing: list[str]) -> pd.DataFrame:
        reference = load_model(config.model, quantization=config.quantization, dtype=config.dtype,
                               device=device, **load_options(config))
        rows = df["pair_id"].isin(set(missing)).to_numpy()
        # Stored chunk by chunk as computed: an interrupted prefill keeps what it did.
        logps = sequence_logps(reference, tokenizer, df[rows], max_length=args.max_length,
                               truncation_mode=args.truncation_mode, layout=ref_cache.layout,
                               batch_size=max(1, args.per_device_eval_batch_size),
                               progress="reference log-probs (missing from cache)",
                               tokenized=[t for t, keep in zip(tokenized, rows) if keep],
                               on_chunk=lambda chunk: ref_cache.put(_as_ref_rows(chunk)))
        return _as_ref_rows(logps)

    # Under the cache's lock: runs (or ranks) starting together compute each pair once.
    computed = ref_cache.fill(df["pair_id"].astype(str), compute)
    # The inference copy is garbage now, but held by reference cycles until a collection:
    # free it (and the pass's activations) before the trainable model loads, or the
    # training peak stacks on a whole second model.
    release_freed_memory()
    return computed


def _open_ref_cache(config: TrainConfig, tokenizer, args, compute_dtype, fingerprint: dict[str, str],
                    device: str):
    """The shared reference cache a run with this config, tokenizer and DPO settings reads and fills."""
    from ..logprobs import RefLogpCache, model_config, ref_cache_key_fields, stored_layout
    from ..models import load_options

    layout = stored_layout(model_config(config.model, load_options(config)), args.truncation_mode,
                           device=device, quantization=config.quantization, ld_alpha=args.ld_alpha)
    return RefLogpCache(ref_cache_key_fields(
        model_fingerprint=fingerprint, compute_dtype=compute_dtype, tokenizer=tokenizer,
        max_length=args.max_length, truncation_mode=args.truncation_mode, ld_alpha=args.ld_alpha,
        layout=layout), root=config.ref_cache_dir)


def policy_layout(ref_cache) -> str:
    """The layout of the policy's training forward: ``shared`` where its reference comes from a
    cache in the shared-prompt layout (CPU, 4-bit or full precision, no LD-DPO, a supported model; see
    :func:`pairlab.logprobs.stored_layout`), so policy and reference are scored alike;
    else ``trl``. The trainer keeps TRL's layout under a data-parallel launcher (see
    :class:`~pairlab.train.trainer.PairlabDPOTrainer`); the manifest records what ran. ``PAIRLAB_LOGPS_LAYOUT=trl`` makes it ``trl`` everywhere."""
    return "shared" if ref_cache is not None and ref_cache.layout == "shared" else "trl"


def prefill_reference(pairs: pd.DataFrame, config: TrainConfig) -> int:
    """Compute into ``config``'s shared reference cache what :func:`train` would need for
    ``pairs`` and the cache lacks, loading no trainable model; returns how many it computed.

    For several runs over overlapping subsets (arms): one pass over their union, then each
    run finds its reference cached, as `pairlab ablate`'s prefill step does. Computes only
    where :func:`train` itself would prefill (CPU, shared-prompt layout); elsewhere returns 0.
    """
    import tempfile

    from ..models import load_options, load_tokenizer, model_fingerprint, pick_compute_dtype, pick_device

    validate(config)
    if not config.ref_cache:
        return 0
    device = local_device(pick_device(config.device))
    compute_dtype = pick_compute_dtype(device, config.dtype)
    with tempfile.TemporaryDirectory(prefix="pairlab-prefill-") as tmp:  # DPOConfig wants an output_dir
        args = build_dpo_config(config, tmp, compute_dtype, device)
    tokenizer = load_tokenizer(config.model, **load_options(config))
    fingerprint = model_fingerprint(config.model, config.quantization, config.dtype, config.model_revision)
    df = pairs.reset_index(drop=True)
    tokenized, _, trained = truncation_before_training(df, tokenizer, args)
    ref_cache = _open_ref_cache(config, tokenizer, args, compute_dtype, fingerprint, device)
    return _prefill_reference(df[trained], config, tokenizer, ref_cache, args, device,
                              [t for t, keep in zip(tokenized, trained) if keep])


def truncation_before_training(df: pd.DataFrame, tokenizer, args) -> tuple[list, dict[str, Any], np.ndarray]:
    """(TRL's tokenization of every pair, truncation counts at args.max_length, mask of the
    pairs TRL keeps: a completion token left), with a warning
    when more than 5% of pairs are truncated. Shown before any model loads, so a user can stop
    and pick a max_length (`pairlab inspect --model`) instead of training on cut pairs."""
    from ..logprobs import token_lengths, tokenize_pairs, truncation_counts, truncation_table, truncation_warning

    tokenized = tokenize_pairs(tokenizer, df)
    table = truncation_table(token_lengths(tokenized, df["pair_id"]), args.max_length, args.truncation_mode)
    counts = truncation_counts(table, args.max_length, args.truncation_mode)
    warning = truncation_warning(counts, "training pairs")
    if warning and is_main():
        print(f"warning: {warning}", file=sys.stderr)
    if counts["scored"] == 0:
        raise PairDataError(f"every one of the {len(df)} pairs has a prompt of max_length "
                            f"{args.max_length} tokens or more: TRL would drop them all", field="dpo.max_length",
                            hint=f"raise dpo.max_length above the prompts' length (longest prompt "
                                 f"{int(table['prompt_tokens'].max())} tokens)")
    return tokenized, counts, table["scorable"].to_numpy(bool)


def _prepare_out_dir(out: Path, resume: bool, overwrite: bool, inputs: list) -> tuple[str, Path | None]:
    """(state, checkpoint to resume from), after refusing what may not be written (no side effects).

    A finished run is replaced only with ``overwrite``; ``resume`` on it is a no-op
    (state ``complete``). An interrupted run (checkpoints, no manifest) needs ``resume``
    to continue or ``overwrite`` to start again.
    """
    state = RunDir.prepare(out, inputs=inputs, overwrite=overwrite, resume=resume)
    if state == "complete":
        return state, None
    checkpoint = latest_checkpoint(out / CHECKPOINT_DIR)
    if checkpoint is not None and not resume and not overwrite:
        raise StageDirError(f"holds an interrupted run (last complete checkpoint: {checkpoint.name})",
                            file=str(out), field="--out",
                            hint="pass --resume to continue it, or --overwrite to start again")
    return state, (checkpoint if resume and not overwrite else None)


def interrupted_run_mismatch(pairs, config: TrainConfig, out: str | os.PathLike) -> str | None:
    """Why the interrupted run in ``out`` is not this one (None: it is, or there is none):
    what ``train(..., resume=True)`` would refuse, for a caller that redoes it instead."""
    from ..models import pick_compute_dtype, pick_device

    checkpoint = latest_checkpoint(Path(out) / CHECKPOINT_DIR)
    if checkpoint is None:
        return None
    df, _ = read_train_pairs(pairs)
    compute_dtype = pick_compute_dtype(local_device(pick_device(config.device)), config.dtype)
    return identity_mismatch(checkpoint, run_identity(to_dict(config), compute_dtype, df))


def finished_result(out: Path) -> TrainResult:
    """A finished run's :class:`TrainResult`, read back from its (verified) directory."""
    manifest = RunDir.verify(out)
    return TrainResult(out_dir=out, adapter_dir=out / ADAPTER_DIR, global_step=int(manifest.get("global_step") or 0),
                       train_log=pd.read_json(out / TRAIN_LOG, lines=True), dynamics=pd.read_parquet(out / DYNAMICS),
                       ref_cache=manifest.get("ref_cache") or {}, resumed_from=manifest.get("resumed_from"),
                       wall_time_s=0.0, train_runtime_s=0.0, peak_rss_mb=round(peak_rss_mb(), 1),
                       model_footprint_mb=(manifest.get("memory") or {}).get("model_footprint_mb", 0.0),
                       already_finished=True)


def _is_hub_error(err: BaseException) -> bool:
    """A network or hub error (push_to_hub creating its repository offline, a missing token)."""
    return any(c.__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3",
                                            "huggingface_hub") for c in type(err).__mro__)


def train(pairs: pd.DataFrame | str | os.PathLike, config: TrainConfig | None = None,
          out_dir: str | os.PathLike = "run", *, resume: bool = False, overwrite: bool = False,
          callbacks: list | None = None, console_progress: bool = True) -> TrainResult:
    """QLoRA (or full-precision LoRA) DPO on a pairs table through TRL; writes RUN_DIR.

    Parameters
    ----------
    pairs : a pairs table, or a path to ``pairs.parquet`` (or its directory).
    config : :class:`TrainConfig` (defaults: embedded SmolLM2 in 4-bit, pairlab's DPO defaults).
    out_dir : the run directory.
    resume : continue from the latest complete checkpoint in ``out_dir/checkpoints``; on a
        finished run, do nothing (``result.already_finished``).
    overwrite : replace a finished or interrupted run in ``out_dir`` (checkpoints too).
    callbacks : extra ``transformers.TrainerCallback`` objects (e.g. ablate's overall progress bar).
    console_progress : False drops the trainer's own bar and log printing (the caller shows
        progress; the per-step log still goes to ``train_log.jsonl``).
    """
    started = time.time()
    config = config or TrainConfig()
    validate(config)  # bad DPO keys fail here, before any model loads
    if reports_to(config, "wandb"):  # here, where it trains (a planned or submitted config may log in later)
        check_wandb(field="dpo.report_to")
    out = Path(out_dir)
    inputs = [] if isinstance(pairs, pd.DataFrame) else [pairs]
    state, checkpoint = _prepare_out_dir(out, resume, overwrite, inputs)
    if state == "complete":  # --resume on a finished run: nothing to do (no extra step)
        return finished_result(out)
    df, input_record = read_train_pairs(pairs)
    if df.empty:
        raise PairDataError("no pairs to train on", file=input_record.get("pairs"))
    if df["pair_id"].duplicated().any():
        dup = df.loc[df["pair_id"].duplicated(), "pair_id"].iloc[0]
        raise PairDataError(f"pair_id '{dup}' appears twice", file=input_record.get("pairs"),
                            field="pair_id", hint="deduplicate with `pairlab curate`")

    from peft import LoraConfig

    from ..io import to_trl_dataset
    from ..models import (load_model, load_options, load_tokenizer, model_fingerprint, pick_compute_dtype,
                          pick_device)
    from .trainer import PairlabDPOTrainer

    device = local_device(pick_device(config.device))  # under a launcher: one GPU per process
    compute_dtype = pick_compute_dtype(device, config.dtype)
    args = build_dpo_config(config, out / CHECKPOINT_DIR, compute_dtype, device)
    identity = run_identity(to_dict(config), compute_dtype, df)
    why = identity_mismatch(checkpoint, identity) if checkpoint is not None else None
    if why:
        raise StageDirError(f"holds an interrupted run {why}; --resume continues only the same run",
                            file=str(out), field="--out", hint="pass --overwrite to start again, or choose another --out")
    tokenizer = load_tokenizer(config.model, **load_options(config))
    fingerprint = model_fingerprint(config.model, config.quantization, config.dtype, config.model_revision)
    tokenized, truncation, trained = truncation_before_training(df, tokenizer, args)
    # Inputs read and checked, the tokenizer loaded: now clear the old outputs (checkpoints too
    # with overwrite). Under a launcher only rank 0 touches the directory (the others checked it
    # above, with the same flags, so they agree); the trainer's first collective orders them after it.
    if is_main():
        RunDir.start(out, inputs=inputs, overwrite=overwrite, resume=resume)
    ref_cache = None
    prefilled = 0
    if config.ref_cache:
        ref_cache = _open_ref_cache(config, tokenizer, args, compute_dtype, fingerprint, device)
        # only the pairs TRL keeps (it drops those with no completion token left)
        prefilled = _prefill_reference(df[trained], config, tokenizer, ref_cache, args, device,
                                       [t for t, keep in zip(tokenized, trained) if keep])
        if world_size() > 1 and device == "cpu":  # only the CPU prefills; under the cache's lock,
            prefilled = sum(gather_objects(prefilled, device))  # whichever rank came first computed
    model = load_model(config.model, quantization=config.quantization, dtype=config.dtype, device=device,
                       trainable=True, **load_options(config))

    dataset = to_trl_dataset(df)
    dataset = dataset.add_column("pair_index", list(range(len(dataset))))
    target = config.lora.target_modules
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=target if isinstance(target, str) else list(target),
                      task_type="CAUSAL_LM")
    try:
        trainer = PairlabDPOTrainer(model=model, args=args, train_dataset=dataset,
                                    processing_class=tokenizer, peft_config=lora,
                                    pair_ids=df["pair_id"].astype(str).tolist(), ref_cache=ref_cache,
                                    policy_layout=policy_layout(ref_cache), callbacks=callbacks,
                                    resume_identity=identity)
    except ValueError as err:  # TRL's own config checks (e.g. exo_pair without label_smoothing)
        where = "lora.target_modules" if "target_modules" in str(err) or "Target modules" in str(err) else "dpo"
        if checkpoint is None and is_main():  # nothing trained: not an interrupted run
            RunDir.abandon(out)
        raise ConfigError(str(err), field=where) from None
    except Exception as err:
        if not _is_hub_error(err):
            raise
        raise ConfigError(f"cannot reach the Hugging Face Hub ({type(err).__name__}: {err})", field="dpo.push_to_hub",
                          hint="set dpo.push_to_hub: false and push later (pairlab export --hub-model-id), "
                               "or log in / go online") from None
    # TRL dropped the pairs whose prompt alone reaches max_length while preparing its dataset:
    # record its own count next to ours (they agree unless TRL changes the rule).
    truncation["trl_trained_pairs"] = len(trainer.train_dataset)
    truncation["trl_dropped"] = len(df) - len(trainer.train_dataset)
    if truncation["trl_dropped"] != truncation["excluded"]:
        print(f"warning: TRL dropped {truncation['trl_dropped']} pairs, pairlab predicted "
              f"{truncation['excluded']} (prompt >= max_length)", file=sys.stderr)
    _trainable_to(trainer.model, compute_dtype)
    if not console_progress:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    if checkpoint is not None:
        trainer.dynamics.load(checkpoint_dynamics(checkpoint))
        if console_progress:
            print(f"resuming {out} from {checkpoint.name} (step {_checkpoint_step(checkpoint)} of "
                  f"{args.max_steps if args.max_steps > 0 else 'the epochs'})", file=sys.stderr)

    if checkpoint is not None and _is_final(checkpoint):
        # Killed after its last checkpoint, before the outputs: that checkpoint is the final
        # state. HF's resume would run one more step (at learning rate 0); restore it instead.
        from transformers.trainer_callback import TrainerState

        trainer._load_from_checkpoint(str(checkpoint))
        trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    else:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    # Outputs: the adapter, the dynamics, the per-step log, the manifest.
    dynamics = trainer.dynamics_frame()
    log = step_log(dynamics, trainer.state.log_history)
    adapter_dir = out / ADAPTER_DIR
    if trainer.accelerator.is_main_process:
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        trainer.save_model(str(adapter_dir))
        artifacts.write_parquet(out / DYNAMICS, dynamics)
        artifacts.write_jsonl(out / TRAIN_LOG, log)
    wall = time.time() - started
    # HF's train_runtime covers this process's optimizer loop only (not loading, not the reference pass).
    runtime = next((e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e), 0.0)
    steps_here = trainer.state.global_step - (_checkpoint_step(checkpoint) if checkpoint else 0)
    peak = peak_rss_mb()
    ref_stats = dict(trainer.ref_stats, enabled=config.ref_cache,
                     computed=trainer.ref_stats["computed"] + prefilled,
                     cache_hits=trainer.ref_stats["cache_hits"] - prefilled,
                     dir=None if ref_cache is None else str(ref_cache.dir),
                     key=None if ref_cache is None else ref_cache.key)
    if trainer.accelerator.is_main_process:
        import torch

        memory = {"peak_rss_mb": round(peak, 1),
                  "model_footprint_mb": round(trainer.model.get_memory_footprint() / 2**20, 1)}
        if torch.cuda.is_available():
            memory["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        RunDir.finish(  # last: the run is complete from here on
            out, started=started, seed=config.seed,
            config={**to_dict(config), "dpo_effective": dpo_settings(config)},
            inputs={**input_record, "pairs_frame_sha256": artifacts.frame_sha256(df, ["pair_id"]),
                    "n_pairs": len(df), "model": fingerprint},
            device=device, compute_dtype=str(compute_dtype).replace("torch.", ""),
            num_processes=trainer.accelerator.num_processes, global_step=trainer.state.global_step,
            distributed={"world_size": trainer.accelerator.num_processes,
                         "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
                         "backend": getattr(trainer.accelerator.state, "backend", None)},
            resumed_from=None if checkpoint is None else str(checkpoint),
            resumed_from_step=None if checkpoint is None else _checkpoint_step(checkpoint), ref_cache=ref_stats,
            policy_layout={"layout": trainer.policy_layout, **trainer.layout_stats},
            truncation=truncation,
            memory=memory, timing={"train_runtime_s": round(runtime, 3), "optimizer_steps": steps_here,
                                   "seconds_per_step": round(runtime / max(steps_here, 1), 4)},
            final_step=log.iloc[-1].to_dict() if len(log) else None)
    return TrainResult(out_dir=out, adapter_dir=adapter_dir, global_step=trainer.state.global_step,
                       train_log=log, dynamics=dynamics, ref_cache=ref_stats,
                       resumed_from=None if checkpoint is None else str(checkpoint),
                       wall_time_s=round(wall, 3), train_runtime_s=round(runtime, 3),
                       peak_rss_mb=round(peak, 1),
                       model_footprint_mb=round(trainer.model.get_memory_footprint() / 2**20, 1),
                       truncation=truncation)


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def _is_final(checkpoint: Path) -> bool:
    """Whether a checkpoint was saved at the run's last optimizer step."""
    state = artifacts.read_json(checkpoint / "trainer_state.json")
    return bool(state.get("max_steps")) and int(state.get("global_step", 0)) >= int(state["max_steps"])
