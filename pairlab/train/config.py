"""TrainConfig: what a `pairlab train` run does, loaded from YAML + ``key=value`` overrides.

The top level holds what pairlab itself decides (model, quantization, LoRA, seed,
reference cache, checkpoint cadence). Everything TRL's ``DPOConfig`` knows goes
under ``dpo:`` and is passed through unchanged, so every DPO option (beta,
loss_type, learning_rate, num_train_epochs / max_steps, batch size, gradient
accumulation, max_length, gradient_checkpointing, ...) is settable. Keys are
checked against ``DPOConfig``'s fields before any model is loaded.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..config import ConfigError, blame_overrides, check_range, check_ranges, cli_overrides, from_dict, read_yaml, set_dotted

#: Options TRL 1.x removed, with what to do instead (users bring configs from TRL 0.x).
REMOVED_DPO_KEYS: dict[str, str] = {
    "rpo_alpha": "use loss_type: [sigmoid, sft] with loss_weights: [1.0, ALPHA]",
    "reference_free": "not available in TRL 1.16; DPO always uses the reference (adapter disabled)",
    "max_prompt_length": "only max_length (prompt + completion, cut per sequence) with truncation_mode remains",
    "max_completion_length": "only max_length (prompt + completion, cut per sequence) with truncation_mode remains",
    "generate_during_eval": "generate with `pairlab evaluate` instead",
    "ref_adapter_name": "the reference is the base model with the adapter disabled",
    "model_adapter_name": "pairlab trains a single adapter named 'default'",
    "force_use_ref_model": "the reference is the base model with the adapter disabled",
    "use_logits_to_keep": "TRL 1.16 uses a fused LM head instead",
    "padding_value": "the tokenizer's pad token is used",
    "label_pad_token_id": "completion masks replace label padding in TRL 1.16",
    "is_encoder_decoder": "only causal LMs are supported",
}

#: DPOConfig fields pairlab sets itself, and where to set them instead.
MANAGED_DPO_KEYS: dict[str, str] = {
    "output_dir": "set by --out (checkpoints go to OUT/checkpoints)",
    "seed": "set the top-level `seed`",
    "bf16": "set the top-level `dtype` (precision follows the device)",
    "fp16": "set the top-level `dtype` (precision follows the device)",
    "precompute_ref_log_probs": "set the top-level `ref_cache`",
    "logging_steps": "set the top-level `logging_steps`",
    "save_steps": "set the top-level `save_steps`",
    "remove_unused_columns": "pairlab needs pair_index to reach the batch",
}

#: pairlab's DPO defaults: small enough for a 2-core CPU; override any under ``dpo:``.
DPO_DEFAULTS: dict[str, Any] = {
    "beta": 0.1,
    "loss_type": "sigmoid",
    "learning_rate": 5e-5,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_length": 256,
    "truncation_mode": "keep_start",
    # transformers 5 renamed gradient_checkpointing -> activation_checkpointing (the old name still works here)
    "activation_checkpointing": False,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "report_to": "none",
    "save_strategy": "steps",
    "dataloader_num_workers": 0,
}


#: Ranges of the numeric DPOConfig fields a user is likely to set, checked at load time
#: (TRL checks few of them, and only after the model and the reference pass).
DPO_RANGES: dict[str, dict[str, Any]] = {
    "beta": {"gt": 0},
    "learning_rate": {"gt": 0},
    "num_train_epochs": {"gt": 0},
    "max_steps": {"min": 1, "allow": (-1,)},  # -1: train num_train_epochs instead
    "per_device_train_batch_size": {"min": 1},
    "per_device_eval_batch_size": {"min": 1},
    "gradient_accumulation_steps": {"min": 1},
    "max_length": {"min": 1},
    "warmup_steps": {"min": 0},
    "warmup_ratio": {"min": 0, "max": 1},
    "weight_decay": {"min": 0},
    "max_grad_norm": {"min": 0},
    "label_smoothing": {"min": 0, "max": 0.5},
    "ld_alpha": {"min": 0, "max": 1},
    "adam_beta1": {"min": 0, "lt": 1},
    "adam_beta2": {"min": 0, "lt": 1},
    "adam_epsilon": {"gt": 0},
    "dataloader_num_workers": {"min": 0},
    "loss_weights": {"min": 0},
}


# Optional/Union rather than `X | None`: pairlab.config's coercion recognises typing.Union.
@dataclass
class LoraSettings:
    r: int = field(default=16, metadata={"help": "LoRA rank", "min": 1})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)", "gt": 0})
    dropout: float = field(default=0.05, metadata={"min": 0, "lt": 1,
        "help": "LoRA dropout (TRL's disable_dropout, on by default, turns it off; set dpo.disable_dropout: false to keep it)"})
    target_modules: Union[str, list[str]] = field(default="all-linear", metadata={
        "help": "modules to adapt: 'all-linear' (every linear layer but the LM head) or a list of names"})


@dataclass
class TrainConfig:
    model: str = field(default="smollm2-135m-instruct", metadata={
        "help": "model spec: smollm2-135m-instruct, tiny-random-llama, a local directory or a hub id"})
    quantization: str = field(default="4bit", metadata={
        "help": "4bit (QLoRA: NF4 base + double quantization) or none (full-precision LoRA)"})
    dtype: str = field(default="auto", metadata={
        "help": "compute dtype: auto (bf16 where native, fp16 on older GPUs, else fp32), bfloat16, float16, float32"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    model_revision: Optional[str] = field(default=None, metadata={
        "help": "hub revision (branch, tag or commit) of a hub-id model; ignored for local models"})
    attn_implementation: Optional[str] = field(default=None, metadata={
        "help": "attention kernel: eager, sdpa, flash_attention_2, ...; default: transformers' choice"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run Python code shipped with the model repository (off; a warning is printed when on)"})
    chat_template: Optional[str] = field(default=None, metadata={
        "help": "Jinja chat template (inline, or a .jinja file) replacing the tokenizer's; used by every stage"})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA adapter (r, alpha, dropout, target_modules)"})
    seed: int = field(default=0, metadata={"help": "seed for adapter init, data order and dropout", "min": 0})
    ref_cache: bool = field(default=True, metadata={
        "help": "read/write reference log-probs in the shared on-disk cache (false: TRL computes the reference every step)"})
    ref_cache_dir: Optional[str] = field(default=None, metadata={
        "help": "where the reference cache lives (default $PAIRLAB_CACHE/ref_logps); share it between runs"})
    logging_steps: int = field(default=1, metadata={
        "help": "optimizer steps between TRL log lines / progress updates", "min": 1})
    save_steps: int = field(default=50, metadata={"help": "optimizer steps between checkpoints (for --resume)", "min": 1})
    save_total_limit: Optional[int] = field(default=2, metadata={
        "help": "checkpoints kept (oldest deleted); null keeps all", "min": 1})
    dpo: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "any trl.DPOConfig field (beta, loss_type, learning_rate, max_steps, num_train_epochs, "
                "per_device_train_batch_size, gradient_accumulation_steps, max_length, ...); merged over pairlab's defaults"})


def dpo_field_names() -> set[str]:
    from trl import DPOConfig

    return {f.name for f in dataclasses.fields(DPOConfig) if f.init}


def coerce_dpo_values(dpo: dict[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """YAML reads ``1e-4`` (no dot) as a string: turn such strings into the field's number type."""
    from trl import DPOConfig

    types = {f.name: type(f.default) for f in dataclasses.fields(DPOConfig) if f.init}
    out = dict(dpo)
    for key, value in dpo.items():
        if isinstance(value, str) and types.get(key) in (int, float):
            try:
                out[key] = types[key](float(value)) if types[key] is int else float(value)
            except ValueError:
                raise ConfigError(f"expected a number, got {value!r}", field=f"{prefix}dpo.{key}") from None
    return out


