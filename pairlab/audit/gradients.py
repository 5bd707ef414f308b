"""Per-pair gradients of the DPO loss w.r.t. the LoRA parameters, randomly projected.

The floor for gradient attribution is one forward and one backward per pair per
checkpoint, the same work as a training pass. This module gets there:

* **One batched backward** of the *sum* of per-pair DPO losses. Rows never interact
  (attention within a row, no batch norm), so each pair's gradient is the part of the
  summed gradient that flows through its own rows: in the shared-prompt layout (where the
  reference values are in it: CPU) pair ``i`` is row ``i``, ``prompt + chosen +
  rejected`` with a block mask, so the prompt runs once; in TRL's layout it owns rows ``i``
  (chosen) and ``n + i`` (rejected) of the concatenated batch.
* **Per-example LoRA gradients from hooks.** Every LoRA factor is a bias-free
  ``nn.Linear`` (``lora_A``: in -> r, ``lora_B``: r -> out). For a linear layer the
  weight gradient of one row is ``G = sum_t g_t x_tᵀ`` (``g_t``: output gradient at
  token t, ``x_t``: input). A forward hook sees ``x_t``, a tensor hook on the output
  sees ``g_t``.
* **Kronecker-structured projection (LoGra).** With seeded Gaussian matrices
  ``P_out`` (k_o x out) and ``P_in`` (k_i x in), ``P_out G P_inᵀ = sum_t (P_out g_t)
  (P_in x_t)ᵀ``: the projected gradient is built from projected activations, and the
  full per-example gradient (out x in) is never materialized. A side whose size is at
  most ``k`` (LoRA's rank r, usually) is kept exactly (identity projection).

The flattened projection of pair i is ``vec(P_out G_i P_inᵀ) = (P_out ⊗ P_in) vec(G_i)``
(row-major), so dot products between projected gradients approximate the true ones
(Johnson-Lindenstrauss) and equal exactly what the brute force gives with the same
Kronecker matrix; ``tests/audit/test_gradients.py`` checks that.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..logprobs import trl_lm_head_chunk
from ..preference import dpo_losses

#: Loss types whose per-pair loss this module can differentiate (TRL 1.16 formulas).
SUPPORTED_LOSSES = ("sigmoid", "hinge", "ipo", "robust")


# ---------------------------------------------------------------- the DPO loss per pair

def dpo_pair_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
                  ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, *, beta: float,
                  loss_type: str = "sigmoid", label_smoothing: float = 0.0,
                  chosen_tokens: torch.Tensor | None = None,
                  rejected_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Each pair's DPO loss (a vector), as TRL 1.16 computes it before the batch mean
    (:func:`pairlab.preference.dpo_losses` of the log-ratios; differentiable)."""
    if loss_type not in SUPPORTED_LOSSES:
        raise ValueError(f"audit supports loss_type in {SUPPORTED_LOSSES}, not {loss_type!r}")
    return dpo_losses(chosen_logps - ref_chosen, rejected_logps - ref_rejected, loss_type=loss_type,
                      beta=beta, label_smoothing=label_smoothing, chosen_tokens=chosen_tokens,
                      rejected_tokens=rejected_tokens)


# ---------------------------------------------------------------- LoRA layers and projections

def lora_linears(model, adapter: str = "default") -> list[tuple[str, torch.nn.Linear]]:
    """(name, Linear) of every LoRA factor of ``adapter``: ``...lora_A.default``, ``...lora_B.default``."""
    found = []
    for name, module in model.named_modules():
        for side in ("lora_A", "lora_B"):
            factors = getattr(module, side, None)
            if isinstance(factors, torch.nn.ModuleDict) and adapter in factors:
                found.append((f"{name}.{side}.{adapter}", factors[adapter]))
    if not found:
        raise ValueError("model has no LoRA layers for adapter " + repr(adapter))
    return found


