"""Per-pair sequence log-probs of a model on preference pairs, and the reference cache.

Train, evaluate and audit all need the same number for a pair: the summed log-prob
of the chosen and of the rejected completion given the prompt, under a model (the
policy with its LoRA adapter, or the reference = the same base with the adapter
disabled). This module computes it exactly the way TRL's ``DPOTrainer`` does, so
numbers from different stages can be compared and cached:

* tokenization is TRL's conversational rule (prompt with the generation prompt,
  prompt+completion through the chat template, completion = where they diverge);
* batches are built by TRL's own ``DataCollatorForPreference`` (same ``max_length``
  truncation, ``keep_start`` by default); a pair whose prompt fills ``max_length`` has
  no completion token left: it is counted and excluded (see "truncation" below), the
  way TRL drops it from training, never scored as NaN;
* the forward goes through TRL's fused LM head (per-token log-probs without the
  ``(batch, seq, vocab)`` logits), summed over completion tokens. By default, for the
  models it supports, a faster layout (see "the shared-prompt forward" below) scores a
  pair in one row with the prompt run once, to the same numbers up to float rounding;
  ``PAIRLAB_LOGPS_LAYOUT=trl`` keeps TRL's two rows.

The reference model never changes between the arms of an ablation, so its
log-probs are stored once on disk by :class:`RefLogpCache`, keyed by everything
that changes them (model weights, quantization, compute dtype, tokenizer and chat
template, ``max_length``, truncation mode); any later run on any subset of the
same pool reads them and computes only the pairs it lacks. Missing pairs are stored
chunk by chunk as they are computed, so an interrupted pass loses nothing; `pairlab
evaluate` stores a trained policy's log-probs the same way, under a key that adds the
adapter's content hash.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from .artifacts import cache_dir, text_sha256, write_json, write_parquet
from .schema import prompt_turns

#: Columns of :func:`sequence_logps`' result.
LOGP_COLUMNS = ["pair_id", "chosen_logps", "rejected_logps", "chosen_tokens", "rejected_tokens"]
#: Columns stored by :class:`RefLogpCache` (one row per pair).
REF_COLUMNS = ["pair_id", "ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"]
#: Bump when the way log-probs are computed changes, so old caches are not reused.
#: v2: CPU 4-bit layers stay off bitsandbytes' repacked inference kernel (see
#: :func:`pairlab.models.keep_4bit_weights_trainable`): every stored log-prob is computed on the
#: training kernel (generation alone switches, after every stored pass).
LOGP_METHOD_VERSION = "trl-1.16-fused-sum-v2"


# ---------------------------------------------------------------- tokenization (TRL's rule)

def tokenize_pair(tokenizer, prompt: list[dict[str, str]], chosen: str, rejected: str) -> dict[str, list[int]]:
    """Token ids of one conversational pair, split the way TRL's ``DPOTrainer`` splits them.

    Returns ``prompt_ids``, ``chosen_ids``, ``rejected_ids``. The completion starts where
    the tokenized prompt (with generation prompt) and prompt+completion diverge.
    """
    from trl.data_utils import _tokenize, common_prefix_length

    prompt = prompt_turns(prompt)
    kwargs = {"tools": None}  # what TRL passes for a dataset without a tools column
    prompt_ids = _tokenize(tokenizer, prompt, add_generation_prompt=True, **kwargs)["input_ids"]
    chosen_full = _tokenize(tokenizer, prompt + [{"role": "assistant", "content": chosen}], **kwargs)["input_ids"]
    rejected_full = _tokenize(tokenizer, prompt + [{"role": "assistant", "content": rejected}], **kwargs)["input_ids"]
    n = min(common_prefix_length(prompt_ids, chosen_full), common_prefix_length(prompt_ids, rejected_full))
    return {"prompt_ids": list(prompt_ids[:n]), "chosen_ids": list(chosen_full[n:]),
            "rejected_ids": list(rejected_full[n:])}


def tokenize_pairs(tokenizer, pairs: pd.DataFrame) -> list[dict[str, list[int]]]:
    """:func:`tokenize_pair` over a pairs table (``prompt``, ``chosen``, ``rejected`` columns)."""
    return [tokenize_pair(tokenizer, p, c, r)
            for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])]


# ---------------------------------------------------------------- truncation (TRL's rule)
#
# TRL 1.16 cuts each sequence (prompt + chosen, prompt + rejected) to ``max_length`` in its
# collator: ``keep_start`` (the default, and the only mode TRL keeps after v2) keeps the
# first ``max_length`` tokens, so a long prompt eats the completion; ``keep_end``
# (deprecated) keeps the last ones. In training, ``DPOTrainer._prepare_dataset`` drops a
# pair whose prompt alone reaches ``max_length`` under ``keep_start`` (no completion token
# would be left). Evaluation applies the same cut, so a pair with no completion token left
# is excluded, with a reason, instead of giving NaN log-probs; train and evaluate both count
# truncated and excluded pairs with the functions below (pure functions of token lengths).

#: Values of the per-pair ``truncated`` column.
TRUNCATION_KINDS = ("none", "prompt", "completion", "both")
#: max_length values ``pairlab inspect --model`` reports the truncated share at.
COMMON_MAX_LENGTHS = (256, 512, 1024, 2048, 4096)
#: train and evaluate warn when more than this share of pairs is truncated.
TRUNCATION_WARN_SHARE = 0.05
#: Token-length percentiles ``pairlab inspect --model`` reports.
LENGTH_PERCENTILES = (50, 90, 99)


def kept_tokens(prompt_tokens, completion_tokens, max_length: int | None,
                truncation_mode: str = "keep_start") -> dict[str, np.ndarray]:
    """What TRL's collator keeps of prompt + completion sequences (vectorised over sequences).

    Returns ``prompt_kept``, ``completion_kept`` and ``completion_scored``: the completion
    tokens whose log-prob is summed (TRL shifts the completion mask by one, so a kept first
    position never counts).
    """
    p = np.asarray(prompt_tokens, dtype=np.int64)
    c = np.asarray(completion_tokens, dtype=np.int64)
    n = p + c
    if max_length is None:
        start, end = np.zeros_like(n), n
    elif truncation_mode == "keep_start":
        start, end = np.zeros_like(n), np.minimum(n, max_length)
    elif truncation_mode == "keep_end":
        start, end = np.maximum(n - max_length, 0), n
    else:
        raise ValueError(f"unknown truncation_mode {truncation_mode!r}: keep_start or keep_end")
    return {"prompt_kept": np.clip(np.minimum(end, p) - start, 0, None),
            "completion_kept": np.clip(end - np.maximum(start, p), 0, None),
            "completion_scored": np.clip(end - np.maximum(start + 1, p), 0, None)}


def token_lengths(tokenized: list[dict[str, list[int]]], pair_ids: Iterable[str]) -> pd.DataFrame:
    """``pair_id, prompt_tokens, chosen_tokens, rejected_tokens`` before any truncation."""
    return pd.DataFrame({"pair_id": [str(p) for p in pair_ids],
                         "prompt_tokens": [len(t["prompt_ids"]) for t in tokenized],
                         "chosen_tokens": [len(t["chosen_ids"]) for t in tokenized],
                         "rejected_tokens": [len(t["rejected_ids"]) for t in tokenized]})


def truncation_table(lengths: pd.DataFrame, max_length: int | None,
                     truncation_mode: str = "keep_start") -> pd.DataFrame:
    """Per pair: how TRL truncates it at ``max_length``, and whether it can still be scored.

    ``lengths`` is :func:`token_lengths`' table. Adds ``truncated`` (one of
    :data:`TRUNCATION_KINDS`: which parts lost tokens on either sequence), ``chosen_scored``
    / ``rejected_scored`` (completion tokens left to score), ``scorable`` (both > 0) and
    ``excluded_reason`` (empty when scorable).
    """
    out = lengths.copy()
    prompt = out["prompt_tokens"].to_numpy()
    cut_prompt = np.zeros(len(out), dtype=bool)
    cut_completion = np.zeros(len(out), dtype=bool)
    for side in ("chosen", "rejected"):
        kept = kept_tokens(prompt, out[f"{side}_tokens"].to_numpy(), max_length, truncation_mode)
        cut_prompt |= kept["prompt_kept"] < prompt
        cut_completion |= kept["completion_kept"] < out[f"{side}_tokens"].to_numpy()
        out[f"{side}_scored"] = kept["completion_scored"]
    kind = np.where(cut_prompt & cut_completion, "both",
                    np.where(cut_prompt, "prompt", np.where(cut_completion, "completion", "none")))
    out["truncated"] = kind
    out["scorable"] = (out["chosen_scored"] > 0) & (out["rejected_scored"] > 0)
    fills = (truncation_mode == "keep_start") & (max_length is not None) & (prompt >= (max_length or 0))
    reason = np.where(
        fills, [f"prompt has {p} tokens >= max_length {max_length}: no completion token left "
                f"(TRL drops such pairs from training)" for p in prompt],
        "no completion token left after truncation to max_length")
    out["excluded_reason"] = np.where(out["scorable"], "", reason)
    return out


def truncation_counts(table: pd.DataFrame, max_length: int | None,
                      truncation_mode: str = "keep_start") -> dict[str, Any]:
    """How many pairs :func:`truncation_table` found truncated, by kind, and excluded (JSON-ready)."""
    n = int(len(table))
    by_kind = table["truncated"].value_counts()
    truncated = int(n - by_kind.get("none", 0))
    excluded = table.loc[~table["scorable"]]
    reasons = excluded["excluded_reason"].str.replace(r"prompt has \d+ tokens", "prompt has N tokens",
                                                       regex=True).value_counts()
    return {"max_length": max_length, "truncation_mode": truncation_mode, "pairs": n,
            "truncated": truncated, "truncated_share": round(truncated / n, 4) if n else 0.0,
            "by_kind": {k: int(by_kind.get(k, 0)) for k in TRUNCATION_KINDS},
            "excluded": int(len(excluded)), "scored": int(n - len(excluded)),
            "excluded_reasons": {str(k): int(v) for k, v in reasons.items()},
            "excluded_pair_ids": excluded["pair_id"].astype(str).head(20).tolist()}


def truncation_warning(counts: dict[str, Any], what: str = "pairs") -> str | None:
    """A one-line warning when more than :data:`TRUNCATION_WARN_SHARE` of pairs are truncated."""
    if counts["pairs"] == 0 or counts["truncated_share"] <= TRUNCATION_WARN_SHARE:
        return None
    return (f"{counts['truncated']} of {counts['pairs']} {what} ({100 * counts['truncated_share']:.1f}%) "
            f"are truncated at max_length {counts['max_length']} ({counts['truncation_mode']}: "
            f"{counts['by_kind']['prompt']} prompt only, {counts['by_kind']['completion']} completion only, "
            f"{counts['by_kind']['both']} both); {counts['excluded']} have no completion token left and "
            f"are excluded. See `pairlab inspect --model SPEC` to choose max_length.")


def length_profile(lengths: pd.DataFrame, max_lengths: Iterable[int] = COMMON_MAX_LENGTHS,
                   truncation_mode: str = "keep_start") -> dict[str, Any]:
    """Token-length percentiles of prompt / chosen / rejected / the longer sequence, and the
    share of pairs truncated and excluded at each ``max_length`` (``pairlab inspect --model``)."""
    sequences = lengths["prompt_tokens"] + lengths[["chosen_tokens", "rejected_tokens"]].max(axis=1)
    columns = {"prompt": lengths["prompt_tokens"], "chosen": lengths["chosen_tokens"],
               "rejected": lengths["rejected_tokens"], "prompt+longer completion": sequences}
    percentiles = {}
    for name, values in columns.items():
        values = values.to_numpy(dtype=float)
        row = {f"p{q}": (round(float(np.percentile(values, q)), 1) if len(values) else None)
               for q in LENGTH_PERCENTILES}
        row["max"] = int(values.max()) if len(values) else None
        percentiles[name] = row
    at = {}
    for max_length in max_lengths:
        counts = truncation_counts(truncation_table(lengths, max_length, truncation_mode),
                                   max_length, truncation_mode)
        n = max(counts["pairs"], 1)
        at[str(max_length)] = {"truncated": counts["truncated"],
                               "truncated_share": counts["truncated_share"],
                               "excluded": counts["excluded"],
                               "excluded_share": round(counts["excluded"] / n, 4)}
    return {"pairs": int(len(lengths)), "truncation_mode": truncation_mode, "percentiles": percentiles,
            "at_max_length": at}


def preference_collator(tokenizer, max_length: int | None, truncation_mode: str = "keep_start"):
    """TRL's own collator: [chosen..., rejected...] rows, right-padded, truncated per sequence."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    return DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id, max_length=max_length,
                                     truncation_mode=truncation_mode)