def check_dpo_keys(dpo: dict[str, Any], *, source: str | None = None, prefix: str = "") -> None:
    """Reject unknown, removed and pairlab-managed DPOConfig keys, naming the key."""
    if not isinstance(dpo, dict):
        raise ConfigError(f"expected a mapping of trl.DPOConfig fields, got {dpo!r}", file=source, field=f"{prefix}dpo")
    names = dpo_field_names()
    for key in dpo:
        if key in REMOVED_DPO_KEYS and key not in names:
            raise ConfigError(f"'{key}' no longer exists in TRL 1.16's DPOConfig", file=source,
                              field=f"{prefix}dpo.{key}", hint=REMOVED_DPO_KEYS[key])
        if key in MANAGED_DPO_KEYS:
            raise ConfigError("set by pairlab, not under dpo:", file=source, field=f"{prefix}dpo.{key}",
                              hint=MANAGED_DPO_KEYS[key])
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, names, n=3)
            raise ConfigError("not a trl.DPOConfig field", file=source, field=f"{prefix}dpo.{key}",
                              hint=f"did you mean {close}?" if close else "see trl.DPOConfig")


def _leaves(data: dict[str, Any], prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict) and value and key in ("dpo", "lora"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def load_train_config(path: str | os.PathLike | None = None,
                      overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Defaults < YAML < overrides. Overrides may be dotted (``dpo.beta=0.2``, ``lora.r=8``).

    TRL / alignment-handbook flat keys (``model_name_or_path``, ``lora_r``, ``beta``, ...) are
    accepted in the file and as overrides, and mapped by :func:`pairlab.train.recipes.map_recipe`
    with one notice per key.
    """
    from .recipes import emit_notices, map_recipe

    data: dict[str, Any] = {}
    source = None if path is None else str(path)
    if path:
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("top level must be a mapping", file=source)
        data = loaded
    data, notices = map_recipe(data, source=source)
    items = overrides.items() if isinstance(overrides, dict) else \
        cli_overrides(overrides, TrainConfig).items()
    # Overrides may use recipe spellings too; mapped together, so pairlab's spelling wins among them.
    mapped, said = map_recipe(dict(items))
    notices += said
    for dotted, leaf in _leaves(mapped):
        set_dotted(data, dotted, leaf)
    emit_notices(notices)
    with blame_overrides([dotted for dotted, _ in _leaves(mapped)], source=source):
        cfg = from_dict(TrainConfig, data, source=source)
        validate(cfg, source=source)
    return cfg


def validate(cfg: TrainConfig, *, source: str | None = None, prefix: str = "") -> None:
    """Checks that need no model: quantization, dtype, ranges, DPO keys and their ranges.

    ``prefix`` leads the field names in messages (``arms.gap.train.`` inside an ablation).
    """
    from ..models import DTYPES, QUANTIZATIONS, check_device

    if cfg.quantization not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization '{cfg.quantization}'", file=source,
                          field=f"{prefix}quantization", hint=f"choose one of {QUANTIZATIONS}")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{cfg.dtype}'", file=source, field=f"{prefix}dtype",
                          hint=f"choose one of {DTYPES}")
    check_device(cfg.device, field=f"{prefix}device", source=source)
    if not cfg.lora.target_modules or (isinstance(cfg.lora.target_modules, str) and not cfg.lora.target_modules.strip()):
        raise ConfigError("no modules to adapt", file=source, field=f"{prefix}lora.target_modules",
                          hint="'all-linear', or a list of module names such as [q_proj, v_proj]")
    check_ranges(cfg, source=source, prefix=prefix)
    check_dpo_keys(cfg.dpo, source=source, prefix=prefix)
    coerced = coerce_dpo_values(cfg.dpo, prefix=prefix)
    check_dpo_values(coerced, source=source, prefix=prefix)
    for key, value in coerced.items():
        check_range(value, DPO_RANGES.get(key, {}), f"{prefix}dpo.{key}", source=source)


#: TRL 1.16's loss types (trl/trainer/dpo_trainer.py, its "Unknown loss type" list).
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
TRUNCATION_MODES = ("keep_start", "keep_end")


def _dpo_field_types() -> dict[str, tuple[Any, bool]]:
    """DPOConfig field -> (its one non-None type, else None; whether it may be None), from the
    resolved annotations: TRL's ``TrlParser`` rewrites ``Field.type`` (``int | None`` -> ``int``)."""
    import types
    import typing

    from trl import DPOConfig

    hints = typing.get_type_hints(DPOConfig)
    out: dict[str, tuple[Any, bool]] = {}
    for f in dataclasses.fields(DPOConfig):
        if f.init:
            tp = hints[f.name]
            args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
            rest = [a for a in args if a is not type(None)]
            out[f.name] = (rest[0] if len(rest) == 1 else None, type(None) in args or f.default is None)
    return out


def check_dpo_values(dpo: dict[str, Any], *, source: str | None = None, prefix: str = "") -> None:
    """What TRL would only find after the model loads (or mid-step): null where DPOConfig needs a
    value, a fraction where it needs a whole number, an unknown loss type or truncation mode, and
    or a logger named by something other than its name."""
    from trl import DPOConfig

    defaults = {f.name: DPO_DEFAULTS.get(f.name, f.default) for f in dataclasses.fields(DPOConfig) if f.init}
    declared = _dpo_field_types()
    nullable = {name for name, (_, may_be_none) in declared.items() if may_be_none}
    whole = {name for name, (base, _) in declared.items() if base is int}  # warmup_steps is a float (< 1: a ratio)
    for key, value in dpo.items():
        where = f"{prefix}dpo.{key}"
        default = defaults.get(key, dataclasses.MISSING)
        if value is None and key not in nullable and default is not None and default is not dataclasses.MISSING:
            raise ConfigError(f"must not be null (default {default!r})", file=source, field=where,
                              hint="give a value, or leave the key out for the default")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"expected a number, got {value!r}", file=source, field=where)
            if key in whole and not float(value).is_integer():
                raise ConfigError(f"expected a whole number, got {value!r}", file=source, field=where)
    losses = dpo.get("loss_type", [])
    losses = [losses] if isinstance(losses, str) else losses
    if not isinstance(losses, list) or not all(isinstance(loss, str) for loss in losses):
        raise ConfigError(f"expected a loss name or a list of them, got {dpo.get('loss_type')!r}", file=source,
                          field=f"{prefix}dpo.loss_type", hint=f"TRL 1.16 has {list(LOSS_TYPES)}")
    for loss in losses:
        if loss not in LOSS_TYPES:
            import difflib

            close = difflib.get_close_matches(str(loss), LOSS_TYPES, n=1)
            raise ConfigError(f"unknown loss type {loss!r}", file=source, field=f"{prefix}dpo.loss_type",
                              hint=(f"did you mean {close[0]!r}? " if close else "") + f"TRL 1.16 has {list(LOSS_TYPES)}")
    mode = dpo.get("truncation_mode", "keep_start")
    if not isinstance(mode, str) or mode not in TRUNCATION_MODES:
        raise ConfigError(f"unknown truncation mode {mode!r}", file=source, field=f"{prefix}dpo.truncation_mode",
                          hint=f"TRL 1.16 has {list(TRUNCATION_MODES)} (keep_end is deprecated)")
    reporters = dpo.get("report_to", "none")
    if reporters is not None and not (isinstance(reporters, str) or (
            isinstance(reporters, list) and all(isinstance(r, str) for r in reporters))):
        raise ConfigError(f"expected a logger name or a list of them, got {reporters!r}", file=source,
                          field=f"{prefix}dpo.report_to", hint="e.g. none, tensorboard, wandb")
    # push_to_hub is checked when the trainer creates its repository (a recipe may be loaded offline
    # to be run elsewhere); a hub that cannot be reached is then a one-line error naming the key.



def reports_to(cfg: TrainConfig, name: str) -> bool:
    reporters = dpo_settings(cfg).get("report_to") or []
    return name in ([reporters] if isinstance(reporters, str) else reporters)


def check_wandb(*, field: str, source: str | None = None) -> None:
    """``report_to: wandb`` needs the package, and a login or an offline mode (else it fails at step 0).
    Checked where the training runs (`pairlab train`, an ablation's arm), not where a config is
    only planned or submitted: a cluster job may export WANDB_API_KEY itself."""
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise ConfigError("report_to wandb, but wandb is not installed", file=source, field=field,
                          hint="pip install wandb (or pairlab[tracking]), or report_to: tensorboard")
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    netrc = os.path.expanduser(os.environ.get("NETRC", "~/.netrc"))
    try:
        logged_in = host in open(netrc, encoding="utf-8").read()
    except OSError:
        logged_in = False
    if not logged_in:
        raise ConfigError("report_to wandb, but there is no wandb login (WANDB_API_KEY, `wandb login`)", file=source,
                          field=field, hint="run `wandb login`, or set WANDB_MODE=offline to log locally")


def dpo_settings(cfg: TrainConfig) -> dict[str, Any]:
    """pairlab's DPO defaults with the user's ``dpo:`` over them (not yet a DPOConfig)."""
    user = dict(cfg.dpo)
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in user and new not in user:
            user[new] = user.pop(old)
    return {**DPO_DEFAULTS, **user}


def hub_repo_name(run_dir: str | os.PathLike) -> str:
    """The hub repository / run name of a run directory: named after the run, never "checkpoints".

    An ablation run (``ABLATION/arms/ARM/seedS/run``) is ``ABLATION-ARM-seedS``; any other run
    is its directory's name. Characters the hub refuses become '-'.
    """
    import re
    from pathlib import Path

    path = Path(os.path.abspath(run_dir))
    parts = path.parts
    if path.name == "run" and len(parts) >= 5 and parts[-4] == "arms":
        name = f"{parts[-5]}-{parts[-3]}-{parts[-2]}"
    else:
        name = path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:96] or "pairlab-run"


