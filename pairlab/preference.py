"""The preference floor: rating gap, implicit reward and per-pair DPO losses, each defined once.

Every stage that needs one of these imports it from here (curate scores the rating gap,
simulate flips by it, train records per-pair losses, evaluate derives implicit rewards,
audit differentiates the loss). Pure functions of arrays and tables.

* :func:`rating_gap` is **signed** (``score_chosen - score_rejected``): a negative gap is an
  inverted pair, which curate reports. A caller that wants the annotators' confidence
  regardless of side (simulate's gap-ordered flips, audit's baseline) takes ``abs``.
* :func:`dpo_losses` follows TRL 1.16's ``DPOTrainer._compute_loss`` (reverse-KL DPO) formula
  by formula, before the batch mean; ``tests/test_preference.py`` checks every loss type
  against TRL's own code.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .schema import ASPECTS, usable_scores

#: Loss types whose loss is a function of one pair alone (so a per-pair value exists).
#: TRL's other loss types (``aot``, ``aot_unpaired``: sorted over the batch; ``sft``: a
#: token mean over the batch) couple the pairs of a micro-batch.
PER_PAIR_LOSSES = ("sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair",
                   "apo_zero", "apo_down", "sigmoid_norm", "exo_pair", "discopop")


# ---------------------------------------------------------------- rating gap

def rating_gap(pairs: pd.DataFrame, *, aspect_fallback: bool = False) -> pd.Series:
    """Signed ``score_chosen - score_rejected`` per pair (index of ``pairs``).

    Unusable scores (inf, beyond :data:`pairlab.schema.SCORE_LIMIT`) count as unknown, so the
    gap is NaN there rather than infinite. With ``aspect_fallback``, a pair whose gap is
    unknown gets the gap of its mean aspect ratings instead (NaN where neither is known).
    """
    gap = pd.Series(usable_scores(pairs["score_chosen"]) - usable_scores(pairs["score_rejected"]),
                    index=pairs.index, dtype=float)
    if aspect_fallback:
        gap = gap.fillna(mean_aspect_gap(pairs))
    return gap


def mean_aspect_gap(pairs: pd.DataFrame) -> pd.Series:
    """Mean aspect rating of chosen minus that of rejected (known aspects only; NaN if none)."""
    sides = [pd.DataFrame(usable_scores(pairs[[f"{side}_{a}" for a in ASPECTS]]), index=pairs.index).mean(axis=1)
             for side in ("chosen", "rejected")]
    return (sides[0] - sides[1]).astype(float)


# ---------------------------------------------------------------- implicit reward

def implicit_reward(policy_logps: Any, ref_logps: Any, beta: float) -> np.ndarray:
    """DPO's implicit reward ``beta * (log pi(y|x) - log ref(y|x))`` of summed completion log-probs."""
    return beta * (np.asarray(policy_logps, dtype=float) - np.asarray(ref_logps, dtype=float))


def reward_margin(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any,
                  beta: float) -> np.ndarray:
    """Implicit reward margin: chosen's implicit reward minus rejected's (> 0: chosen preferred)."""
    return implicit_reward(policy_chosen, ref_chosen, beta) - implicit_reward(policy_rejected, ref_rejected, beta)


# ---------------------------------------------------------------- per-pair DPO losses

def dpo_losses(chosen_logratios, rejected_logratios, *, loss_type: str = "sigmoid", beta: float,
               label_smoothing: float = 0.0, discopop_tau: float = 0.05,
               chosen_tokens=None, rejected_tokens=None):
    """Each pair's loss for one TRL ``loss_type`` (a vector; TRL's loss is its batch mean).

    ``*_logratios`` are ``log pi - log ref`` of the summed completion log-probs. Tensors in,
    tensors out (differentiable: audit back-propagates it); numpy arrays in, numpy out.
    ``*_tokens``: completion token counts, needed by the length-normalised ``ipo`` and
    ``sigmoid_norm`` (treated as 1 when absent).
    """
    import torch
    import torch.nn.functional as F

    if loss_type not in PER_PAIR_LOSSES:
        raise ValueError(f"loss_type {loss_type!r} has no per-pair loss; per-pair: {list(PER_PAIR_LOSSES)}")
    as_numpy = not isinstance(chosen_logratios, torch.Tensor)

    def tensor(x):
        return torch.as_tensor(np.asarray(x, dtype=np.float64)) if as_numpy else x

    cl, rl = tensor(chosen_logratios), tensor(rejected_logratios)
    delta = cl - rl
    eps = label_smoothing

    def per_token(ratio, tokens):
        if tokens is None:
            return ratio
        return ratio / torch.as_tensor(tokens).to(ratio).clamp(min=1.0)

    if loss_type == "sigmoid":
        loss = -F.logsigmoid(beta * delta)
    elif loss_type == "hinge":
        loss = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        loss = (per_token(cl, chosen_tokens) - per_token(rl, rejected_tokens) - 1 / (2 * beta)) ** 2
    elif loss_type == "sigmoid_norm":
        loss = -F.logsigmoid(beta * (per_token(cl, chosen_tokens) - per_token(rl, rejected_tokens)))
    elif loss_type == "robust":
        loss = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
    elif loss_type == "exo_pair":
        eps_t = torch.as_tensor(eps).to(delta)
        loss = (torch.sigmoid(beta * delta) * (F.logsigmoid(beta * delta) - torch.log1p(-eps_t))
                + torch.sigmoid(-beta * delta) * (F.logsigmoid(-beta * delta) - torch.log(eps_t)))
    elif loss_type == "bco_pair":
        loss = -F.logsigmoid(beta * cl) - F.logsigmoid(-beta * rl)
    elif loss_type == "nca_pair":
        loss = -F.logsigmoid(beta * cl) - 0.5 * F.logsigmoid(-beta * cl) - 0.5 * F.logsigmoid(-beta * rl)
    elif loss_type == "sppo_hard":
        loss = (cl - 0.5 / beta) ** 2 + (rl + 0.5 / beta) ** 2
    elif loss_type == "apo_zero":
        loss = 1 - torch.sigmoid(beta * cl) + torch.sigmoid(beta * rl)
    elif loss_type == "apo_down":
        loss = torch.sigmoid(beta * cl) + 1 - torch.sigmoid(beta * delta)
    else:  # discopop
        logits = beta * delta
        mod = torch.sigmoid(logits / discopop_tau)
        loss = -F.logsigmoid(logits) * (1 - mod) + torch.exp(-logits) * mod
    return loss.numpy() if as_numpy else loss


def weighted_dpo_losses(loss_types: list[str], loss_weights: list[float] | None, **kwargs) -> np.ndarray:
    """Each pair's loss under TRL's weighted sum of ``loss_types``; NaN for every pair when
    one of them has no per-pair value (``aot``, ``sft``...). Numpy in, numpy out."""
    n = len(kwargs["chosen_logratios"])
    if not set(loss_types) <= set(PER_PAIR_LOSSES):
        return np.full(n, np.nan)
    weights = loss_weights or [1.0] * len(loss_types)
    total = np.zeros(n)
    for loss_type, weight in zip(loss_types, weights):
        total += weight * dpo_losses(loss_type=loss_type, **kwargs)
    return total


def sigmoid_loss(margin: Any) -> np.ndarray:
    """The sigmoid DPO loss ``-log sigmoid(margin)`` of an already beta-scaled reward margin
    (numpy): the held-out loss audit validation reports, and the reference-free losses of audit's
    baselines."""
    margin = np.asarray(margin, dtype=float)
    return dpo_losses(margin, np.zeros_like(margin), loss_type="sigmoid", beta=1.0)