# ---------------------------------------------------------------- the forward

def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def ensure_fused_lm_head(model) -> None:
    """Give the model TRL's fused LM head once (what ``DPOTrainer`` does to its policy)."""
    from trl.trainer.utils import add_fused_lm_head

    base = _base_model(model)
    if not getattr(base, "_pairlab_fused_lm_head", False) and \
            getattr(base.forward, "__name__", "") != "_fused_forward":
        add_fused_lm_head(base)
        base._pairlab_fused_lm_head = True


def adapter_context(model, adapter: bool):
    """Adapter on (the policy) or off (the reference = the base model) for a peft model."""
    if adapter or not hasattr(model, "disable_adapter"):
        return contextlib.nullcontext()
    return model.disable_adapter()


def completion_logps(model, batch: dict[str, Any]):
    """Summed completion log-probs of a collated batch -> (chosen, rejected, chosen_tokens, rejected_tokens).

    The same computation as ``DPOTrainer.compute_ref_log_probs`` (without ``ld_alpha``).
    """
    import torch

    device = next(model.parameters()).device
    completion_mask = batch["completion_mask"].to(device)
    input_ids = batch["input_ids"].to(device)
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    with torch.no_grad(), trl_lm_head_chunk(device):
        out = model(input_ids=input_ids, attention_mask=batch["attention_mask"].to(device),
                    labels=labels, use_cache=False, fused_lm_head=True)
    shift_mask = completion_mask[..., 1:]
    logps = out.log_probs[:, -shift_mask.size(1):].sum(dim=1)
    tokens = shift_mask.sum(dim=1)
    chosen, rejected = logps.float().chunk(2, dim=0)
    chosen_tokens, rejected_tokens = tokens.chunk(2, dim=0)
    return chosen, rejected, chosen_tokens, rejected_tokens


