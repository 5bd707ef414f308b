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

import numpy as np
import pandas as pd

from ..preference import implicit_reward

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

class DynamicsRecorder:
    """Collects dynamics rows in memory; the trainer flushes them at checkpoints and at the end."""

    def __init__(self, beta: float):
        self.beta = beta
        self._frames: list[pd.DataFrame] = []

    def add(self, *, pair_ids: list[str], step: int, micro_step: int, epoch: int, process_index: int,
            policy_chosen: np.ndarray, policy_rejected: np.ndarray, ref_chosen: np.ndarray,
            ref_rejected: np.ndarray, loss: np.ndarray, batch_loss: float,
            chosen_tokens: np.ndarray, rejected_tokens: np.ndarray) -> None:
        chosen_reward = implicit_reward(policy_chosen, ref_chosen, self.beta)
        rejected_reward = implicit_reward(policy_rejected, ref_rejected, self.beta)
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
