"""Audit: which training pairs drove alignment, validated where the truth is known.

* :func:`audit` - run + held-out pairs -> attribution.parquet (TracIn over checkpoints with
  projected per-pair LoRA gradients, cheap baselines, cartography) + audit.html.
* :func:`run_validation` - simulate (a noise type) -> curate -> train -> audit against a clean
  validation set -> detection metrics -> counterfactual retraining.
* :func:`run_suite` - every noise type x seeds, the goal per noise type, pooled counterfactual arms.
* :data:`ATTRIBUTION_SCORES` - the registry of every score (name -> help, kind).
* :func:`cartography`, :func:`baseline_scores`, :func:`tracin`, :func:`datainf`,
  :func:`fisher_influence`, :func:`ekfac_influence` - the pure parts.

Heavy imports happen when a function runs.
"""
from __future__ import annotations

from .attribution import GRADIENT_SCORES, INFLUENCE_SCORES, checkpoint_terms, tracin, tracin_terms
from .baselines import BASELINES, baseline_scores, rank_average
from .cartography import cartography
from .influence import datainf, ekfac_influence, fisher_influence
from .registry import ATTRIBUTION_SCORES, AttributionScore

__all__ = ["ATTRIBUTION_SCORES", "AttributionScore", "AuditConfig", "BASELINES", "GRADIENT_SCORES",
           "INFLUENCE_SCORES", "ValidateConfig", "audit", "baseline_scores", "cartography", "checkpoint_terms",
           "datainf", "ekfac_influence", "fisher_influence", "rank_average", "run_validation", "run_suite", "tracin",
           "tracin_terms"]


def __getattr__(name):
    if name in ("audit", "AuditConfig", "AuditResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("run_validation", "ValidateConfig"):
        from .validate import ValidateConfig, run_validation

        return {"run_validation": run_validation, "ValidateConfig": ValidateConfig}[name]
    if name in ("run_suite", "SuiteConfig"):
        from . import suite

        return getattr(suite, name)
    raise AttributeError(name)