# ---------------------------------------------------------------- the shared-prompt forward
#
# A pair's chosen and rejected completions follow the same prompt. TRL's layout runs
# the prompt twice (one row per completion) and, off CUDA, projects every position
# (prompt and padding too) through the LM head. The shared-prompt layout puts one pair
# in one row, ``prompt + chosen + rejected``: the rejected tokens attend to the prompt
# and to themselves (a block mask), and restart their positions where the prompt ends,
# so each completion token sees exactly the context it sees in TRL's layout. Only the
# completion tokens go through the LM head, with TRL's own chunked log-prob kernel.
# Same numbers up to float rounding (tests/test_logprobs_shared.py), fewer FLOPs:
# the prompt once instead of twice, no LM head on prompt or padding positions.

#: Decoder families whose attention takes a custom 4D mask and 1D ``position_ids`` as is
#: (plain causal attention, rotary or learned positions, no logit scaling); any other
#: model is scored in TRL's layout.
SHARED_PROMPT_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "smollm3",
                                       "granite", "gemma"})
_LOGIT_SCALING_FIELDS = ("final_logit_softcapping", "logit_scale", "output_multiplier",
                         "lm_head_multiplier", "logits_scaling")


def logps_layout() -> str:
    """``shared`` (the default, where :func:`shared_prompt_supported`) or ``trl``
    (``PAIRLAB_LOGPS_LAYOUT=trl``: every pass in TRL's layout).

    Measured on the bf16 kind (2 AVX512-BF16 cores, SmolLM2 4-bit, batch 16, interleaved):
    1.85x faster than TRL's layout on the demo's simulator pairs (prompts ~49 tokens,
    max_length 160: 21.6 s against 40.0 s for 96 pairs) and 1.35x on UltraFeedback rows
    (max_length 384: 24.6 s against 33.1 s for 32 pairs; 1.45x in fp32 compute). Its
    numbers are TRL's layout's up to float rounding: 3e-4 nats at most on fp32 dense weights;
    with the 4-bit kernel, whose own rounding dominates, both layouts are equally far from
    fp32 (median 1.0 nats on sums of ~350 in bf16). An earlier measurement on the AVX2 kind,
    under load, found 1.27x on simulator pairs and 0.96x on UltraFeedback rows. The layout
    is part of the reference cache's key.
    """
    layout = os.environ.get("PAIRLAB_LOGPS_LAYOUT", "shared")
    if layout not in ("trl", "shared"):
        raise ValueError(f"PAIRLAB_LOGPS_LAYOUT={layout!r}: use trl or shared")
    return layout


