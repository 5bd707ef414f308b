"""TRL / alignment-handbook recipe keys -> :class:`~pairlab.train.config.TrainConfig` fields.

A handbook recipe (``recipes/zephyr-7b-beta/dpo/config_qlora.yaml``) or a ``trl dpo``
YAML is one flat mapping mixing TRL's ``ModelConfig`` (``model_name_or_path``,
``load_in_4bit``, ``lora_r``, ...), its data arguments (``dataset_mixer``, ...) and
``DPOConfig`` (``beta``, ``learning_rate``, ...). pairlab keeps model loading at the top
level and ``DPOConfig`` under ``dpo:``. :func:`map_recipe` moves every flat key to its
pairlab place and says so in one line per key; where pairlab has its own spelling and
both are given, pairlab's wins. A key pairlab cannot honour is either dropped with a
notice saying what pairlab does instead, or refused (when dropping it would change what
is trained, e.g. ``use_peft: false``). :data:`RECIPE_KEYS` is the table the docs print.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..config import ConfigError, set_dotted

log = logging.getLogger("pairlab.recipe")

#: Returned by a value rule: the key is dropped (with its notice), nothing is set.
DROP = object()


@dataclass(frozen=True)
class RecipeKey:
    """Where one recipe key goes: ``target`` (a dotted TrainConfig field; None = nowhere) and why."""

    target: str | None
    note: str
    value: Callable[[Any], Any] | None = None  # recipe value -> pairlab value, DROP, or raise ValueError


def _flag(true_value: Any, *, false: str | None = None, true_error: str | None = None):
    """A boolean key: true -> ``true_value`` (or an error), false -> dropped (or an error)."""
    def convert(value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        if value:
            if true_error:
                raise ValueError(true_error)
            return true_value
        if false:
            raise ValueError(false)
        return DROP
    return convert


def _only(allowed: Any, why: str):
    """A key pairlab honours for one value only (which it always uses): that value is dropped."""
    def convert(value: Any) -> Any:
        if value != allowed and not (isinstance(value, str) and str(value).lower() == str(allowed).lower()):
            raise ValueError(f"{value!r} is not supported: {why}")
        return DROP
    return convert


def _empty_or(why: str):
    """A key whose only supported setting is empty/false/null."""
    def convert(value: Any) -> Any:
        if value:
            raise ValueError(f"{value!r} is not supported: {why}")
        return DROP
    return convert


def _drop(_value: Any) -> Any:
    return DROP


_DATA = ("pairlab trains on --pairs (a curated pairs.parquet); read a hub dataset with "
         "`pairlab convert --input ID --split SPLIT --out FILE` and curate it")
_EVAL = "held-out evaluation is `pairlab evaluate` (and `pairlab ablate` evaluates every arm)"

#: Every handbook / TRL key pairlab knows, in the order the docs table lists them.
#: ``DPOConfig`` fields not listed here go to ``dpo.<key>`` unchanged.
RECIPE_KEYS: dict[str, RecipeKey] = {
    # ---- TRL ModelConfig
    "model_name_or_path": RecipeKey("model", "the model spec"),
    "model_revision": RecipeKey("model_revision", "same name in pairlab"),
    "torch_dtype": RecipeKey("dtype", "pairlab loads and computes in one dtype"),
    "dtype": RecipeKey("dtype", "same name in pairlab (TRL 1.x spelling of torch_dtype)"),
    "attn_implementation": RecipeKey("attn_implementation", "same name in pairlab"),
    "use_flash_attention_2": RecipeKey("attn_implementation", "older handbook spelling",
                                       _flag("flash_attention_2")),
    "trust_remote_code": RecipeKey("trust_remote_code", "same name in pairlab (off unless set; warns when on)"),
    "chat_template": RecipeKey("chat_template", "same name in pairlab (replaces the tokenizer's template)"),
    "load_in_4bit": RecipeKey("quantization", "true -> 4bit (QLoRA: NF4 + double quantization), false -> none",
                              lambda v: "4bit" if v is True else "none" if v is False else _not_bool(v)),
    "load_in_8bit": RecipeKey(None, "8-bit loading is not supported (false is accepted)",
                              _flag(None, true_error="use load_in_4bit: true (QLoRA) or full-precision LoRA")),
    "bnb_4bit_quant_type": RecipeKey(None, "pairlab's 4-bit is always NF4 (nf4 accepted, others refused)",
                                     _only("nf4", "pairlab's 4-bit quantization is NF4")),
    "use_bnb_nested_quant": RecipeKey(None, "pairlab's 4-bit always uses double (nested) quantization", _drop),
    "bnb_4bit_quant_storage": RecipeKey(None, "pairlab stores 4-bit weights as bitsandbytes' default (uint8)",
                                        _drop),
    "use_peft": RecipeKey(None, "pairlab always trains a LoRA adapter (false is refused)",
                          _flag(DROP, false="full fine-tuning is not supported; pairlab trains LoRA adapters")),
    "lora_r": RecipeKey("lora.r", "LoRA rank"),
    "lora_alpha": RecipeKey("lora.alpha", "LoRA alpha"),
    "lora_dropout": RecipeKey("lora.dropout", "LoRA dropout"),
    "lora_target_modules": RecipeKey("lora.target_modules", "modules to adapt (a list, or all-linear)"),
    "lora_task_type": RecipeKey(None, "pairlab trains causal LMs only (CAUSAL_LM accepted)",
                                _only("CAUSAL_LM", "pairlab trains causal LMs")),
    "lora_modules_to_save": RecipeKey(None, "not supported (empty accepted)",
                                      _empty_or("pairlab's adapter holds LoRA weights only")),
    "lora_target_parameters": RecipeKey(None, "not supported (empty accepted)",
                                        _empty_or("pairlab adapts modules, not parameters")),
    "use_rslora": RecipeKey(None, "not supported (false accepted)", _empty_or("pairlab uses standard LoRA scaling")),
    "use_dora": RecipeKey(None, "not supported (false accepted)", _empty_or("pairlab trains plain LoRA")),
    # ---- data arguments (TRL ScriptArguments, handbook DataArguments)
    **{key: RecipeKey(None, _DATA, _drop) for key in (
        "dataset_name", "dataset_config", "dataset_mixer", "dataset_splits", "dataset_configs",
        "dataset_train_split", "dataset_test_split", "dataset_streaming", "datasets",
        "preprocessing_num_workers", "truncation_side", "auto_insert_empty_system_msg",
        "ignore_bias_buffers")},
    # ---- DPOConfig / TrainingArguments keys pairlab sets or spells itself
    "seed": RecipeKey("seed", "same name in pairlab"),
    "logging_steps": RecipeKey("logging_steps", "same name in pairlab"),
    "save_steps": RecipeKey("save_steps", "same name in pairlab"),
    "save_total_limit": RecipeKey("save_total_limit", "same name in pairlab"),
    "bf16": RecipeKey("dtype", "true -> bfloat16 (when torch_dtype/dtype is not given); false: dropped",
                      _flag("bfloat16")),
    "fp16": RecipeKey("dtype", "true -> float16 (when torch_dtype/dtype is not given); false: dropped",
                      _flag("float16")),
    "precompute_ref_log_probs": RecipeKey("ref_cache", "pairlab's shared reference cache"),
    "warmup_ratio": RecipeKey("dpo.warmup_steps", "transformers 5 takes a ratio in [0, 1) as warmup_steps"),
    "output_dir": RecipeKey(None, "pairlab writes to --out (checkpoints under OUT/checkpoints)", _drop),
    "overwrite_output_dir": RecipeKey(None, "pairlab never overwrites a finished run unless `--overwrite` is given "
                                     "(or `--resume`: nothing to do)", _drop),
    "hub_model_revision": RecipeKey(None, "a handbook bookkeeping key; pairlab records the run in its manifest",
                                    _drop),
    "remove_unused_columns": RecipeKey(None, "pairlab keeps pair_index in the batch for per-pair dynamics", _drop),
    "do_train": RecipeKey(None, "`pairlab train` always trains", _drop),
    **{key: RecipeKey(None, _EVAL, _drop) for key in (
        "do_eval", "eval_strategy", "evaluation_strategy", "eval_steps", "eval_on_start", "eval_delay")},
}


def _not_bool(value: Any) -> Any:
    raise ValueError(f"expected true or false, got {value!r}")


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def is_recipe_key(key: str, pairlab_fields: set[str], dpo_fields: set[str]) -> bool:
    return key not in pairlab_fields and (key in RECIPE_KEYS or key in dpo_fields or key in _removed())


def _removed() -> dict[str, str]:
    from .config import REMOVED_DPO_KEYS

    return REMOVED_DPO_KEYS


def map_recipe(data: dict[str, Any], *, source: str | None = None,
               prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Move handbook / TRL flat keys in ``data`` (a TrainConfig mapping) to pairlab's fields.

    Returns the mapped mapping and one notice per key moved or dropped. pairlab's own
    keys are kept as given and win over a recipe key naming the same field. Raises
    :class:`ConfigError` (naming the key) for a setting pairlab cannot honour.
    """
    from dataclasses import fields

    from .config import TrainConfig, dpo_field_names

    pairlab_fields = {f.name for f in fields(TrainConfig)}
    dpo_fields = dpo_field_names()
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()
           if not is_recipe_key(k, pairlab_fields, dpo_fields)}
    notices: list[str] = []
    # Explicit rules first, in table order, so torch_dtype claims dtype before bf16 does.
    recipe = sorted((k for k in data if is_recipe_key(k, pairlab_fields, dpo_fields)),
                    key=lambda k: list(RECIPE_KEYS).index(k) if k in RECIPE_KEYS else len(RECIPE_KEYS))
    for key in recipe:
        value = data[key]
        where = f"{prefix}{key}"
        rule = RECIPE_KEYS.get(key)
        if rule is None and key in _removed():
            notices.append(f"recipe key {where} dropped: not in TRL 1.16's DPOConfig ({_removed()[key]})")
            continue
        if rule is None:  # any other DPOConfig field: pass it to TRL
            rule = RecipeKey(f"dpo.{key}", "a trl.DPOConfig field")
        if rule.value is not None:
            try:
                value = rule.value(value)
            except ValueError as err:
                raise ConfigError(str(err), file=source, field=where, hint=rule.note) from None
        if value is DROP or rule.target is None:
            notices.append(f"recipe key {where} dropped: {rule.note}")
            continue
        if _get(out, rule.target) is not None:
            notices.append(f"recipe key {where} ignored: {prefix}{rule.target} is already set "
                           f"to {_get(out, rule.target)!r}")
            continue
        set_dotted(out, rule.target, value)
        shown = f"{data[key]!r}" if value is data[key] else f"{data[key]!r} ({value!r})"
        notices.append(f"recipe key {where}: {shown} -> {prefix}{rule.target}")
    return out, notices


