"""TracIn over saved checkpoints: which training pairs lowered the held-out DPO loss.

TracIn (Pruthi et al., 2020) credits a training example with the loss change its own
gradient steps caused on a test point: a step of size lr on pair i changes the held-out
loss by about ``-lr * <g_i, g_eval>``. Summed over the checkpoints that stand for the
training trajectory:

    influence_i = sum_c  w_c * <P g_i(theta_c), P g_eval(theta_c)>

with ``g_eval`` the mean held-out DPO-loss gradient, ``P`` the seeded LoRA projection
(:mod:`pairlab.audit.gradients`) and ``w_c`` the mean learning rate over the steps the
checkpoint stands for (those since the previous checkpoint). Positive = the pair's updates
lowered the held-out loss (helped held-out preference); the most negative are *harmful*.
The arithmetic here is pure; loading checkpoints happens in :mod:`pairlab.audit.pipeline`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..dirs import RunDir

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path           # a directory with adapter_model.safetensors
    lr_weight: float     # mean learning rate over the steps since the previous checkpoint


def learning_rates(run_dir: str | Path) -> pd.Series:
    """Learning rate per optimizer step: train_log.jsonl, else the checkpoints' trainer_state.json."""
    run = Path(run_dir)
    rates: dict[int, float] = {}
    log = run / RunDir.TRAIN_LOG
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("learning_rate") is not None and not pd.isna(entry["learning_rate"]):
                rates[int(entry["step"])] = float(entry["learning_rate"])
    if not rates:
        for state in sorted(run.glob("checkpoints/checkpoint-*/trainer_state.json")):
            for entry in json.loads(state.read_text(encoding="utf-8")).get("log_history", []):
                if "learning_rate" in entry and "step" in entry:
                    rates[int(entry["step"])] = float(entry["learning_rate"])
    return pd.Series(rates, dtype=float).sort_index()


def checkpoint_weights(steps: list[int], rates: pd.Series, default_lr: float) -> list[float]:
    """Mean learning rate over (previous step, step] for each checkpoint step (sorted)."""
    weights, previous = [], 0
    for step in steps:
        window = rates[(rates.index > previous) & (rates.index <= step)]
        weights.append(float(window.mean()) if len(window) else float(default_lr))
        previous = step
    return weights


def run_checkpoints(run_dir: str | Path, *, final_step: int, default_lr: float,
                    limit: int | None = None) -> list[Checkpoint]:
    """The run's saved checkpoints, plus the final adapter when it is past the last one.

    ``limit`` keeps that many, evenly spaced, always including the last.
    """
    run = Path(run_dir)
    found = []
    for path in (run / RunDir.CHECKPOINTS).glob("checkpoint-*"):
        match = _CHECKPOINT.match(path.name)
        if match and (path / "adapter_model.safetensors").exists():
            found.append((int(match.group(1)), path))
    found.sort()
    if (run / RunDir.ADAPTER / "adapter_model.safetensors").exists() and \
            (not found or final_step > found[-1][0]):
        found.append((final_step, run / RunDir.ADAPTER))
    if limit is not None and len(found) > limit:
        keep = np.unique(np.round(np.linspace(len(found) - 1, 0, limit)).astype(int))
        found = [found[i] for i in sorted(keep)]
    weights = checkpoint_weights([s for s, _ in found], learning_rates(run), default_lr)
    return [Checkpoint(s, p, w) for (s, p), w in zip(found, weights)]


#: Gradient scores, oriented like every other score (higher = more helpful / trustworthy).
GRADIENT_SCORES: dict[str, str] = {
    "tracin": "TracIn: sum over checkpoints of lr x <pair's loss gradient, mean held-out loss gradient>",
    "tracin_cosine": "TracIn on directions: sum over checkpoints of lr x the mean over held-out pairs of "
                     "cosine(pair's gradient, held-out pair's gradient); every held-out pair gets one vote "
                     "and a large gradient no longer outweighs its direction",
    "self_influence": "minus TracIn self-influence: -(sum over checkpoints of lr x |pair's gradient|^2); "
                      "pairs the model keeps fighting (often mislabeled) have large gradients",
    "datainf": "DataInf influence on the clean validation set's DPO loss: <H^-1 g_val, g_i> with DataInf's "
               "closed-form inverse per LoRA factor (arXiv 2310.00902), summed over checkpoints with lr weights",
    "influence_fisher": "influence on the clean validation set's DPO loss with the damped empirical Fisher "
                        "(Gauss-Newton) of the projected gradients inverted exactly (Woodbury), summed over "
                        "checkpoints with lr weights",
    "ekfac": "EK-FAC influence on the clean validation set's DPO loss: <H^-1 g_val, g_i> with H the "
             "eigenvalue-corrected Kronecker-factored curvature of each LoRA factor in the projected space "
             "(Grosse et al. 2023, LoGra), damping 0.1 x mean eigenvalue as in kronfluence, summed over "
             "checkpoints with lr weights",
}
#: The curvature-aware members of :data:`GRADIENT_SCORES` (the rest are TracIn's family).
INFLUENCE_SCORES = ("datainf", "influence_fisher", "ekfac")


def tracin_terms(train_grads: np.ndarray, eval_grads: np.ndarray) -> np.ndarray:
    """<g_i, mean eval gradient> for each training pair at one checkpoint (float64)."""
    g_eval = np.asarray(eval_grads, dtype=np.float64).mean(axis=0)
    return np.asarray(train_grads, dtype=np.float64) @ g_eval


def checkpoint_terms(train_grads: np.ndarray, eval_grads: np.ndarray, blocks: list[int] | None = None,
                     shapes: list[tuple[int, int]] | None = None,
                     factors: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Every :data:`GRADIENT_SCORES` term of one checkpoint (before the learning-rate weights).

    ``blocks``: the column count of each LoRA factor in the gradients (DataInf inverts per
    factor; ``None``: one block). ``shapes`` / ``factors``: each factor's projected
    (k_out, k_in) and K-FAC factors (A, S) from the training pass, for EK-FAC (NaN without them).

    ``tracin_cosine`` = mean_j cos(g_i, e_j) = <g_i / |g_i|, mean_j e_j / |e_j|> (zero gradients,
    e.g. a pair whose two completions are identical after truncation, have no direction: 0).
    """
    g = np.asarray(train_grads, dtype=np.float64)
    e = np.asarray(eval_grads, dtype=np.float64)
    dots = tracin_terms(g, e)
    norms = np.linalg.norm(g, axis=1)
    e_norms = np.linalg.norm(e, axis=1)
    e_dirs = e[e_norms > 0] / e_norms[e_norms > 0, None]
    mean_dir = e_dirs.sum(axis=0) / max(len(e), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, (g @ mean_dir) / norms, 0.0)
    from .influence import datainf, ekfac_influence, fisher_influence

    ekfac = ekfac_influence(g, e, shapes, factors) if factors is not None else np.full(len(g), np.nan)
    return {"tracin": dots, "tracin_cosine": cosine, "self_influence": -(norms ** 2),
            "datainf": datainf(g, e, blocks), "influence_fisher": fisher_influence(g, e), "ekfac": ekfac}


def tracin(terms: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """sum_c w_c * terms_c: one influence score per training pair (positive = helped)."""
    return np.sum([w * t for w, t in zip(weights, terms)], axis=0)