def config_supports_shared(config, truncation_mode: str = "keep_start") -> bool:
    """Whether :func:`shared_prompt_logps` computes the numbers of a model with this config."""
    if truncation_mode != "keep_start" or config is None:
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if text.model_type not in SHARED_PROMPT_MODEL_TYPES or config is not text:
        return False
    if getattr(text, "_attn_implementation", None) not in (None, "sdpa", "eager"):
        return False
    return all(getattr(text, f, None) in (None, 1, 1.0) for f in _LOGIT_SCALING_FIELDS)


def shared_prompt_supported(model, truncation_mode: str = "keep_start") -> bool:
    """Whether :func:`shared_prompt_logps` computes this model's numbers and is enabled."""
    return logps_layout() == "shared" and config_supports_shared(_base_model(model).config, truncation_mode)


def stored_layout(config, truncation_mode: str = "keep_start", *, device: str, quantization: str,
                  ld_alpha: float | None = None) -> str:
    """The layout of every log-prob pass stored under one reference-cache key: ``shared`` or ``trl``.

    ``shared`` only where pairlab computes every reference pass itself (CPU, 4-bit or full
    precision, no LD-DPO: training's prefill, evaluation, audit) and the model supports it.
    Elsewhere (CUDA, LD-DPO) the trainer computes the training reference in TRL's own
    layout, so every reader and writer of that key uses TRL's layout too. ``config``: the
    model's transformers config (None: unknown, so ``trl``).
    """
    if logps_layout() != "shared" or not str(device).startswith("cpu") or quantization not in ("4bit", "none") \
            or ld_alpha is not None:
        return "trl"
    return "shared" if config_supports_shared(config, truncation_mode) else "trl"


def model_config(spec: str, options: dict[str, Any] | None = None):
    """The transformers config of a model spec, read from local files only (None if unavailable)."""
    from transformers import AutoConfig

    from .models import resolve_model

    try:
        config = AutoConfig.from_pretrained(resolve_model(spec).path, local_files_only=True,
                                            trust_remote_code=False,
                                            revision=(options or {}).get("model_revision"))
    except Exception:  # noqa: BLE001 - a remote-code or hub-only model: TRL's layout
        return None
    attn = (options or {}).get("attn_implementation")
    if attn:
        config._attn_implementation = attn
    return config


def shared_prompt_batch(examples: list[dict[str, list[int]]], pad_token_id: int,
                        max_length: int | None) -> dict[str, Any]:
    """One row per pair, ``prompt + chosen + rejected``, with its block mask and positions.

    Truncation is TRL's ``keep_start`` per sequence: each completion keeps its first
    ``max_length - prompt`` tokens. Returns ``input_ids``, ``position_ids`` (B, L),
    ``segments`` (B, L: 0 prompt, 1 chosen, 2 rejected, -1 padding) and, per scored
    token, ``row``, ``source`` (the position whose hidden state predicts it), ``label``
    and ``side`` (0 chosen, 1 rejected).
    """
    import torch

    rows, positions, segments = [], [], []
    row_idx, source, label, side = [], [], [], []
    for b, ex in enumerate(examples):
        p = ex["prompt_ids"]
        if max_length is not None:
            p = p[:max_length]
        room = None if max_length is None else max(0, max_length - len(p))
        c, r = ex["chosen_ids"][:room], ex["rejected_ids"][:room]
        n_p, n_c, n_r = len(p), len(c), len(r)
        rows.append(p + c + r)
        positions.append(list(range(n_p)) + list(range(n_p, n_p + n_c)) + list(range(n_p, n_p + n_r)))
        segments.append([0] * n_p + [1] * n_c + [2] * n_r)
        # Token t of a completion is predicted by the hidden state before it: the prompt's
        # last position for t = 0 (TRL's shifted mask never scores a row's first token,
        # so a completion with no prompt before it loses its first token there too).
        for s, (start, n) in enumerate(((n_p, n_c), (n_p + n_c, n_r))):
            first = 0 if n_p > 0 else 1
            for t in range(first, n):
                row_idx.append(b)
                source.append(n_p - 1 if t == 0 else start + t - 1)
                label.append(rows[-1][start + t])
                side.append(s)
    width = max(len(r) for r in rows)

    def pad(seqs, value):
        return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)

    return {"input_ids": pad(rows, pad_token_id), "position_ids": pad(positions, 0),
            "segments": pad(segments, -1), "row": torch.tensor(row_idx, dtype=torch.long),
            "source": torch.tensor(source, dtype=torch.long), "label": torch.tensor(label, dtype=torch.long),
            "side": torch.tensor(side, dtype=torch.long), "pairs": len(examples)}