def build_dpo_config(cfg: TrainConfig, output_dir: str | os.PathLike, compute_dtype, device: str = "cpu",
                     run_name: str | None = None):
    """The ``trl.DPOConfig`` for a run on ``device`` (resolved): user settings + what pairlab manages.

    ``run_name`` (default: :func:`hub_repo_name` of the run directory, ``output_dir``'s parent)
    names the run for loggers and, with ``push_to_hub`` and no ``hub_model_id``, the hub
    repository, which TRL would otherwise call after ``output_dir`` ("checkpoints").
    """
    from trl import DPOConfig

    from ..models import precision_flags

    settings = coerce_dpo_values(dpo_settings(cfg))
    run_name = run_name or hub_repo_name(os.path.dirname(os.path.abspath(output_dir)))
    settings.setdefault("run_name", run_name)
    if settings.get("push_to_hub") and not settings.get("hub_model_id"):
        settings["hub_model_id"] = run_name
    settings.update(
        output_dir=str(output_dir),
        seed=cfg.seed,
        precompute_ref_log_probs=cfg.ref_cache,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        remove_unused_columns=True,
        # bf16 is TRL's default; it must follow the compute dtype or a T4 / an AVX2 CPU breaks.
        **precision_flags(compute_dtype),
    )
    if device == "cpu":  # else HF refuses bf16 on a machine without a GPU
        settings["use_cpu"] = True
    try:
        return DPOConfig(**settings)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"DPOConfig rejected the settings: {err}", field="dpo") from None