def projection_matrix(dim: int, k: int, seed: int, name: str, side: str) -> torch.Tensor | None:
    """Seeded Gaussian (k x dim) / sqrt(k), or None (identity) when dim <= k.

    Seeded by (seed, layer name, side), so the same layer gets the same matrix in every
    checkpoint, run and process.
    """
    if dim <= k:
        return None
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"{name}/{side}".encode()))
    return torch.randn(k, dim, generator=gen) / np.sqrt(k)


@dataclass
class LayerProjection:
    name: str
    module: torch.nn.Linear
    p_out: torch.Tensor | None   # (k_o, out) or None = identity
    p_in: torch.Tensor | None    # (k_i, in) or None = identity

    @property
    def k_out(self) -> int:
        return self.module.out_features if self.p_out is None else self.p_out.shape[0]

    @property
    def k_in(self) -> int:
        return self.module.in_features if self.p_in is None else self.p_in.shape[0]

    def kron(self) -> torch.Tensor:
        """The dense (k_o*k_i) x (out*in) matrix P_out ⊗ P_in (tests / the naive baseline only)."""
        p_out = torch.eye(self.module.out_features) if self.p_out is None else self.p_out
        p_in = torch.eye(self.module.in_features) if self.p_in is None else self.p_in
        return torch.kron(p_out, p_in)


def build_projections(model, proj_dim: int, seed: int, adapter: str = "default") -> list[LayerProjection]:
    return [LayerProjection(name, mod,
                            projection_matrix(mod.out_features, proj_dim, seed, name, "out"),
                            projection_matrix(mod.in_features, proj_dim, seed, name, "in"))
            for name, mod in lora_linears(model, adapter)]