def _block_mask(segments, dtype, eager: bool):
    """(B, 1, L, L) attention mask: causal, and a completion sees the prompt and itself only."""
    import torch

    idx = torch.arange(segments.size(1))
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]
    allowed = (idx[None, :, None] >= idx[None, None, :]) & ((seg_k == seg_q) | (seg_k == 0)) \
        & (seg_k >= 0) & (seg_q >= 0)
    allowed |= torch.eye(segments.size(1), dtype=torch.bool)[None] & (seg_q < 0)  # padding: itself only (no NaN)
    allowed = allowed[:, None]
    if not eager:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


#: Vocabulary rows per tile of TRL's chunked LM-head kernel where pairlab calls it on a CPU.
#: TRL's 32,768 suits its Triton kernel; off Triton the kernel's torch fallback holds several
#: fp32 (tokens x chunk) tiles and an fp32 copy of the (chunk x hidden) weight slice at once,
#: which at 32,768 was the peak of a CPU training step (about 1.2 GB above the step's baseline
#: for 1,200 scored tokens of SmolLM2-135M, against 0.1 GB at 4,096; ``make bench``:
#: ``bench_lm_head_chunk``). The sums are the same up to float rounding (fp32 accumulation in
#: another order).
CPU_LM_HEAD_CHUNK = 4096


def lm_head_chunk(device) -> int:
    """The chunked LM-head kernel's vocabulary tile for ``device``: :data:`CPU_LM_HEAD_CHUNK`
    on a CPU (``PAIRLAB_LM_HEAD_CHUNK=N``, a positive integer, overrides it), TRL's own elsewhere."""
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    if getattr(device, "type", str(device)) != "cpu":
        return _CHUNKED_LOGPROB_CHUNK_SIZE
    value = os.environ.get("PAIRLAB_LM_HEAD_CHUNK", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else CPU_LM_HEAD_CHUNK


@contextlib.contextmanager
def trl_lm_head_chunk(device):
    """TRL's own fused LM head (``model(..., fused_lm_head=True)``, TRL's layout) with
    :func:`lm_head_chunk`'s tile while the block runs (TRL reads its tile size at each call and
    keeps it for that call's backward)."""
    import trl.trainer.utils as trl_utils

    saved = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = lm_head_chunk(device)
    try:
        yield
    finally:
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = saved


def _shared_prompt_per_token(model, batch: dict[str, Any], outputs: tuple[str, ...] = ("log_probs",)):
    """The backbone over a :func:`shared_prompt_batch` batch, then TRL's chunked LM-head kernel on
    the scored tokens only: its tuple (log_probs, entropy, log_sum_sq_probs, mean_logits,
    is_top1), one value per scored token, the fields not in ``outputs`` None."""
    import torch
    from trl.kernels import ChunkedLogProbFunction

    base = _base_model(model)
    backbone = getattr(base, "base_model", None) or base.model
    lm_head = base.get_output_embeddings()
    device = lm_head.weight.device
    eager = getattr(base.config, "_attn_implementation", "sdpa") == "eager"
    mask = _block_mask(batch["segments"], lm_head.weight.dtype if eager else torch.bool, eager)
    hidden = backbone(input_ids=batch["input_ids"].to(device), attention_mask=mask.to(device),
                      position_ids=batch["position_ids"].to(device), use_cache=False).last_hidden_state
    picked = hidden[batch["row"].to(device), batch["source"].to(device)]
    return ChunkedLogProbFunction.apply(picked, lm_head.weight, lm_head.bias, batch["label"].to(device),
                                        1.0, lm_head_chunk(device), None, 1.0, outputs)


def shared_prompt_logps(model, batch: dict[str, Any], *, grad: bool = False):
    """:func:`completion_logps`' four tensors from a :func:`shared_prompt_batch` batch
    (``grad=True``: with the graph kept, for per-pair gradients: one row is one pair)."""
    import contextlib

    import torch

    device = _base_model(model).get_output_embeddings().weight.device
    with contextlib.nullcontext() if grad else torch.no_grad():
        per_token = _shared_prompt_per_token(model, batch)[0]
    n = batch["pairs"]
    slot = (batch["row"] * 2 + batch["side"]).to(device)
    sums = torch.zeros(2 * n, dtype=torch.float32, device=device).index_add_(0, slot, per_token.float())
    counts = torch.zeros(2 * n, dtype=torch.long, device=device).index_add_(0, slot, torch.ones_like(slot))
    sums, counts = sums.view(n, 2), counts.view(n, 2)
    return sums[:, 0], sums[:, 1], counts[:, 0], counts[:, 1]


def trl_rows_as_shared(input_ids, attention_mask, labels, pad_token_id: int):
    """A TRL preference batch (rows ``[chosen..., rejected...]``, each ``prompt + completion``,
    right-padded; ``labels`` -100 outside the completions) as a :func:`shared_prompt_batch`,
    plus, per scored token, its (row, column) in TRL's shifted per-token tensors.

    None where the batch is not of that form (an odd row count, a prompt that differs
    between a pair's two rows, a completion that is not one block after its prompt): the
    caller then runs TRL's own forward.
    """
    if attention_mask is None or input_ids.dim() != 2 or input_ids.size(0) % 2:
        return None
    n = input_ids.size(0) // 2
    ids = input_ids.tolist()
    real = attention_mask.bool().tolist()
    scored = (labels != -100).tolist()
    examples = []
    for j in range(n):
        parts = []
        for row in (j, n + j):
            prompt = [t for t, r, c in zip(ids[row], real[row], scored[row]) if r and not c]
            completion = [t for t, c in zip(ids[row], scored[row]) if c]
            n_real = sum(real[row])
            # the prompt first, then the completion, then padding: TRL's right-padded rows
            if not all(real[row][:n_real]) or any(scored[row][:len(prompt)]) \
                    or not all(scored[row][len(prompt):len(prompt) + len(completion)]):
                return None
            parts.append((prompt, completion))
        if parts[0][0] != parts[1][0]:
            return None
        examples.append({"prompt_ids": parts[0][0], "chosen_ids": parts[0][1], "rejected_ids": parts[1][1]})
    batch = shared_prompt_batch(examples, pad_token_id, None)
    # A scored token's source position (the hidden state predicting it) carries the position
    # id it has in its TRL row, which is the token's column in TRL's shifted tensors.
    batch["trl_row"] = batch["side"] * n + batch["row"]
    batch["trl_col"] = batch["position_ids"][batch["row"], batch["source"]]
    return batch


def shared_prompt_fused_forward(model, input_ids, attention_mask, labels, pad_token_id: int,
                                outputs: tuple[str, ...] = ("log_probs",)):
    """What ``model(input_ids, attention_mask=..., labels=..., fused_lm_head=True)`` returns for a
    TRL preference batch (TRL's ``FusedCausalLMOutput``, per-token fields of shape (2B, L - 1),
    zero off the completions), computed in the shared-prompt layout: each pair's prompt runs
    once and only completion tokens reach the LM head. The graph is kept (training).

    None where :func:`trl_rows_as_shared` cannot lay the batch out (use the model itself).
    """
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    batch = trl_rows_as_shared(input_ids, attention_mask, labels, pad_token_id)
    if batch is None:
        return None
    fields = _shared_prompt_per_token(model, batch, outputs)
    device = fields[0].device
    rows, cols = batch["trl_row"].to(device), batch["trl_col"].to(device)
    shape = (input_ids.size(0), input_ids.size(1) - 1)

    def place(values):
        if values is None:
            return None
        return values.new_zeros(shape).index_put((rows, cols), values)

    log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (place(x) for x in fields)
    mask = (labels[:, 1:] != -100).to(device)
    loss = -log_probs.sum() / mask.sum().clamp(min=1)
    return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq_probs,
                               mean_logits=mean_logits, is_top1=is_top1, label_mask=mask)


