"""Label-noise injection: swap chosen/rejected for a seeded share of pairs, and say which.

This is how researchers validate a data filter or an attribution method on *real* text:
flip a known share of pairs, then see whether the method finds them. Noise types
(:data:`NOISE_TYPES`) say *which* pairs a biased rater gets wrong:

* ``uniform``: pairs drawn at random. ``flip_by="gap"`` flips more often where the two
  ratings are close, which is where real rater mistakes concentrate; ``"uniform"`` flips any
  pair with the same chance. A flipped pair looks like a clean one with its sign reversed,
  so loss and margin scores find it as well as gradients do.
* ``length``, ``source``, ``marker``: *systematic* noise, a rule the model can learn (the
  longer answer wins; one source's labels are all reversed; the flattering or hedging answer
  wins). Once the model has fitted the rule, the flipped pairs no longer look hard to it.

Every type records the truth per pair: ``flipped``, ``true_preference_correct`` and
``noise_type`` (the type that flipped the pair, '' for pairs it left alone).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..preference import rating_gap
from ..schema import PairDataError, finalize_pairs
from .templates import MARKERS

FLIP_BY = ("gap", "uniform")
#: Noise type -> what the biased rater does (README and --help reuse these).
NOISE_TYPES: dict[str, str] = {
    "uniform": "random pairs flipped (drawn by flip_by: gap or uniform); today's flips",
    "length": "the rater prefers the longer answer whatever its quality: pairs whose chosen is shorter are "
              "flipped, largest length ratio first, up to round(flip_rate * n)",
    "source": "every label of one source is flipped: the value of noise_group (default: source) whose pair "
              "count is closest to round(flip_rate * n)",
    "marker": "answers carrying a flattery or hedging marker are preferred: pairs whose rejected has a marker "
              "and chosen has none are flipped, up to round(flip_rate * n)",
}
_MARKER_RE = "|".join(re.escape(m.strip().rstrip(":,!.")) for m in MARKERS)


def has_marker(texts: pd.Series) -> np.ndarray:
    """True where a text carries one of the simulator's flattery / hedging markers."""
    return texts.astype(str).str.contains(_MARKER_RE, case=False, regex=True).to_numpy(bool)


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


def _take(candidates: np.ndarray, priority: np.ndarray, k: int, n: int) -> np.ndarray:
    """Mask of the (at most) k candidate rows with the highest priority."""
    mask = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(candidates)
    if k > 0 and len(rows):
        mask[rows[np.argsort(-priority[rows], kind="stable")[:k]]] = True
    return mask


def systematic_flips(pairs: pd.DataFrame, noise: str, flip_rate: float, rng: np.random.Generator,
                     group: str = "source") -> tuple[np.ndarray, dict]:
    """(mask, details) of the pairs a systematically biased rater gets wrong (see :data:`NOISE_TYPES`).

    Ties in priority are broken by a seeded random key, so the same table and seed flip the
    same pairs.
    """
    n = len(pairs)
    k = int(round(flip_rate * n))
    tiebreak = rng.random(n) * 1e-9
    if noise == "length":
        chosen_len = pairs["chosen"].astype(str).str.len().to_numpy(float)
        rejected_len = pairs["rejected"].astype(str).str.len().to_numpy(float)
        ratio = rejected_len / np.maximum(chosen_len, 1.0)
        mask = _take(rejected_len > chosen_len, ratio + tiebreak, k, n)
        return mask, {"eligible": int((rejected_len > chosen_len).sum())}
    if noise == "marker":
        eligible = has_marker(pairs["rejected"]) & ~has_marker(pairs["chosen"])
        return _take(eligible, tiebreak, k, n), {"eligible": int(eligible.sum())}
    if noise == "source":
        if group not in pairs:
            raise PairDataError(f"noise 'source' groups by column {group!r}, which the pairs do not have",
                                field="noise_group")
        values = pairs[group].fillna("").astype(str)
        counts = values.value_counts()
        if len(counts) < 2:
            raise PairDataError(f"noise 'source' needs at least two values of {group!r}, got {len(counts)}",
                                field="noise_group", hint="choose another noise_group, e.g. chosen_model")
        # the group whose size is closest to k; ties: the seeded draw decides
        order = counts.index[np.lexsort((rng.random(len(counts)), np.abs(counts.to_numpy() - k)))]
        chosen_group = str(order[0])
        return (values == chosen_group).to_numpy(bool), {"group": group, "value": chosen_group}
    raise PairDataError(f"noise must be one of {list(NOISE_TYPES)}, got {noise!r}", field="noise")


