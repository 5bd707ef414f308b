"""``PairlabDPOTrainer``: TRL's DPOTrainer plus the shared reference cache and per-pair dynamics.

Three small overrides, each where TRL does the thing we change:

* ``_precompute_ref_logps``: TRL 1.16 only reads ``ref_*_logps`` columns it computed
  itself (cached per dataset fingerprint, so another subset recomputes everything).
  Ours looks every pair up in :class:`~pairlab.logprobs.RefLogpCache`, runs TRL's own
  ``compute_ref_log_probs`` (adapter disabled) on the missing pairs only, longest
  first, stores them, and adds the columns TRL's loss then reads.
* ``compute_loss``: pops ``pair_index`` (TRL would hand it to the model), lets TRL
  compute the loss, and records per-pair dynamics from the per-token log-probs the
  policy forward already produced (captured by a forward hook: no extra pass).
* ``policy_layout="shared"`` (CPU, where the cached reference is in the shared-prompt
  layout, one process): ``compute_loss`` hands TRL's loss a stand-in for the model that
  returns the same fused-head output from :func:`~pairlab.logprobs.shared_prompt_fused_forward`
  (under the accelerator's autocast, as the model's own forward runs), one row per pair
  with the prompt once, so the policy is scored as its reference was and each step runs
  fewer tokens. TRL's loss, metrics and optimizer are untouched; a batch it cannot lay
  out runs TRL's forward.
* ``_save_checkpoint``: writes ``dynamics.parquet`` into each checkpoint, last, so a
  checkpoint with it is complete and a resumed run continues complete dynamics.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from ..artifacts import write_json, write_parquet
from ..dirs import RunDir
from ..logprobs import REF_COLUMNS, RefLogpCache
from ..preference import weighted_dpo_losses
from .dynamics import DynamicsRecorder

DYNAMICS_FILE = RunDir.DYNAMICS  # also in each checkpoint folder


class PairIndexCollator(DataCollatorForPreference):
    """TRL's preference collator that also carries each example's ``pair_index`` as a tensor."""

    def torch_call(self, examples):
        output = super().torch_call(examples)
        if "pair_index" in examples[0]:
            output["pair_index"] = torch.tensor([int(e["pair_index"]) for e in examples], dtype=torch.long)
        return output


@contextlib.contextmanager
def _without_model_hash(skip: bool):
    """TRL hashes every weight of the model at construction (each tensor copied to float32,
    then to bytes) to name its own reference-log-prob cache. With pairlab's cache that hash is
    never read (``_precompute_ref_logps`` below does not call TRL's), and the copies cost a
    4-bit run at SmolLM2-1.7B's shape ~600 MB of resident memory the allocator keeps, plus
    seconds of SHA-256. Skipped then."""
    if not skip:
        yield
        return
    from trl.trainer import dpo_trainer

    original = dpo_trainer.hash_module
    dpo_trainer.hash_module = lambda module: "pairlab-ref-cache: not hashed"
    try:
        yield
    finally:
        dpo_trainer.hash_module = original


class PairlabDPOTrainer(DPOTrainer):
    def __init__(self, *args, pair_ids: list[str], ref_cache: RefLogpCache | None = None,
                 policy_layout: str = "trl", resume_identity: dict | None = None, **kwargs):
        # Set before super().__init__, which calls _precompute_ref_logps.
        if policy_layout not in ("trl", "shared"):
            raise ValueError(f"unknown policy layout {policy_layout!r}")
        self.pair_ids = list(pair_ids)
        self.ref_cache = ref_cache
        self.resume_identity = resume_identity
        self.ref_stats = {"pairs": 0, "cache_hits": 0, "computed": 0, "forward_batches": 0, "precompute_s": 0.0}
        self._capturing = False
        self._captured: list[torch.Tensor] = []
        self._micro = (None, 0)  # (step, micro-batch count within it)
        if kwargs.get("data_collator") is None:
            dpo_args, tokenizer = kwargs["args"], kwargs["processing_class"]
            kwargs["data_collator"] = PairIndexCollator(
                pad_token_id=tokenizer.pad_token_id, max_length=dpo_args.max_length,
                truncation_mode=dpo_args.truncation_mode, pad_to_multiple_of=dpo_args.pad_to_multiple_of)
        with _without_model_hash(ref_cache is not None):
            super().__init__(*args, **kwargs)
        self.dynamics = DynamicsRecorder(self.beta)
        self._hook = self.model.register_forward_hook(self._capture_log_probs)
        # One process only (a DDP wrapper must see the forward itself), no MoE aux loss, and
        # the reference read from the cache (a per-step reference would run in TRL's layout).
        shared = (policy_layout == "shared" and self.accelerator.num_processes == 1
                  and not self.aux_loss_enabled and self.precompute_ref_logps)
        self.policy_layout = "shared" if shared else "trl"
        self.layout_stats = {"shared_batches": 0, "trl_batches": 0}
        self._fused_outputs = ("log_probs", "entropy", "mean_logits", "is_top1") + \
            (("log_sum_sq_probs",) if self.use_weighting else ())

    # ------------------------------------------------------------ columns reaching the batch

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "pair_index" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "pair_index"]

    # ------------------------------------------------------------ reference log-probs

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.ref_cache is None:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        started = time.perf_counter()
        pair_ids = [self.pair_ids[i] for i in dataset["pair_index"]]
        # The main process holds the cache's lock from "what is missing" to "stored", so other
        # runs filling the same cache compute each pair once; it tells the other ranks what
        # is missing, so they all run the same (collective) forward passes.
        main = self.accelerator.is_main_process
        with self.ref_cache.lock() if main else contextlib.nullcontext():
            missing = set(self.ref_cache.missing(pair_ids)) if main else set()
            if self.accelerator.num_processes > 1:
                from accelerate.utils import broadcast_object_list

                missing = broadcast_object_list([missing])[0]
            self.ref_stats["pairs"] += len(pair_ids)
            self.ref_stats["cache_hits"] += sum(p not in missing for p in pair_ids)
            if missing:
                rows = [i for i, p in enumerate(pair_ids) if p in missing]
                rows = list(dict.fromkeys(rows))
                computed = self._compute_ref_rows(dataset.select(rows), name, batch_size)
                if main:
                    self.ref_cache.put(computed)
                self.ref_stats["computed"] += len(computed)
        self.accelerator.wait_for_everyone()
        ref = self.ref_cache.get(pair_ids)
        dataset = dataset.add_column("ref_chosen_logps", ref["ref_chosen_logps"].astype(np.float32).tolist())
        self.ref_stats["precompute_s"] += round(time.perf_counter() - started, 3)
        return dataset.add_column("ref_rejected_logps", ref["ref_rejected_logps"].astype(np.float32).tolist())

    def _compute_ref_rows(self, subset, name, batch_size) -> pd.DataFrame:
        """TRL's own reference forward (adapter disabled) over ``subset``, longest pairs first."""
        from accelerate.utils import tqdm
        from torch.utils.data import DataLoader

        lengths = [len(p) + max(len(c), len(r)) for p, c, r in
                   zip(subset["prompt_ids"], subset["chosen_ids"], subset["rejected_ids"])]
        subset = subset.select(np.argsort(-np.asarray(lengths), kind="stable").tolist())
        columns = ["prompt_ids", "chosen_ids", "rejected_ids", "pair_index"]
        subset = subset.remove_columns([c for c in subset.column_names if c not in columns])
        loader = self.accelerator.prepare(DataLoader(subset, batch_size=batch_size, shuffle=False,
                                                     collate_fn=self.data_collator))
        parts = {k: [] for k in ("index", "chosen", "rejected", "chosen_tokens", "rejected_tokens")}
        for batch in tqdm(loader, desc=f"Reference log-probs for {name} (missing from cache)",
                          disable=bool(os.environ.get("TQDM_DISABLE", ""))):
            index = batch.pop("pair_index")
            chosen, rejected = self.compute_ref_log_probs(self.model, batch)
            tokens = batch["completion_mask"][..., 1:].sum(dim=1)
            chosen_tokens, rejected_tokens = tokens.chunk(2, dim=0)
            gathered = self.accelerator.gather_for_metrics(
                (index, chosen.float(), rejected.float(), chosen_tokens, rejected_tokens))
            for key, value in zip(parts, gathered):
                parts[key].append(value.cpu())
            self.ref_stats["forward_batches"] += 1
        cat = {k: torch.cat(v).numpy() for k, v in parts.items()}
        return pd.DataFrame({
            "pair_id": [self.pair_ids[i] for i in cat["index"]],
            "ref_chosen_logps": cat["chosen"].astype(np.float32),
            "ref_rejected_logps": cat["rejected"].astype(np.float32),
            "chosen_tokens": cat["chosen_tokens"].astype(np.int64),
            "rejected_tokens": cat["rejected_tokens"].astype(np.int64),
        })[REF_COLUMNS]

    # ------------------------------------------------------------ per-pair dynamics

    def _capture_log_probs(self, module, args, output):
        if self._capturing and getattr(output, "log_probs", None) is not None:
            self._captured.append(output.log_probs.detach())

    def _sequence_logps(self, per_token: torch.Tensor, shift_mask: torch.Tensor) -> torch.Tensor:
        per_token = per_token[:, -shift_mask.size(1):]
        if self.ld_alpha is None:
            return per_token.sum(dim=1)
        # LD-DPO: the same shared/tail split as TRL's _compute_loss.
        pos = shift_mask.cumsum(dim=1)
        chosen_lens, rejected_lens = shift_mask.sum(dim=1).long().chunk(2, dim=0)
        shared = torch.minimum(chosen_lens, rejected_lens)
        shared = torch.cat([shared, shared], dim=0).unsqueeze(1)
        shared_mask = (pos > 0) & (pos <= shared)
        return (per_token * shared_mask).sum(dim=1) + self.ld_alpha * (per_token * (pos > shared)).sum(dim=1)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pair_index = inputs.pop("pair_index", None)
        record = pair_index is not None and self.model.training
        self._captured = []
        self._capturing = record
        try:
            policy = _SharedPromptPolicy(self, model) if self.policy_layout == "shared" else model
            result = super().compute_loss(policy, inputs, return_outputs, num_items_in_batch)
        finally:
            self._capturing = False
        if record and self._captured:
            loss = result[0] if isinstance(result, tuple) else result
            self._record(inputs, pair_index, float(loss.detach().float().cpu()))
        self._captured = []
        return result

    def _record(self, inputs, pair_index, batch_loss: float) -> None:
        shift_mask = inputs["completion_mask"][..., 1:]
        policy = self._sequence_logps(self._captured[0], shift_mask).float()
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"].float(), inputs["ref_rejected_logps"].float()
        else:
            ref = self._sequence_logps(self._captured[1], shift_mask).float()
            ref_chosen, ref_rejected = ref.chunk(2, dim=0)
            self.ref_stats["forward_batches"] += 1
            self.ref_stats["computed"] += len(ref_chosen)
        chosen, rejected = policy.chunk(2, dim=0)
        tokens_chosen, tokens_rejected = shift_mask.sum(dim=1).chunk(2, dim=0)
        arrays = [t.detach().cpu().numpy() for t in
                  (chosen, rejected, ref_chosen, ref_rejected, tokens_chosen, tokens_rejected)]
        chosen, rejected, ref_chosen, ref_rejected, tokens_chosen, tokens_rejected = arrays
        loss = weighted_dpo_losses(
            self.loss_types, self.args.loss_weights, beta=self.beta, label_smoothing=self.label_smoothing,
            discopop_tau=self.args.discopop_tau, chosen_logratios=chosen - ref_chosen,
            rejected_logratios=rejected - ref_rejected, chosen_tokens=tokens_chosen,
            rejected_tokens=tokens_rejected)
        if self.use_weighting or self.f_divergence_type != "reverse_kl":
            loss = np.full(len(chosen), np.nan)
        step = self.state.global_step + 1
        last_step, count = self._micro
        micro_step = count if last_step == step else 0
        self._micro = (step, micro_step + 1)
        self.dynamics.add(
            pair_ids=[self.pair_ids[i] for i in pair_index.cpu().tolist()], step=step,
            micro_step=micro_step, epoch=int(math.floor((self.state.epoch or 0.0) + 1e-9)),
            process_index=self.accelerator.process_index, policy_chosen=chosen, policy_rejected=rejected,
            ref_chosen=ref_chosen, ref_rejected=ref_rejected, loss=loss, batch_loss=batch_loss,
            chosen_tokens=tokens_chosen, rejected_tokens=tokens_rejected)

    def dynamics_frame(self) -> pd.DataFrame:
        """All ranks' dynamics rows (collective under data parallel: call on every rank)."""
        frame = self.dynamics.frame()
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            frames = gather_object([frame])
            frame = pd.concat(frames, ignore_index=True).sort_values(
                ["step", "micro_step", "process_index"], kind="stable").reset_index(drop=True)
        return frame

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        frame = self.dynamics_frame()
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            if self.resume_identity is not None:
                from .resume import IDENTITY_FILE

                write_json(folder / IDENTITY_FILE, self.resume_identity)
            write_parquet(folder / DYNAMICS_FILE, frame)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Restore the adapter, keeping each trainable parameter's dtype. peft's ``load_adapter``
        (which the Trainer calls on resume) casts bf16 adapter weights to fp32, while TRL trains
        QLoRA adapters in bf16: a resumed 4-bit bf16 run would go on in fp32 (another optimizer
        state, another adapter) instead of being the uninterrupted run. The checkpoint's values
        are bf16, so the round trip through fp32 is exact."""
        target = model if model is not None else self.model
        dtypes = {name: p.dtype for name, p in target.named_parameters() if p.requires_grad}
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        for name, param in target.named_parameters():
            if name in dtypes and param.dtype != dtypes[name]:
                param.data = param.data.to(dtypes[name])


class _SharedPromptPolicy:
    """Stands in for the policy in TRL's ``_compute_loss``: the one call it makes,
    ``model(input_ids=..., attention_mask=..., labels=..., fused_lm_head=True, use_cache=False)``,
    answered in the shared-prompt layout (:func:`~pairlab.logprobs.shared_prompt_fused_forward`),
    or by the model itself where the batch has other inputs or another form."""

    def __init__(self, trainer: PairlabDPOTrainer, model):
        self.trainer, self.model = trainer, model

    def __call__(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, use_cache=None,
                 **extra):
        from ..logprobs import shared_prompt_fused_forward, trl_lm_head_chunk

        out = None
        counted = fused_lm_head and self.trainer.model.training  # training batches only
        if fused_lm_head and not extra and labels is not None:
            with self.trainer.accelerator.autocast():  # as accelerate runs the model's own forward
                out = shared_prompt_fused_forward(
                    self.trainer.accelerator.unwrap_model(self.model), input_ids, attention_mask, labels,
                    getattr(self.trainer.data_collator, "pad_token_id", None) or 0, self.trainer._fused_outputs)
        if out is None:
            self.trainer.layout_stats["trl_batches"] += int(counted)
            with trl_lm_head_chunk(self.trainer.accelerator.device):
                return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                                  fused_lm_head=fused_lm_head, use_cache=use_cache, **extra)
        self.trainer.layout_stats["shared_batches"] += int(counted)
        self.trainer._capture_log_probs(None, None, out)
        return out