def length_order(tokenized: list[dict[str, list[int]]], shared_prompt: bool = False) -> np.ndarray:
    """Indices longest-first, so each batch pads to similar lengths (and OOM shows up first).

    The row length is prompt + the longer completion in TRL's layout, prompt + both
    completions in the shared-prompt one."""
    if shared_prompt:
        lengths = [len(t["prompt_ids"]) + len(t["chosen_ids"]) + len(t["rejected_ids"]) for t in tokenized]
    else:
        lengths = [len(t["prompt_ids"]) + max(len(t["chosen_ids"]), len(t["rejected_ids"])) for t in tokenized]
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


#: Pairs per saved chunk: :func:`sequence_logps` hands finished rows to ``on_chunk`` this
#: often, so a long pass that fails or is interrupted keeps what it computed.
LOGP_CHUNK_PAIRS = 64


def sequence_logps(model, tokenizer, pairs: pd.DataFrame, *, max_length: int | None = 256,
                   truncation_mode: str = "keep_start", batch_size: int = 8,
                   adapter: bool = True, progress: bool | str = False,
                   tokenized: list[dict[str, list[int]]] | None = None,
                   on_chunk=None, chunk_pairs: int = LOGP_CHUNK_PAIRS,
                   layout: str | None = None) -> pd.DataFrame:
    """Per-pair summed completion log-probs of ``model`` on a pairs table.

    Parameters
    ----------
    model : a causal LM, or a peft model (``adapter=False`` disables its adapter: the reference).
    tokenizer : its tokenizer (chat template and pad token set).
    pairs : a pairs table (``pair_id``, ``prompt`` messages, ``chosen``, ``rejected``).
    max_length, truncation_mode : as in ``DPOConfig``; prompt+completion is cut per sequence.
    batch_size : pairs per forward (each forward holds 2 x batch_size sequences).
    adapter : keep the adapter on (policy) or off (reference).
    progress : show a tqdm bar over pairs (with an ETA); a string is its description.
    tokenized : :func:`tokenize_pairs` of ``pairs`` when the caller already has it.
    on_chunk : called with each chunk of finished rows (:data:`LOGP_COLUMNS`, about
        ``chunk_pairs`` pairs) as soon as it is done, e.g. to store it in a cache.
    layout : ``trl`` or ``shared`` (a cache's :attr:`RefLogpCache.layout`: what its key says);
        None: the shared-prompt layout where :func:`shared_prompt_supported`.

    Returns
    -------
    DataFrame with :data:`LOGP_COLUMNS`, in the order of ``pairs``. ``*_tokens`` are the
    completion tokens left after truncation. A pair with none left (its prompt fills
    ``max_length``) gets NaN log-probs and 0 tokens without a forward pass.
    """
    tokenized = tokenize_pairs(tokenizer, pairs) if tokenized is None else tokenized
    pair_ids = pairs["pair_id"].astype(str).to_numpy()
    if layout is None:
        shared = shared_prompt_supported(model, truncation_mode)
    elif layout in ("trl", "shared"):
        shared = layout == "shared"
        if shared and not config_supports_shared(_base_model(model).config, truncation_mode):
            raise ValueError("the shared-prompt layout does not support this model")
    else:
        raise ValueError(f"unknown log-prob layout {layout!r}")
    if shared:
        def collate(examples):
            return shared_prompt_batch(examples, tokenizer.pad_token_id, max_length)
        forward = shared_prompt_logps
    else:
        collate = preference_collator(tokenizer, max_length, truncation_mode)
        ensure_fused_lm_head(model)
        forward = completion_logps
    n = len(tokenized)
    chosen = np.full(n, np.nan)
    rejected = np.full(n, np.nan)
    chosen_tokens = np.zeros(n, dtype=np.int64)
    rejected_tokens = np.zeros(n, dtype=np.int64)
    scorable = truncation_table(token_lengths(tokenized, pair_ids), max_length, truncation_mode)["scorable"]
    order = [i for i in length_order(tokenized, shared) if scorable.iloc[i]]
    pending = [i for i in range(n) if not scorable.iloc[i]]  # nothing to compute: NaN, 0 tokens

    def flush(force: bool = False) -> None:
        if on_chunk is not None and pending and (force or len(pending) >= chunk_pairs):
            idx = np.asarray(pending)
            on_chunk(pd.DataFrame({"pair_id": pair_ids[idx], "chosen_logps": chosen[idx],
                                   "rejected_logps": rejected[idx], "chosen_tokens": chosen_tokens[idx],
                                   "rejected_tokens": rejected_tokens[idx]}))
            pending.clear()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=progress if isinstance(progress, str) else "log-probs", unit="pair",
                   disable=bool(os.environ.get("TQDM_DISABLE", "")))
        bar.update(n - len(order))
    was_training = model.training
    model.eval()
    try:
        with adapter_context(model, adapter):
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                c, r, ct, rt = forward(model, collate([tokenized[i] for i in idx]))
                chosen[idx], rejected[idx] = c.cpu().numpy(), r.cpu().numpy()
                chosen_tokens[idx], rejected_tokens[idx] = ct.cpu().numpy(), rt.cpu().numpy()
                pending.extend(idx)
                if bar is not None:
                    bar.update(len(idx))
                flush()
        flush(force=True)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    chosen[chosen_tokens == 0] = np.nan
    rejected[rejected_tokens == 0] = np.nan
    return pd.DataFrame({"pair_id": pair_ids, "chosen_logps": chosen,
                         "rejected_logps": rejected, "chosen_tokens": chosen_tokens,
                         "rejected_tokens": rejected_tokens})


