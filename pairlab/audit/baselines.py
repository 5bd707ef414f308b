"""Cheap scores that need no gradients, oriented like attribution: higher = the pair looks
more helpful / more trustworthy; the most negative are flagged as harmful. Pure.

* ``rating_gap``: |score_chosen - score_rejected| (the annotators' own confidence; absolute,
  because a binarized pair's chosen side is by construction the higher-rated one, and label
  noise injection swaps the scores with the texts, so a signed gap would leak the flips);
* ``implicit_margin``: the trained policy's implicit reward margin
  beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r)));
* ``policy_margin``: the trained policy's reference-free margin log pi(c) - log pi(r);
* ``base_margin``: the base model's reference-free margin log ref(c) - log ref(r);
* ``loss_difference``: reference-free DPO loss under the base minus under the policy,
  -log sigmoid(beta * base_margin) + log sigmoid(beta * policy_margin): how much training
  moved the model towards this label (negative: away from it, as a mislabeled pair is);
* ``confidence``: cartography confidence (mean sigmoid of the margin while training).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..simulate.noise import rating_gap

#: score -> one-line meaning (report and README reuse these).
BASELINES: dict[str, str] = {
    "rating_gap": "annotator rating gap, |score_chosen - score_rejected| (aspect means when unscored)",
    "implicit_margin": "trained policy's implicit reward margin (beta-scaled log-ratio difference)",
    "policy_margin": "trained policy's reference-free margin, log pi(chosen) - log pi(rejected)",
    "base_margin": "base model's reference-free margin, log ref(chosen) - log ref(rejected)",
    "loss_difference": "reference-free DPO loss under the base minus under the trained policy",
    "confidence": "cartography confidence: mean sigmoid(margin) over training passes",
}


def _logsigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def baseline_scores(pairs: pd.DataFrame, policy: pd.DataFrame, reference: pd.DataFrame,
                    carto: pd.DataFrame, *, beta: float) -> pd.DataFrame:
    """One row per pair of ``pairs`` (same order) with every :data:`BASELINES` column.

    ``policy`` / ``reference``: :func:`pairlab.logprobs.sequence_logps` frames for the same
    pairs (``chosen_logps``, ``rejected_logps``); ``carto``: :func:`cartography` output.
    """
    pc, pr = policy["chosen_logps"].to_numpy(float), policy["rejected_logps"].to_numpy(float)
    rc, rr = reference["chosen_logps"].to_numpy(float), reference["rejected_logps"].to_numpy(float)
    policy_margin = pc - pr
    base_margin = rc - rr
    conf = carto.set_index("pair_id")["confidence"] if len(carto) else pd.Series(dtype=float)
    return pd.DataFrame({
        "pair_id": pairs["pair_id"].astype(str).to_numpy(),
        "rating_gap": rating_gap(pairs).to_numpy(float),
        "implicit_margin": beta * ((pc - rc) - (pr - rr)),
        "policy_margin": policy_margin,
        "base_margin": base_margin,
        "loss_difference": -_logsigmoid(beta * base_margin) + _logsigmoid(beta * policy_margin),
        "confidence": pairs["pair_id"].astype(str).map(conf).to_numpy(float),
    })


def rank_average(scores: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Unsupervised combination: mean of the columns' percentile ranks (NaN ranks skipped)."""
    ranks = scores[columns].rank(pct=True)
    return ranks.mean(axis=1, skipna=True).to_numpy()