_said: set[str] = set()


def emit_notices(notices: list[str]) -> None:
    """Log each notice once per process (ablate builds an arm's config many times)."""
    for notice in notices:
        if notice not in _said:
            _said.add(notice)
            log.warning(notice)


def recipe_table() -> str:
    """The docs table: every handbook / TRL key and where pairlab takes it."""
    rows = ["| handbook / TRL key | pairlab | note |", "|---|---|---|"]
    for key, rule in RECIPE_KEYS.items():
        target = f"`{rule.target}`" if rule.target else "(not carried)"
        rows.append(f"| `{key}` | {target} | {rule.note.replace('|', '/')} |")
    rows.append("| removed TRL 0.x keys (`max_prompt_length`, `rpo_alpha`, ...) | (not carried) | "
                "dropped with a notice saying what TRL 1.16 uses instead |")
    rows.append("| any other `trl.DPOConfig` field (`beta`, `learning_rate`, `loss_type`, "
                "`per_device_train_batch_size`, `gradient_accumulation_steps`, `num_train_epochs`, "
                "`max_steps`, `max_length`, `gradient_checkpointing`, `lr_scheduler_type`, `optim`, "
                "`report_to`, `push_to_hub`, `hub_model_id`, ...) | `dpo.<key>` | passed to TRL unchanged |")
    return "\n".join(rows) + "\n"
