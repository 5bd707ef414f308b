"""Statistics for comparing evaluations: bootstrap, McNemar, power, one paired comparison.

Every paired comparison in pairlab (``pairlab compare``, ``pairlab ablate``, the eval
report's baseline, audit validation) goes through :func:`paired_comparison`, in ONE
orientation:

* ``delta = accuracy(other) - accuracy(baseline)`` (positive: ``other`` is better);
* ``baseline_only_correct`` (McNemar's *b*): pairs the baseline got right and the other wrong;
* ``other_only_correct`` (McNemar's *c*): the reverse.

The test is McNemar's exact test: under "no difference" each discordant pair is a fair
coin, so ``p`` is the two-sided binomial p of *b* among *b + c* (the mid-p is given too,
for information; decisions use the exact p). The 95% CI of ``delta`` is a percentile
bootstrap over pairs.

**Power.** ``mde`` is the minimum detectable effect: the accuracy difference this design
would detect with ``power`` (80%) at two-sided ``alpha`` (0.05), given its number of paired
observations *n* and the observed discordance rate ψ = (b + c) / n. It solves Connor's
(1987) sample-size formula for McNemar's test (the unconditional normal approximation,
with variance ψ under H0 and ψ - δ² under the alternative δ)::

    n = (z_{1-α/2} √ψ + z_{power} √(ψ - δ²))² / δ²

for δ. ``statsmodels.stats.power.normal_power_het`` evaluates the same power function
(the tests check the round trip). With too few discordant pairs no δ ≤ ψ reaches the
power: ``mde`` is then None ("this design cannot detect a difference").

**Seeds.** Given one row per training seed (2-D arrays: seeds × pairs, the same pairs in
every row, each seed's arm paired with the same seed's baseline), the pairs × seeds
observations are pooled in one test: the stratified McNemar test, i.e. Cochran–Mantel–
Haenszel over (pair, seed) strata, which reduces to McNemar's exact test on the pooled
discordant counts. Its CI is a hierarchical bootstrap that resamples seeds and (crossed)
pairs, so it also carries the seed-to-seed spread, which McNemar treats as fixed; the
per-seed comparisons are returned next to the pooled one.

**Several arms.** :func:`holm` corrects the p-values of a family of comparisons (Holm's
step-down method through ``statsmodels``); a comparison is "significant" only when its
corrected p < α. :func:`describe` says all this in words.

Pure numpy/scipy/statsmodels functions of per-pair arrays; seeded, so reports reproduce.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

ALPHA = 0.05
POWER = 0.8
CORRECTION = "holm"


# ---------------------------------------------------------------- bootstrap

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


def paired_bootstrap(x_baseline: np.ndarray, x_other: np.ndarray, *, n_boot: int = 2000,
                     seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of mean(x_other - x_baseline) for continuous per-pair values (margins, losses):
    CI and a two-sided p-value for 'no difference'."""
    d = np.asarray(x_other, dtype=float) - np.asarray(x_baseline, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    boots = d[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    # Share of bootstrap means on the far side of zero, doubled (percentile-test p-value).
    p = min(1.0, 2.0 * min(np.mean(boots <= 0), np.mean(boots >= 0)))
    return {"mean_difference": float(d.mean()), "ci95": [float(lo), float(hi)],
            "p_value": float(max(p, 1.0 / n_boot))}


def hierarchical_bootstrap_ci(diff: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                              level: float = 0.95) -> list[float]:
    """Percentile CI of the mean of ``diff`` (seeds × pairs), resampling seeds and pairs.

    Pairs are resampled once per replicate and used for every seed (crossed design: the
    same eval pair appears under every seed), seeds independently of pairs. With one seed
    this is the ordinary paired bootstrap over pairs.
    """
    diff = np.atleast_2d(np.asarray(diff, dtype=float))
    n_seeds, n_pairs = diff.shape
    rng = np.random.default_rng(seed)
    # Multinomial counts are the resampling weights: mean = w_seed · D · w_pair / (S·N).
    w_seed = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot).astype(float)
    w_pair = rng.multinomial(n_pairs, np.full(n_pairs, 1 / n_pairs), size=n_boot).astype(float)
    boots = np.einsum("bs,sn,bn->b", w_seed, diff, w_pair) / (n_seeds * n_pairs)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


# ---------------------------------------------------------------- McNemar and power

def mcnemar_exact(baseline_correct: np.ndarray, other_correct: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test on paired correctness (any shape; every cell is one paired observation).

    Two-sided binomial on the discordant pairs; the mid-p (exact p minus the probability
    of the observed split) is less conservative and given for information.
    """
    from scipy import stats as sps  # here: `pairlab` commands start without scipy's 489 modules
    base = np.asarray(baseline_correct, dtype=bool)
    other = np.asarray(other_correct, dtype=bool)
    if base.shape != other.shape:
        raise ValueError("McNemar needs the same pairs in both evaluations")
    b = int(np.sum(base & ~other))
    c = int(np.sum(~base & other))
    n_disc = b + c
    if n_disc == 0:
        p = p_mid = 1.0
    else:
        p = float(sps.binomtest(b, n_disc, 0.5).pvalue)
        k = min(b, c)
        p_mid = float(min(1.0, 2 * sps.binom.cdf(k, n_disc, 0.5) - sps.binom.pmf(k, n_disc, 0.5)))
    return {"baseline_only_correct": b, "other_only_correct": c, "n_discordant": n_disc,
            "p_value": p, "p_value_mid": p_mid}


def mde(n: int, discordance: float, *, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Smallest accuracy difference detectable with ``power`` at two-sided ``alpha`` (Connor 1987).

    Solving n δ² = (A + B √(ψ - δ²))², A = z_{1-α/2} √ψ, B = z_power, for δ gives
    δ = (A √n + B √((n + B²) ψ - A²)) / (n + B²). None when no δ ≤ ψ reaches the power
    (too few observations for this discordance).
    """
    from scipy import stats as sps  # here: `pairlab` commands start without scipy's 489 modules
    if n <= 0 or not discordance > 0:
        return None
    a = sps.norm.isf(alpha / 2) * math.sqrt(discordance)
    b = sps.norm.ppf(power)
    root = (n + b * b) * discordance - a * a
    if root < 0:
        return None
    delta = (a * math.sqrt(n) + b * math.sqrt(root)) / (n + b * b)
    return float(delta) if delta <= discordance else None


def pairs_needed(diff: float, discordance: float, *, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Paired observations needed to detect ``diff`` with ``power`` at ``alpha`` (Connor 1987).

    None when ``diff`` exceeds the discordance (two classifiers that disagree on a share ψ
    of the pairs cannot differ in accuracy by more than ψ).
    """
    from scipy import stats as sps  # here: `pairlab` commands start without scipy's 489 modules
    if not 0 < diff <= discordance:
        return None
    za, zb = sps.norm.isf(alpha / 2), sps.norm.ppf(power)
    n = (za * math.sqrt(discordance) + zb * math.sqrt(discordance - diff * diff)) ** 2 / diff ** 2
    return int(math.ceil(n - 1e-9))


# ---------------------------------------------------------------- the paired comparison

def paired_comparison(baseline_correct: np.ndarray, other_correct: np.ndarray, *,
                      seeds: Sequence[Any] | None = None, alpha: float = ALPHA, power: float = POWER,
                      n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Accuracy of ``other`` against ``baseline`` on the same pairs: delta, CI, McNemar, MDE.

    1-D arrays: one evaluation each, aligned pair by pair. 2-D arrays (seeds × pairs): one
    row per training seed, pooled in one stratified test (see the module docstring), and
    ``per_seed`` holds each row's own comparison (its spread). ``seeds`` labels the rows.
    """
    base = np.asarray(baseline_correct, dtype=bool)
    other = np.asarray(other_correct, dtype=bool)
    if base.shape != other.shape:
        raise ValueError("a paired comparison needs the same pairs (and seeds) on both sides")
    pooled = base.ndim == 2
    base2, other2 = np.atleast_2d(base), np.atleast_2d(other)
    n = int(base.size)
    test = mcnemar_exact(base, other)
    discordance = test["n_discordant"] / n if n else 0.0
    out: dict[str, Any] = {
        "n_pairs": n,
        "accuracy_baseline": float(base.mean()) if n else None,
        "accuracy_other": float(other.mean()) if n else None,
        "delta": float(other.mean() - base.mean()) if n else None,
        "delta_ci95": hierarchical_bootstrap_ci(other2.astype(float) - base2.astype(float),
                                                n_boot=n_boot, seed=seed) if n else [None, None],
        **test,
        "discordance_rate": discordance,
        "test": "McNemar exact" if not pooled else "stratified McNemar exact (pairs x seeds)",
        "ci": "bootstrap over pairs" if not pooled else "hierarchical bootstrap over seeds and pairs",
        "alpha": alpha, "power": power,
        "mde": mde(n, discordance, alpha=alpha, power=power),
    }
    if pooled:
        labels = list(seeds) if seeds is not None else list(range(base2.shape[0]))
        out["n_seeds"] = int(base2.shape[0])
        out["n_pairs_per_seed"] = int(base2.shape[1])
        out["per_seed"] = [{"seed": s, **{k: v for k, v in paired_comparison(
            base2[i], other2[i], alpha=alpha, power=power, n_boot=n_boot, seed=seed).items()
            if k not in ("test", "ci", "alpha", "power")}} for i, s in enumerate(labels)]
        deltas = [r["delta"] for r in out["per_seed"]]
        out["per_seed_delta_sd"] = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else None
    return out


def holm(p_values: Sequence[float], *, alpha: float = ALPHA) -> list[float]:
    """Holm-corrected p-values (statsmodels ``multipletests``), in the input order."""
    if not len(p_values):
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(p_values), alpha=alpha, method="holm")[1]]


def with_holm(comparisons: Sequence[dict[str, Any]], *, alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Each comparison with ``p_holm``, ``correction``, ``n_comparisons``, ``significant`` and ``verdict``."""
    corrected = holm([c["p_value"] for c in comparisons], alpha=alpha)
    out = []
    for c, p in zip(comparisons, corrected):
        c = {**c, "p_holm": p, "correction": CORRECTION, "n_comparisons": len(comparisons),
             "significant": bool(p < alpha)}
        c["verdict"] = describe(c)
        out.append(c)
    return out


# ---------------------------------------------------------------- in words

def _p(p: float) -> str:
    return f"{p:.2g}"


def design_text(c: dict[str, Any]) -> str:
    """'48 pairs' or '48 pairs x 3 seeds'."""
    if c.get("n_seeds", 1) > 1:
        return f"{c['n_pairs_per_seed']:,} pairs × {c['n_seeds']} seeds"
    return f"{c['n_pairs']:,} pairs"


def describe(c: dict[str, Any]) -> str:
    """'+9.0 points (95% CI ...), significant (p = ..., Holm-corrected ...)' or
    '-14.6 points (95% CI ...), not significant (p = 0.21, Holm-corrected 0.42); with 48 pairs
    this design detects only differences ≥ 27 points'."""
    p_text = f"p = {_p(c['p_value'])}"
    if c.get("p_holm") is not None and c.get("n_comparisons", 1) > 1:
        p_text += f", Holm-corrected {_p(c['p_holm'])}"
    significant = c.get("significant", c["p_value"] < c.get("alpha", ALPHA))
    lo, hi = c["delta_ci95"]
    delta = f"{100 * c['delta']:+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f})"
    if significant:  # the power too: what size of difference this design could have missed
        power = (f"; with {design_text(c)} this design detects differences ≥ {100 * c['mde']:.0f} points"
                 if c.get("mde") is not None else "")
        return f"{delta}, significant ({p_text}){power}"
    if c.get("mde") is None:
        return (f"{delta}, not significant ({p_text}); with {design_text(c)} ({c['n_discordant']} discordant) "
                f"this design cannot detect any difference with {100 * c.get('power', POWER):.0f}% power")
    return (f"{delta}, not significant ({p_text}); with {design_text(c)} this design detects only "
            f"differences ≥ {100 * c['mde']:.0f} points")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def verdict(comparisons: Mapping[str, dict[str, Any] | None], baseline: str, *,
            notes: Mapping[str, str] | None = None, noun: str = "arm") -> dict[str, Any]:
    """The answer over several paired comparisons against one baseline, in words; a winner only
    where the design detected one. The one decision rule of ``pairlab compare``, ``ablate`` and
    the audit validation's counterfactual arms.

    ``comparisons``: name -> its comparison with the baseline (:func:`paired_comparison`, then
    :func:`with_holm`), or None when not compared yet. A name wins when it beats the baseline with
    Holm-corrected p < alpha (the largest such delta when several do); the baseline wins when it
    is significantly better than every other; otherwise there is no winner and the text says what
    the design could detect. ``notes``: a clause appended to a winner's line (e.g. its label noise).
    """
    tested = {name: c for name, c in comparisons.items() if c}
    out: dict[str, Any] = {"winner": None, "better": [], "worse": [], "correction": CORRECTION, "alpha": ALPHA,
                           "n_comparisons": len(tested)}
    if not tested:
        return {**out, "text": f"Nothing to compare yet: the baseline '{baseline}' and at least one other "
                               f"{noun} need an evaluation on the same pairs."}
    alpha = next(iter(tested.values())).get("alpha", ALPHA)
    out["alpha"] = alpha
    better = [n for n, c in tested.items() if c["significant"] and c["delta"] > 0]
    worse = [n for n, c in tested.items() if c["significant"] and c["delta"] < 0]
    unclear = [n for n, c in tested.items() if not c["significant"]]
    out.update(better=better, worse=worse)
    correction = (f"McNemar's exact test, Holm correction over {len(tested)} comparisons at α = {alpha}"
                  if len(tested) > 1 else f"McNemar's exact test at α = {alpha}, one comparison (no correction)")
    base_acc = _pct(next(iter(tested.values()))["accuracy_baseline"])

    def line(name: str) -> str:
        return f"'{name}' {_pct(tested[name]['accuracy_other'])}: {describe(tested[name])}"

    if better:
        win = max(better, key=lambda n: tested[n]["delta"])
        out["winner"] = win
        text = f"'{win}' beats the baseline '{baseline}' ({base_acc}): {line(win)}{(notes or {}).get(win, '')}."
        rest = [n for n in better if n != win]
        if rest:
            text += " Also better than the baseline (not tested against each other): " + "; ".join(
                line(n) for n in rest) + "."
        if unclear:
            text += " Not detectably different from the baseline: " + "; ".join(line(n) for n in unclear) + "."
    elif len(worse) == len(tested):
        out["winner"] = baseline
        text = (f"The baseline '{baseline}' ({base_acc}) beats every other {noun}: "
                + "; ".join(line(n) for n in worse) + ".")
    else:
        text = (f"No {noun} {'is detectably better than' if worse else 'differs detectably from'} the baseline "
                f"'{baseline}' ({base_acc}): " + "; ".join(line(n) for n in unclear) + ".")
    if worse and out["winner"] != baseline:
        text += " Significantly worse than the baseline: " + "; ".join(line(n) for n in worse) + "."
    return {**out, "text": f"{text} ({correction}.)"}


__all__ = ["ALPHA", "CORRECTION", "POWER", "bootstrap_ci", "describe", "design_text",
           "hierarchical_bootstrap_ci", "holm", "mcnemar_exact", "mde", "paired_bootstrap",
           "paired_comparison", "pairs_needed", "verdict", "with_holm"]
