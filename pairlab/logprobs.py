"""Per-pair sequence log-probs of a model on preference pairs, and the reference cache.

Train, evaluate and audit all need the same number for a pair: the summed log-prob
of the chosen and of the rejected completion given the prompt, under a model (the
policy with its LoRA adapter, or the reference = the same base with the adapter
disabled). This module computes it exactly the way TRL's ``DPOTrainer`` does, so
numbers from different stages can be compared and cached:

* tokenization is TRL's conversational rule (prompt with the generation prompt,
  prompt+completion through the chat template, completion = where they diverge);
* batches are built by TRL's own ``DataCollatorForPreference`` (same ``max_length``
  truncation, ``keep_start`` by default);
* the forward goes through TRL's fused LM head (per-token log-probs without the
  ``(batch, seq, vocab)`` logits), summed over completion tokens.

The reference model never changes between the arms of an ablation, so its
log-probs are stored once on disk by :class:`RefLogpCache`, keyed by everything
that changes them (model weights, quantization, compute dtype, tokenizer and chat
template, ``max_length``, truncation mode); any later run on any subset of the
same pool reads them and computes only the pairs it lacks.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .artifacts import cache_dir, text_sha256, write_json, write_parquet
from .schema import as_messages

#: Columns of :func:`sequence_logps`' result.
LOGP_COLUMNS = ["pair_id", "chosen_logps", "rejected_logps", "chosen_tokens", "rejected_tokens"]
#: Columns stored by :class:`RefLogpCache` (one row per pair).
REF_COLUMNS = ["pair_id", "ref_chosen_logps", "ref_rejected_logps", "chosen_tokens", "rejected_tokens"]
#: Bump when the way log-probs are computed changes, so old caches are not reused.
LOGP_METHOD_VERSION = "trl-1.16-fused-sum-v1"


# ---------------------------------------------------------------- tokenization (TRL's rule)

def tokenize_pair(tokenizer, prompt: list[dict[str, str]], chosen: str, rejected: str) -> dict[str, list[int]]:
    """Token ids of one conversational pair, split the way TRL's ``DPOTrainer`` splits them.

    Returns ``prompt_ids``, ``chosen_ids``, ``rejected_ids``. The completion starts where
    the tokenized prompt (with generation prompt) and prompt+completion diverge.
    """
    from trl.data_utils import _tokenize, common_prefix_length

    prompt = as_messages(prompt)
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
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=batch["attention_mask"].to(device),
                    labels=labels, use_cache=False, fused_lm_head=True)
    shift_mask = completion_mask[..., 1:]
    logps = out.log_probs[:, -shift_mask.size(1):].sum(dim=1)
    tokens = shift_mask.sum(dim=1)
    chosen, rejected = logps.float().chunk(2, dim=0)
    chosen_tokens, rejected_tokens = tokens.chunk(2, dim=0)
    return chosen, rejected, chosen_tokens, rejected_tokens


def length_order(tokenized: list[dict[str, list[int]]]) -> np.ndarray:
    """Indices longest-first, so each batch pads to similar lengths (and OOM shows up first)."""
    lengths = [len(t["prompt_ids"]) + max(len(t["chosen_ids"]), len(t["rejected_ids"])) for t in tokenized]
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def sequence_logps(model, tokenizer, pairs: pd.DataFrame, *, max_length: int | None = 256,
                   truncation_mode: str = "keep_start", batch_size: int = 8,
                   adapter: bool = True, progress: bool = False) -> pd.DataFrame:
    """Per-pair summed completion log-probs of ``model`` on a pairs table.

    Parameters
    ----------
    model : a causal LM, or a peft model (``adapter=False`` disables its adapter: the reference).
    tokenizer : its tokenizer (chat template and pad token set).
    pairs : a pairs table (``pair_id``, ``prompt`` messages, ``chosen``, ``rejected``).
    max_length, truncation_mode : as in ``DPOConfig``; prompt+completion is cut per sequence.
    batch_size : pairs per forward (each forward holds 2 x batch_size sequences).
    adapter : keep the adapter on (policy) or off (reference).

    Returns
    -------
    DataFrame with :data:`LOGP_COLUMNS`, in the order of ``pairs``. ``*_tokens`` are the
    completion tokens left after truncation; a pair with none gets NaN log-probs.
    """
    tokenized = tokenize_pairs(tokenizer, pairs)
    collate = preference_collator(tokenizer, max_length, truncation_mode)
    ensure_fused_lm_head(model)
    order = length_order(tokenized)
    n = len(tokenized)
    chosen = np.full(n, np.nan)
    rejected = np.full(n, np.nan)
    chosen_tokens = np.zeros(n, dtype=np.int64)
    rejected_tokens = np.zeros(n, dtype=np.int64)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="log-probs", unit="batch")
    was_training = model.training
    model.eval()
    try:
        with adapter_context(model, adapter):
            for start in starts:
                idx = order[start:start + batch_size]
                c, r, ct, rt = completion_logps(model, collate([tokenized[i] for i in idx]))
                chosen[idx], rejected[idx] = c.cpu().numpy(), r.cpu().numpy()
                chosen_tokens[idx], rejected_tokens[idx] = ct.cpu().numpy(), rt.cpu().numpy()
    finally:
        model.train(was_training)
    chosen[chosen_tokens == 0] = np.nan
    rejected[rejected_tokens == 0] = np.nan
    return pd.DataFrame({"pair_id": pairs["pair_id"].astype(str).to_numpy(), "chosen_logps": chosen,
                         "rejected_logps": rejected, "chosen_tokens": chosen_tokens,
                         "rejected_tokens": rejected_tokens})


# ---------------------------------------------------------------- the reference cache

def ref_cache_key_fields(*, model_fingerprint: dict[str, str], compute_dtype: Any, tokenizer,
                         max_length: int | None, truncation_mode: str = "keep_start",
                         ld_alpha: float | None = None) -> dict[str, Any]:
    """Everything that changes a pair's reference log-probs (the pair itself aside)."""
    return {
        "method": LOGP_METHOD_VERSION,
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
    atomically), and readers read every shard, so two runs filling the same cache at once
    are safe: at worst both compute a pair, and the first stored value wins on read.
    """

    def __init__(self, key_fields: dict[str, Any], root: str | os.PathLike | None = None):
        self.key_fields = dict(key_fields)
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
        path = write_parquet(self.dir / name, rows.reset_index(drop=True))
        self._table = None  # re-read (ours and anyone else's) on next access
        self._seen_shards.clear()
        return path