def _as_ref_rows(logps: pd.DataFrame) -> pd.DataFrame:
    return logps.rename(columns={"chosen_logps": "ref_chosen_logps", "rejected_logps": "ref_rejected_logps"})


def cached_sequence_logps(model, tokenizer, pairs: pd.DataFrame, cache: "RefLogpCache | None", *,
                          tokenized: list[dict[str, list[int]]] | None = None,
                          **kwargs) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`sequence_logps` through an on-disk cache: stored pairs are read, missing ones
    computed (under the cache's lock, see :meth:`RefLogpCache.fill`) and stored chunk by
    chunk as they finish, so a rerun after a failure or an interrupt recomputes none of
    them. Returns (:data:`LOGP_COLUMNS` table in the order of ``pairs``, stats: pairs,
    cache_hits, computed, forward_batches)."""
    ids = pairs["pair_id"].astype(str)
    batch_size = kwargs.get("batch_size", 8)
    stats: dict[str, Any] = {"enabled": cache is not None, "dir": None if cache is None else str(cache.dir),
                             "key": None if cache is None else cache.key, "pairs": len(ids),
                             "cache_hits": len(ids), "computed": 0, "forward_batches": 0}

    def compute(missing: list[str]) -> pd.DataFrame:
        rows = ids.isin(set(missing)).to_numpy()
        subset = None if tokenized is None else [t for t, keep in zip(tokenized, rows) if keep]
        store = None if cache is None else (lambda chunk: cache.put(_as_ref_rows(chunk)))
        logps = sequence_logps(model, tokenizer, pairs[rows], tokenized=subset, on_chunk=store, **kwargs)
        stats["computed"] = len(logps)
        stats["cache_hits"] = len(ids) - len(logps)
        stats["forward_batches"] = int(math.ceil(int((logps["chosen_tokens"] > 0).sum()) / batch_size))
        return logps

    if cache is None:
        table = compute(list(ids))
        return table.set_index("pair_id").loc[list(ids)].reset_index()[LOGP_COLUMNS], stats
    cache.fill(ids, lambda missing: _as_ref_rows(compute(missing)))
    table = cache.get(list(ids)).rename(columns={"ref_chosen_logps": "chosen_logps",
                                                 "ref_rejected_logps": "rejected_logps"})
    return table[LOGP_COLUMNS], stats


# ---------------------------------------------------------------- the reference cache

def ref_cache_key_fields(*, model_fingerprint: dict[str, str], compute_dtype: Any, tokenizer,
                         max_length: int | None, truncation_mode: str = "keep_start",
                         ld_alpha: float | None = None, adapter_sha256: str | None = None,
                         layout: str) -> dict[str, Any]:
    """Everything that changes a pair's reference log-probs (the pair itself aside).

    With ``adapter_sha256`` (a trained adapter's content hash) the same key describes that
    policy's log-probs, which `pairlab evaluate` stores in the same cache as it computes them.
    """
    adapter = {} if adapter_sha256 is None else {"adapter_sha256": adapter_sha256}
    return {**adapter,
        "method": LOGP_METHOD_VERSION if layout == "trl" else f"{LOGP_METHOD_VERSION}-shared-prompt",
        "model": model_fingerprint,
        "compute_dtype": str(compute_dtype).replace("torch.", ""),
        "tokenizer": getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
        "vocab_size": len(tokenizer),
        "chat_template_sha256": text_sha256(str(getattr(tokenizer, "chat_template", "") or "")),
        "pad_token_id": tokenizer.pad_token_id,
        "max_length": max_length,
        "truncation_mode": truncation_mode,
        "ld_alpha": ld_alpha,
    }


class RefLogpCache:
    """On-disk reference log-probs, one row per ``pair_id``, under ``ROOT/<key>/``.

    ``ROOT`` defaults to ``$PAIRLAB_CACHE/ref_logps``; ``key`` hashes ``key_fields``
    (see :func:`ref_cache_key_fields`), which are also written to ``key.json``.

    Writers only ever add new shard files (``shard-<time>-<pid>-<rand>.parquet``, written
    atomically), and readers read every shard, so a reader never sees a half-written
    shard. :meth:`fill` adds an exclusive lock (``ROOT/<key>/.lock``, ``fcntl`` through
    ``filelock``) around "which pairs are missing -> compute them -> store them", so
    processes filling the same cache at once compute each pair once: the second one
    waits, then finds the pairs stored. (Without :meth:`fill`, at worst both compute a
    pair, and the first stored value wins on read.)
    """

    def __init__(self, key_fields: dict[str, Any], root: str | os.PathLike | None = None):
        self.key_fields = dict(key_fields)
        #: the layout its values are computed in (see :func:`stored_layout`)
        self.layout = "shared" if str(self.key_fields.get("method", "")).endswith("-shared-prompt") else "trl"
        self.key = text_sha256(json.dumps(self.key_fields, sort_keys=True, default=str))[:20]
        self.dir = Path(root if root is not None else cache_dir() / "ref_logps") / self.key
        self._table: pd.DataFrame | None = None
        self._seen_shards: set[str] = set()

    def _shards(self) -> list[Path]:
        if not self.dir.exists():
            return []
        return sorted(p for p in self.dir.glob("shard-*.parquet"))

    def table(self) -> pd.DataFrame:
        """All stored rows (first value per pair_id), re-reading only shards not seen yet."""
        new = [p for p in self._shards() if p.name not in self._seen_shards]
        if new or self._table is None:
            parts = [] if self._table is None else [self._table]
            parts += [pd.read_parquet(p) for p in new]
            self._seen_shards.update(p.name for p in new)
            table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REF_COLUMNS)
            self._table = table.drop_duplicates("pair_id", keep="first").reset_index(drop=True)
        return self._table

    def __len__(self) -> int:
        return len(self.table())

    def missing(self, pair_ids: Iterable[str]) -> list[str]:
        """The pair_ids not yet stored, unique, in first-seen order."""
        have = set(self.table()["pair_id"])
        return list(dict.fromkeys(p for p in pair_ids if p not in have))

    def get(self, pair_ids: Iterable[str]) -> pd.DataFrame:
        """Stored rows for ``pair_ids`` in that order; KeyError naming the first missing one."""
        pair_ids = list(pair_ids)
        indexed = self.table().set_index("pair_id")
        lacking = [p for p in pair_ids if p not in indexed.index]
        if lacking:
            raise KeyError(f"{len(lacking)} pair(s) not in reference cache {self.dir}, e.g. {lacking[0]}")
        return indexed.loc[pair_ids].reset_index()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this cache key's lock (across processes and machines sharing the file system)."""
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / ".lock")):
            self._table = None  # another holder may have added shards meanwhile
            self._seen_shards.clear()
            yield

    def fill(self, pair_ids: Iterable[str], compute: Callable[[list[str]], pd.DataFrame]) -> int:
        """Compute and store the pairs of ``pair_ids`` not stored yet; return how many this call computed.

        ``compute(missing_ids)`` returns :data:`REF_COLUMNS` rows for those ids. It runs
        under :meth:`lock`, so a concurrent ``fill`` over overlapping pairs waits and then
        computes only what is still missing: each pair is computed once.
        """
        pair_ids = list(pair_ids)
        if not self.missing(pair_ids):  # the common case (a warm cache) takes no lock
            return 0
        with self.lock():
            missing = self.missing(pair_ids)
            if not missing:
                return 0
            self.put(compute(missing))
            return len(missing)

    def put(self, rows: pd.DataFrame) -> Path | None:
        """Store new rows (:data:`REF_COLUMNS`) as one new shard; rows already stored are skipped."""
        rows = rows[REF_COLUMNS]
        rows = rows[rows["pair_id"].isin(self.missing(rows["pair_id"]))]
        if rows.empty:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / "key.json"
        if not key_file.exists():
            write_json(key_file, self.key_fields)
        name = f"shard-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        known = self.table()
        path = write_parquet(self.dir / name, rows.reset_index(drop=True))
        # Ours is known without re-reading it (chunked writers put often); anyone else's new
        # shards are picked up by the next table().
        self._seen_shards.add(name)
        self._table = pd.concat([known, rows], ignore_index=True).drop_duplicates("pair_id", keep="first")
        return path
