"""Per-pair training dynamics: one row every time a pair is seen in a training micro-batch.

The numbers come from the forward TRL already does for the loss (no extra pass):
the trainer captures the policy's per-token log-probs, the reference log-probs
(from the cache, or TRL's own reference forward) and the micro-batch loss, and
hands them to :class:`DynamicsRecorder`. Audit reads ``dynamics.parquet`` later.

``train_log.jsonl`` is derived from the same rows, one line per optimizer step, so
its accuracy is the exact fraction of the step's pairs with a positive margin (TRL
logs a mean of per-micro-batch means).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: dynamics.parquet column -> meaning (the README reuses this).
DYNAMICS_COLUMNS: dict[str, str] = {
    "pair_id": "the pair (pairs-table id)",
    "step": "optimizer step this micro-batch contributed to (1-based)",
    "micro_step": "micro-batch index within the step (gradient accumulation), 0-based",
    "epoch": "epoch index (0-based)",
    "process_index": "data-parallel rank that saw the pair",
    "policy_chosen_logps": "summed log-prob of chosen under the policy (adapter on), before this step's update",
    "policy_rejected_logps": "summed log-prob of rejected under the policy",
    "ref_chosen_logps": "summed log-prob of chosen under the reference (adapter off)",
    "ref_rejected_logps": "summed log-prob of rejected under the reference",
    "chosen_reward": "beta * (policy_chosen_logps - ref_chosen_logps)",
    "rejected_reward": "beta * (policy_rejected_logps - ref_rejected_logps)",
    "margin": "implicit reward margin: chosen_reward - rejected_reward",
    "loss": "this pair's DPO loss (NaN for batch-coupled losses such as aot, sft)",
    "batch_loss": "the micro-batch loss TRL returned (what was back-propagated, before accumulation scaling)",
    "chosen_tokens": "completion tokens of chosen after truncation",
    "rejected_tokens": "completion tokens of rejected after truncation",
}

#: Loss types whose loss is a function of one pair alone (so a per-pair value exists).
PER_PAIR_LOSSES = {"sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair",
                   "apo_zero", "apo_down", "sigmoid_norm", "exo_pair", "discopop"}


def _logsigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_logsigmoid(x))


def per_pair_loss(loss_types: list[str], loss_weights: list[float] | None, *, beta: float,
                  label_smoothing: float, discopop_tau: float, chosen_logratios: np.ndarray,
                  rejected_logratios: np.ndarray, chosen_tokens: np.ndarray,
                  rejected_tokens: np.ndarray) -> np.ndarray:
    """Each pair's loss under TRL 1.16's formulas (reverse-KL DPO); NaN where none is per-pair.

    TRL's micro-batch loss is the mean of these (times the weights, summed over loss types).
    """
    n = len(chosen_logratios)
    weights = loss_weights or [1.0] * len(loss_types)
    if not set(loss_types) <= PER_PAIR_LOSSES:
        return np.full(n, np.nan)
    cl, rl = chosen_logratios.astype(np.float64), rejected_logratios.astype(np.float64)
    delta = cl - rl
    eps = label_smoothing
    total = np.zeros(n)
    for loss_type, weight in zip(loss_types, weights):
        if loss_type == "sigmoid":
            loss = -_logsigmoid(beta * delta)
        elif loss_type == "hinge":
            loss = np.maximum(0.0, 1 - beta * delta)
        elif loss_type == "ipo":
            ipo = cl / np.maximum(chosen_tokens, 1) - rl / np.maximum(rejected_tokens, 1)
            loss = (ipo - 1 / (2 * beta)) ** 2
        elif loss_type == "sigmoid_norm":
            norm = cl / np.maximum(chosen_tokens, 1) - rl / np.maximum(rejected_tokens, 1)
            loss = -_logsigmoid(beta * norm)
        elif loss_type == "robust":
            loss = (-(1 - eps) * _logsigmoid(beta * delta) + eps * _logsigmoid(-beta * delta)) / (1 - 2 * eps)
        elif loss_type == "exo_pair":
            qw, ql = _sigmoid(beta * delta), _sigmoid(-beta * delta)
            loss = qw * (_logsigmoid(beta * delta) - math.log1p(-eps)) + \
                ql * (_logsigmoid(-beta * delta) - math.log(eps))
        elif loss_type == "bco_pair":
            loss = -_logsigmoid(beta * cl) - _logsigmoid(-beta * rl)
        elif loss_type == "nca_pair":
            loss = -_logsigmoid(beta * cl) - 0.5 * _logsigmoid(-beta * cl) - 0.5 * _logsigmoid(-beta * rl)
        elif loss_type == "sppo_hard":
            loss = (cl - 0.5 / beta) ** 2 + (rl + 0.5 / beta) ** 2
        elif loss_type == "apo_zero":
            loss = 1 - _sigmoid(beta * cl) + _sigmoid(beta * rl)
        elif loss_type == "apo_down":
            loss = _sigmoid(beta * cl) + 1 - _sigmoid(beta * delta)
        else:  # discopop
            logits = beta * delta
            mod = _sigmoid(logits / discopop_tau)
            loss = -_logsigmoid(logits) * (1 - mod) + np.exp(-logits) * mod
        total += weight * loss
    return total


class DynamicsRecorder:
    """Collects dynamics rows in memory; the trainer flushes them at checkpoints and at the end."""

    def __init__(self, beta: float):
        self.beta = beta
        self._frames: list[pd.DataFrame] = []

    def add(self, *, pair_ids: list[str], step: int, micro_step: int, epoch: int, process_index: int,
            policy_chosen: np.ndarray, policy_rejected: np.ndarray, ref_chosen: np.ndarray,
            ref_rejected: np.ndarray, loss: np.ndarray, batch_loss: float,
            chosen_tokens: np.ndarray, rejected_tokens: np.ndarray) -> None:
        chosen_reward = self.beta * (policy_chosen - ref_chosen)
        rejected_reward = self.beta * (policy_rejected - ref_rejected)
        n = len(pair_ids)
        self._frames.append(pd.DataFrame({
            "pair_id": pair_ids, "step": np.full(n, step), "micro_step": np.full(n, micro_step),
            "epoch": np.full(n, epoch), "process_index": np.full(n, process_index),
            "policy_chosen_logps": policy_chosen, "policy_rejected_logps": policy_rejected,
            "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected,
            "chosen_reward": chosen_reward, "rejected_reward": rejected_reward,
            "margin": chosen_reward - rejected_reward, "loss": loss,
            "batch_loss": np.full(n, batch_loss), "chosen_tokens": chosen_tokens,
            "rejected_tokens": rejected_tokens,
        }))

    def load(self, frame: pd.DataFrame) -> None:
        """Start from the rows of a checkpoint (on resume)."""
        self._frames = [frame[list(DYNAMICS_COLUMNS)].copy()]

    def frame(self) -> pd.DataFrame:
        if not self._frames:
            return pd.DataFrame({c: pd.Series(dtype=object if c == "pair_id" else float)
                                 for c in DYNAMICS_COLUMNS})
        frame = pd.concat(self._frames, ignore_index=True)
        self._frames = [frame]
        return frame[list(DYNAMICS_COLUMNS)]


def step_log(dynamics: pd.DataFrame, log_history: list[dict] | None = None) -> pd.DataFrame:
    """One row per optimizer step from the dynamics rows, plus TRL's lr / grad_norm where logged."""
    if dynamics.empty:
        return pd.DataFrame(columns=["step", "epoch", "pairs", "loss"])
    batch_losses = dynamics.drop_duplicates(["step", "micro_step", "process_index"])
    by_step = dynamics.groupby("step")
    log = pd.DataFrame({
        "epoch": by_step["epoch"].max(),
        "pairs": by_step.size(),
        "loss": batch_losses.groupby("step")["batch_loss"].mean(),
        "rewards/chosen": by_step["chosen_reward"].mean(),
        "rewards/rejected": by_step["rejected_reward"].mean(),
        "rewards/accuracies": by_step["margin"].apply(lambda m: float((m > 0).mean())),
        "rewards/margins": by_step["margin"].mean(),
        "logps/chosen": by_step["policy_chosen_logps"].mean(),
        "logps/rejected": by_step["policy_rejected_logps"].mean(),
    }).reset_index()
    extra = {}
    for entry in log_history or []:
        if "step" in entry and ("learning_rate" in entry or "grad_norm" in entry):
            extra[int(entry["step"])] = {k: entry[k] for k in ("learning_rate", "grad_norm") if k in entry}
    if extra:
        side = pd.DataFrame.from_dict(extra, orient="index")
        side.index.name = "step"
        log = log.merge(side.reset_index(), on="step", how="left")
    return log