def inject_noise(pairs: pd.DataFrame, flip_rate: float, flip_by: str = "gap",
                 seed: int = 0, noise: str = "uniform", group: str = "source") -> pd.DataFrame:
    """Return a copy of ``pairs`` with a seeded share of labels flipped (the input is untouched).

    Parameters
    ----------
    pairs : a pairs table (``pairlab.schema``), from real or simulated data.
    flip_rate : share of pairs to flip, in [0, 1]; exactly ``round(flip_rate * len)`` are.
    flip_by : ``"gap"`` (flip more often where the rating gap is small; needs scores or
        aspect ratings) or ``"uniform"``; how ``noise="uniform"`` draws its pairs.
    seed : the same table, rate and seed flip the same pairs.
    noise : a :data:`NOISE_TYPES` name; the systematic types flip the pairs their rule picks
        (up to ``round(flip_rate * n)``; ``source`` flips one whole group).
    group : ``noise="source"``: the column whose one value has every label flipped.

    Returns
    -------
    The table with chosen and rejected swapped on flipped rows (with their scores, aspect
    ratings, models and any other ``chosen_X``/``rejected_X`` columns), ``pair_id``
    recomputed, and four columns: ``flipped`` (bool), ``original_pair_id``,
    ``true_preference_correct`` (bool: the label after flipping matches the truth; the truth
    is the input's own ``true_preference_correct`` when present, else the input label) and
    ``noise_type`` (the type that flipped the row, '' elsewhere). ``attrs["noise"]`` holds the
    details (type, flips, eligible pairs, the flipped group).
    """
    if not 0.0 <= flip_rate <= 1.0:
        raise PairDataError(f"flip rate must be in [0, 1], got {flip_rate}", field="flip_rate")
    if flip_by not in FLIP_BY:
        raise PairDataError(f"flip_by must be one of {FLIP_BY}, got {flip_by!r}",
                            field="flip_by")
    if noise not in NOISE_TYPES:
        raise PairDataError(f"noise must be one of {list(NOISE_TYPES)}, got {noise!r}", field="noise")
    out = pairs.copy().reset_index(drop=True)
    # absolute: flips favour pairs the annotators were least sure of, whichever side won
    gap = rating_gap(out, aspect_fallback=True).abs().to_numpy()
    details: dict = {"type": noise}
    if noise != "uniform":
        flipped, more = systematic_flips(out, noise, flip_rate, np.random.default_rng(seed), group)
        details.update(more)
    elif flip_by == "gap":
        known = ~np.isnan(gap)
        if len(out) and not known.any():
            raise PairDataError(
                "flip_by='gap' needs ratings, but no pair has scores or aspect ratings",
                field="score_chosen",
                hint="map them with --from-map score_chosen=... --from-map score_rejected=..., "
                     "or use --flip-by uniform")
        gap = np.where(known, gap, np.nanmedian(gap) if known.any() else 0.0)
    if noise == "uniform":
        flipped = choose_flips(gap, flip_rate, flip_by, np.random.default_rng(seed))

    for a, b in _swap_columns(list(out.columns)):
        left, right = out.loc[flipped, a].copy(), out.loc[flipped, b].copy()
        out.loc[flipped, a], out.loc[flipped, b] = right.to_numpy(), left.to_numpy()
    truth_before = (out["true_preference_correct"].astype(bool).to_numpy()
                    if "true_preference_correct" in out else np.ones(len(out), dtype=bool))
    if "original_pair_id" not in out:  # flipping twice keeps the very first id
        out["original_pair_id"] = pairs["pair_id"].to_numpy() if "pair_id" in pairs else None
    previous = out["noise_type"].fillna("").astype(str).to_numpy() if "noise_type" in out else np.full(len(out), "")
    out["flipped"] = flipped
    out["true_preference_correct"] = truth_before ^ flipped
    out["noise_type"] = np.where(flipped, noise, previous).astype(object)
    result = finalize_pairs(out)
    result.attrs["noise"] = {**details, "n_flipped": int(flipped.sum()), "n_pairs": len(out)}
    return result
