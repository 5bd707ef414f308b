"""Statistics for comparing evaluations: bootstrap intervals, McNemar's exact test.

Pure numpy/scipy functions of per-pair arrays; seeded so reports are reproducible.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0, statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over the rows of ``values``."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    boots = statistic(values[idx], axis=1)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test on paired per-pair correctness (two-sided binomial on discordants).

    ``b`` = pairs A got right and B wrong, ``c`` = the reverse; under H0 each
    discordant pair is a fair coin.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_arr = np.asarray(correct_b, dtype=bool)
    if a.shape != b_arr.shape:
        raise ValueError("McNemar needs the same pairs in both evaluations")
    b = int(np.sum(a & ~b_arr))
    c = int(np.sum(~a & b_arr))
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)
    return {"a_only_correct": b, "b_only_correct": c, "n_discordant": b + c, "p_value": p}


def paired_bootstrap(x_a: np.ndarray, x_b: np.ndarray, *, n_boot: int = 2000,
                     seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of mean(x_b - x_a): CI and a two-sided p-value for 'no difference'."""
    d = np.asarray(x_b, dtype=float) - np.asarray(x_a, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    boots = d[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    # Share of bootstrap means on the far side of zero, doubled (percentile-test p-value).
    p = min(1.0, 2.0 * min(np.mean(boots <= 0), np.mean(boots >= 0)))
    return {"mean_difference": float(d.mean()), "ci95": [float(lo), float(hi)],
            "p_value": float(max(p, 1.0 / n_boot))}
