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
* ``confidence``: cartography confidence (mean sigmoid of the margin while training);
* ``lossdiff`` and ``lossdiff_irm`` (Zhang et al., arXiv 2510.13212): with an auxiliary policy
  ``theta_val`` trained on the clean validation set, LossDiff = DPO loss under the audited
  policy minus DPO loss under ``theta_val`` (large: moving towards the validation set's model
  fits this label better); IRM = the audited policy's implicit reward margin. The paper keeps
  pairs in the middle interval of both; its low interval is the noise, so as a flagging score
  ``lossdiff_irm`` is the mean percentile rank of the two (low = both low). NaN unless the
  audit is given a validation run (``AuditConfig.validation_run``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..preference import rating_gap, reward_margin, sigmoid_loss

#: score -> one-line meaning (report and README reuse these).
BASELINES: dict[str, str] = {
    "rating_gap": "annotator rating gap, |score_chosen - score_rejected| (aspect means when unscored)",
    "implicit_margin": "trained policy's implicit reward margin (beta-scaled log-ratio difference)",
    "policy_margin": "trained policy's reference-free margin, log pi(chosen) - log pi(rejected)",
    "base_margin": "base model's reference-free margin, log ref(chosen) - log ref(rejected)",
    "loss_difference": "reference-free DPO loss under the base minus under the trained policy",
    "confidence": "cartography confidence: mean sigmoid(margin) over training passes",
    "lossdiff": "LossDiff (arXiv 2510.13212): DPO loss under the audited policy minus under an auxiliary policy "
                "trained on the clean validation set",
    "lossdiff_irm": "LossDiff-IRM (arXiv 2510.13212): mean percentile rank of LossDiff and the implicit reward "
                    "margin (IRM); low = both low, the paper's noise interval",
}
#: Baselines defined only when the audit has a policy trained on the validation set.
NEEDS_VALIDATION_RUN = ("lossdiff", "lossdiff_irm")


def dpo_loss(policy: pd.DataFrame, reference: pd.DataFrame, beta: float) -> np.ndarray:
    """Per-pair sigmoid DPO loss -log sigmoid(beta * ((pc - rc) - (pr - rr)))."""
    return sigmoid_loss(reward_margin(policy["chosen_logps"], policy["rejected_logps"],
                                      reference["chosen_logps"], reference["rejected_logps"], beta))


def baseline_scores(pairs: pd.DataFrame, policy: pd.DataFrame, reference: pd.DataFrame,
                    carto: pd.DataFrame, *, beta: float,
                    validation_policy: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per pair of ``pairs`` (same order) with every :data:`BASELINES` column.

    ``policy`` / ``reference``: :func:`pairlab.logprobs.sequence_logps` frames for the same
    pairs (``chosen_logps``, ``rejected_logps``); ``carto``: :func:`cartography` output;
    ``validation_policy``: the same under a policy trained on the clean validation set
    (LossDiff), else the LossDiff columns are NaN.
    """
    pc, pr = policy["chosen_logps"].to_numpy(float), policy["rejected_logps"].to_numpy(float)
    rc, rr = reference["chosen_logps"].to_numpy(float), reference["rejected_logps"].to_numpy(float)
    policy_margin = pc - pr
    base_margin = rc - rr
    conf = carto.set_index("pair_id")["confidence"] if len(carto) else pd.Series(dtype=float)
    implicit = reward_margin(pc, pr, rc, rr, beta)
    if validation_policy is not None:
        lossdiff = dpo_loss(policy, reference, beta) - dpo_loss(validation_policy, reference, beta)
        ranks = pd.DataFrame({"a": lossdiff, "b": implicit}).rank(pct=True).mean(axis=1).to_numpy()
    else:
        lossdiff = ranks = np.full(len(pairs), np.nan)
    return pd.DataFrame({
        "pair_id": pairs["pair_id"].astype(str).to_numpy(),
        # absolute: see the module docstring (a signed gap would leak the injected flips)
        "rating_gap": rating_gap(pairs, aspect_fallback=True).abs().to_numpy(float),
        "implicit_margin": implicit,
        "policy_margin": policy_margin,
        "base_margin": base_margin,
        "loss_difference": sigmoid_loss(beta * base_margin) - sigmoid_loss(beta * policy_margin),
        "confidence": pairs["pair_id"].astype(str).map(conf).to_numpy(float),
        "lossdiff": lossdiff,
        "lossdiff_irm": ranks,
    })


def rank_average(scores: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Unsupervised combination: mean of the columns' percentile ranks (NaN ranks skipped)."""
    ranks = scores[columns].rank(pct=True)
    return ranks.mean(axis=1, skipna=True).to_numpy()
