"""Label-noise injection: swap chosen/rejected for a seeded share of pairs, and say which.

This is how researchers validate a data filter or an attribution method on *real* text:
flip a known share of pairs, then see whether the method finds them. ``flip_by="gap"``
flips more often where the two ratings are close, which is where real rater mistakes
concentrate; ``"uniform"`` flips any pair with the same chance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..schema import ASPECTS, PairDataError, finalize_pairs

FLIP_BY = ("gap", "uniform")


def rating_gap(pairs: pd.DataFrame) -> pd.Series:
    """|score_chosen - score_rejected| per pair; where a score is missing, the gap of the
    mean aspect ratings; NaN where neither is known."""
    gap = (pairs["score_chosen"] - pairs["score_rejected"]).abs()
    chosen = pairs[[f"chosen_{a}" for a in ASPECTS]].mean(axis=1)
    rejected = pairs[[f"rejected_{a}" for a in ASPECTS]].mean(axis=1)
    return gap.fillna((chosen - rejected).abs()).astype(float)


def _swap_columns(columns: list[str]) -> list[tuple[str, str]]:
    """Column pairs that describe the two sides: chosen/rejected, score_chosen/score_rejected,
    and every chosen_X with a rejected_X (aspects, models, latent quality, lengths...)."""
    pairs = [("chosen", "rejected"), ("score_chosen", "score_rejected")]
    pairs += [(c, "rejected_" + c[len("chosen_"):]) for c in columns
              if c.startswith("chosen_") and "rejected_" + c[len("chosen_"):] in columns]
    return [(a, b) for a, b in pairs if a in columns and b in columns]


def choose_flips(gap: np.ndarray, flip_rate: float, flip_by: str,
                 rng: np.random.Generator) -> np.ndarray:
    """Boolean mask with exactly ``round(flip_rate * n)`` True entries.

    ``uniform``: every pair equally likely. ``gap``: weighted sampling without replacement
    with weight ``exp(-gap / mean_gap)`` (ties weigh most; the scale makes it work the same
    on 1-5 and 1-10 ratings), by the Efraimidis-Spirakis keys ``log(u) / w``.
    """
    n = len(gap)
    k = int(round(flip_rate * n))
    mask = np.zeros(n, dtype=bool)
    if k == 0:
        return mask
    u = rng.random(n)
    if flip_by == "uniform":
        keys = u
    else:
        scale = float(np.mean(gap)) or 1.0
        weight = np.exp(-gap / scale)
        keys = np.log(u) / weight  # larger is more likely; all <= 0
    mask[np.argpartition(-keys, k - 1)[:k]] = True
    return mask


def inject_noise(pairs: pd.DataFrame, flip_rate: float, flip_by: str = "gap",
                 seed: int = 0) -> pd.DataFrame:
    """Return a copy of ``pairs`` with a seeded share of labels flipped (the input is untouched).

    Parameters
    ----------
    pairs : a pairs table (``pairlab.schema``), from real or simulated data.
    flip_rate : share of pairs to flip, in [0, 1]; exactly ``round(flip_rate * len)`` are.
    flip_by : ``"gap"`` (flip more often where the rating gap is small; needs scores or
        aspect ratings) or ``"uniform"``.
    seed : the same table, rate and seed flip the same pairs.

    Returns
    -------
    The table with chosen and rejected swapped on flipped rows (with their scores, aspect
    ratings, models and any other ``chosen_X``/``rejected_X`` columns), ``pair_id``
    recomputed, and three columns: ``flipped`` (bool), ``original_pair_id``, and
    ``true_preference_correct`` (bool: the label after flipping matches the truth; the truth
    is the input's own ``true_preference_correct`` when present, else the input label).
    """
    if not 0.0 <= flip_rate <= 1.0:
        raise PairDataError(f"flip rate must be in [0, 1], got {flip_rate}", field="flip_rate")
    if flip_by not in FLIP_BY:
        raise PairDataError(f"flip_by must be one of {FLIP_BY}, got {flip_by!r}",
                            field="flip_by")
    out = pairs.copy().reset_index(drop=True)
    gap = rating_gap(out).to_numpy()
    if flip_by == "gap":
        known = ~np.isnan(gap)
        if len(out) and not known.any():
            raise PairDataError(
                "flip_by='gap' needs ratings, but no pair has scores or aspect ratings",
                field="score_chosen",
                hint="map them with --from-map score_chosen=... --from-map score_rejected=..., "
                     "or use --flip-by uniform")
        gap = np.where(known, gap, np.nanmedian(gap) if known.any() else 0.0)
    flipped = choose_flips(gap, flip_rate, flip_by, np.random.default_rng(seed))

    for a, b in _swap_columns(list(out.columns)):
        left, right = out.loc[flipped, a].copy(), out.loc[flipped, b].copy()
        out.loc[flipped, a], out.loc[flipped, b] = right.to_numpy(), left.to_numpy()
    truth_before = (out["true_preference_correct"].astype(bool).to_numpy()
                    if "true_preference_correct" in out else np.ones(len(out), dtype=bool))
    if "original_pair_id" not in out:  # flipping twice keeps the very first id
        out["original_pair_id"] = pairs["pair_id"].to_numpy() if "pair_id" in pairs else None
    out["flipped"] = flipped
    out["true_preference_correct"] = truth_before ^ flipped
    return finalize_pairs(out)
