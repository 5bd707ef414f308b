"""The held-out split: by normalized-prompt hash, so no prompt is on both sides.

The split is decided per *prompt* (its ``prompt_hash``), never per pair: all pairs of
one prompt land on the same side. It is a pure function of the prompt and the seed,
so it does not depend on row order, on the other rows, or on the filters: every
filter arm over one pool gets the same eval set.

With an existing eval split (``--eval-from test_prefs``) nothing is drawn: the pool's
pairs whose prompt occurs in that split are removed from train instead.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .text import normalize_column, sha16


def seeded_keys(values: pd.Series, seed: int) -> np.ndarray:
    """A seeded, uniform 64-bit key per value (siphash keyed by the seed).

    Equal values get equal keys, whatever else is in the table, so decisions made from
    keys (split side, sample membership) are stable across pools and filter arms.
    """
    return pd.util.hash_pandas_object(values.astype(str), index=False,
                                      hash_key=f"{seed % 10**16:016d}").to_numpy()


def eval_mask(prompt_hash: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """True for rows whose prompt falls in the held-out share ``fraction``."""
    if fraction <= 0:
        return np.zeros(len(prompt_hash), dtype=bool)
    unit = (seeded_keys(prompt_hash, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return unit < fraction


def prompt_hashes(pairs: pd.DataFrame) -> pd.Series:
    """The split key of each pair: the hash of its normalized prompt text."""
    return sha16(normalize_column(pairs["prompt_text"]))


def overlap_mask(prompt_hash: pd.Series, eval_pairs: pd.DataFrame) -> np.ndarray:
    """True for rows whose normalized prompt occurs in ``eval_pairs``."""
    return prompt_hash.isin(set(prompt_hashes(eval_pairs))).to_numpy()


def split_masks(prompt_hash: pd.Series, cfg, eval_pairs) -> tuple[np.ndarray, np.ndarray]:
    """(held out for eval, prompt seen in the given eval set): the eval split is drawn from the
    pool by prompt hash, unless an eval set is given, whose prompts are then kept out of training."""
    n = len(prompt_hash)
    if eval_pairs is None:
        return eval_mask(prompt_hash, cfg.eval_fraction, cfg.seed), np.zeros(n, dtype=bool)
    return np.zeros(n, dtype=bool), overlap_mask(prompt_hash, eval_pairs)