def _project(x: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
    x = x.float()
    return x if p is None else x @ p.to(x.device).T


# ---------------------------------------------------------------- capturing per-example gradients

class ProjectedGradientCapture:
    """Hooks that accumulate each row's projected LoRA gradient during one backward.

    Use as a context manager around the forward and backward of a batch of ``rows``
    sequences; ``row_gradients()`` then returns a (rows, d) tensor.

    With ``covariances=True`` it also sums, per layer, the token-level second moments of the
    projected inputs (``A``, k_i x k_i; tokens where :attr:`token_mask` is 0, i.e. padding, are
    left out) and of the projected output gradients (``S``, k_o x k_o): K-FAC's Kronecker
    factors in the projected space, for EK-FAC (:func:`pairlab.audit.influence.ekfac_influence`).
    """

    def __init__(self, projections: list[LayerProjection], covariances: bool = False):
        self.projections = projections
        self.dim = sum(p.k_out * p.k_in for p in projections)
        self._handles: list[Any] = []
        self._inputs: dict[int, torch.Tensor] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self.covariances = covariances
        self.token_mask: torch.Tensor | None = None   # (rows, T) of the next forward; None: every token
        self.act_cov: dict[int, torch.Tensor] = {}
        self.grad_cov: dict[int, torch.Tensor] = {}
        self.tokens = 0

    def __enter__(self):
        for i, proj in enumerate(self.projections):
            self._handles.append(proj.module.register_forward_hook(self._forward_hook(i, proj)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False

    def _forward_hook(self, i: int, proj: LayerProjection):
        def hook(module, args, output):
            if not torch.is_grad_enabled() or not output.requires_grad:
                return
            # Project the input now (rows, T, k_i): the full activations are not kept.
            self._inputs[i] = x = _project(args[0].detach(), proj.p_in)
            if self.covariances:
                flat = x.reshape(-1, x.shape[-1]).double()
                if self.token_mask is not None:
                    flat = flat[self.token_mask.reshape(-1).to(flat.device) > 0]
                self.act_cov[i] = self.act_cov.get(i, 0) + flat.T @ flat

            def grad_hook(grad):
                g = _project(grad.detach(), proj.p_out)                      # (rows, T, k_o)
                if self.covariances:  # padding has zero output gradient: no mask needed
                    flat = g.reshape(-1, g.shape[-1]).double()
                    self.grad_cov[i] = self.grad_cov.get(i, 0) + flat.T @ flat
                per_row = torch.einsum("nto,nti->noi", g, self._inputs.pop(i))
                self._grads[i] = self._grads.get(i, 0) + per_row.reshape(per_row.shape[0], -1)
            output.register_hook(grad_hook)
        return hook

    def row_gradients(self) -> torch.Tensor:
        """(rows, d): each row's projected gradient, layers in :attr:`projections` order."""
        missing = [self.projections[i].name for i in range(len(self.projections)) if i not in self._grads]
        if missing:
            raise RuntimeError(f"no gradient reached {missing[0]} (is the adapter active?)")
        out = torch.cat([self._grads[i] for i in range(len(self.projections))], dim=1)
        self._grads = {}
        self._inputs = {}
        return out

    def factors(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per layer (A, S), each divided by the number of (unmasked) tokens seen (float64)."""
        n = max(self.tokens, 1)
        return [((self.act_cov[i] / n).numpy(), (self.grad_cov[i] / n).numpy())
                for i in range(len(self.projections))]


# ---------------------------------------------------------------- the batched pass

def policy_logps_with_grad(model, batch: dict[str, torch.Tensor]):
    """Summed completion log-probs (chosen, rejected, chosen_tokens, rejected_tokens), graph kept.

    The computation of :func:`pairlab.logprobs.completion_logps` (TRL's fused LM head),
    without ``torch.no_grad``.
    """
    device = next(model.parameters()).device
    completion_mask = batch["completion_mask"].to(device)
    input_ids = batch["input_ids"].to(device)
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    with trl_lm_head_chunk(device):
        out = model(input_ids=input_ids, attention_mask=batch["attention_mask"].to(device),
                    labels=labels, use_cache=False, fused_lm_head=True)
    shift_mask = completion_mask[..., 1:]
    logps = out.log_probs[:, -shift_mask.size(1):].sum(dim=1).float()
    tokens = shift_mask.sum(dim=1)
    chosen, rejected = logps.chunk(2, dim=0)
    chosen_tokens, rejected_tokens = tokens.chunk(2, dim=0)
    return chosen, rejected, chosen_tokens, rejected_tokens


@dataclass
class LossSettings:
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    max_length: int | None = 256
    truncation_mode: str = "keep_start"


def pair_gradients(model, tokenizer, pairs, ref: np.ndarray, projections: list[LayerProjection],
                   loss: LossSettings, *, batch_size: int = 8, progress: str | None = None,
                   factors: list | None = None, layout: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected per-pair DPO-loss gradients w.r.t. the active LoRA adapter.

    Parameters
    ----------
    model : a peft model with the adapter active (LoRA weights requiring grad).
    pairs : a pairs table; ``ref`` its reference log-probs, shape (n, 2): chosen, rejected.
    projections : from :func:`build_projections` on this model.
    progress : a label for a progress bar on stderr (None: silent).
    factors : a list to receive each LoRA factor's projected K-FAC factors (A, S) over these
        pairs (see :class:`ProjectedGradientCapture`); None: not computed.

    Returns
    -------
    (gradients (n, d) float32, losses (n,), policy log-probs (n, 2): chosen, rejected), in the
    order of ``pairs``. The log-probs come free with the forward, so the caller needs no
    separate policy pass at the final checkpoint.

    layout : ``shared`` (the default where :func:`pairlab.logprobs.shared_prompt_supported`):
        one row per pair, ``prompt + chosen + rejected`` with a block mask, so the prompt runs
        once and a row's gradient is its pair's; ``trl``: TRL's two rows per pair (the naive
        loop's layout). The same gradients up to float rounding. K-FAC factors then count a
        pair's prompt tokens once, with their gradient from both answers (the pair's loss is
        one sample), where TRL's layout counts them twice, once per answer.
    """
    from ..logprobs import (ensure_fused_lm_head, length_order, preference_collator, shared_prompt_batch,
                            shared_prompt_logps, shared_prompt_supported, token_lengths, tokenize_pairs,
                            truncation_table)

    tokenized = tokenize_pairs(tokenizer, pairs)
    # A pair whose prompt alone fills max_length has no completion token left (TRL drops it):
    # no forward, a zero gradient, NaN loss and log-probs, as sequence_logps gives it.
    scorable = truncation_table(token_lengths(tokenized, pairs["pair_id"].astype(str).to_numpy()),
                                loss.max_length, loss.truncation_mode)["scorable"].to_numpy()
    shared = shared_prompt_supported(model, loss.truncation_mode) if layout is None else layout == "shared"
    if shared:
        def collate(examples):
            return shared_prompt_batch(examples, tokenizer.pad_token_id, loss.max_length)
    else:
        collate = preference_collator(tokenizer, loss.max_length, loss.truncation_mode)
        ensure_fused_lm_head(model)
    order = [i for i in length_order(tokenized, shared) if scorable[i]]
    capture = ProjectedGradientCapture(projections, covariances=factors is not None)
    grads = np.zeros((len(tokenized), capture.dim), dtype=np.float32)
    losses = np.full(len(tokenized), np.nan)
    logps = np.full((len(tokenized), 2), np.nan)
    ref = torch.as_tensor(np.array(ref, dtype=np.float32))
    was_training = model.training
    model.eval()  # no dropout: the gradient of the deterministic loss
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="batch")
    try:
        with capture:
            for start in starts:
                idx = np.asarray(order[start:start + batch_size])
                batch = collate([tokenized[i] for i in idx])
                capture.token_mask = (batch["segments"] >= 0).long() if shared else batch["attention_mask"]
                capture.tokens += int(capture.token_mask.sum())
                if shared:
                    chosen, rejected, ct, rt = shared_prompt_logps(model, batch, grad=True)
                else:
                    chosen, rejected, ct, rt = policy_logps_with_grad(model, batch)
                r = ref[idx].to(chosen.device)
                per_pair = dpo_pair_loss(chosen, rejected, r[:, 0], r[:, 1], beta=loss.beta,
                                         loss_type=loss.loss_type, label_smoothing=loss.label_smoothing,
                                         chosen_tokens=ct, rejected_tokens=rt)
                per_pair.sum().backward()
                rows = capture.row_gradients()
                n = len(idx)
                # shared: row i is pair i; TRL's layout: chosen row i + rejected row n+i
                grads[idx] = (rows if shared else rows[:n] + rows[n:]).cpu().numpy()
                losses[idx] = per_pair.detach().cpu().numpy()
                logps[idx] = torch.stack([chosen, rejected], dim=1).detach().cpu().numpy()
                model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    if factors is not None:
        factors.extend(capture.factors())
    return grads, losses, logps


def naive_pair_gradients(model, tokenizer, pairs, ref: np.ndarray, projections: list[LayerProjection],
                         loss: LossSettings) -> np.ndarray:
    """The brute force: one backward per pair, full LoRA gradient flattened, then projected.

    The baseline the benchmark compares against, and the truth the tests check against.
    """
    from ..logprobs import ensure_fused_lm_head, preference_collator, tokenize_pairs

    tokenized = tokenize_pairs(tokenizer, pairs)
    collate = preference_collator(tokenizer, loss.max_length, loss.truncation_mode)
    ensure_fused_lm_head(model)
    krons = [p.kron() for p in projections]
    out = []
    was_training = model.training
    model.eval()
    try:
        for i, tok in enumerate(tokenized):
            model.zero_grad(set_to_none=True)
            chosen, rejected, ct, rt = policy_logps_with_grad(model, collate([tok]))
            r = torch.as_tensor(np.asarray(ref[i], dtype=np.float32)).to(chosen.device)
            dpo_pair_loss(chosen, rejected, r[0:1], r[1:2], beta=loss.beta, loss_type=loss.loss_type,
                          label_smoothing=loss.label_smoothing, chosen_tokens=ct,
                          rejected_tokens=rt).sum().backward()
            parts = [kron @ proj.module.weight.grad.float().reshape(-1)
                     for kron, proj in zip(krons, projections)]
            out.append(torch.cat(parts).cpu().numpy())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return np.stack(out).astype(np.float32)
