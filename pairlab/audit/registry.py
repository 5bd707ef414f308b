"""``ATTRIBUTION_SCORES``: every score the audit writes, by name; the report, the docs and the
validation read this registry instead of their own lists.

Every score is oriented the same way: higher = the pair looks more helpful / trustworthy, so
the most negative are the flagged (harmful) ones.
"""
from __future__ import annotations

from dataclasses import dataclass

from .attribution import GRADIENT_SCORES, INFLUENCE_SCORES
from .baselines import BASELINES, NEEDS_VALIDATION_RUN

#: kind -> meaning
KINDS = {"gradient": "TracIn family: gradients over checkpoints, no curvature",
         "influence": "curvature-aware influence against the clean validation set",
         "baseline": "free: no gradients (log-probs, ratings, training dynamics)",
         "combination": "an unsupervised combination of other scores"}


@dataclass(frozen=True)
class AttributionScore:
    name: str
    help: str
    kind: str            # a KINDS key
    needs: str = ""      # what must be given for the score to be defined ('' = always)

    @property
    def free(self) -> bool:
        """True for the scores that need no gradients (the bar the others must beat)."""
        return self.kind == "baseline"


def _registry() -> dict[str, AttributionScore]:
    out = {name: AttributionScore(name, text, "influence" if name in INFLUENCE_SCORES else "gradient")
           for name, text in GRADIENT_SCORES.items()}
    out.update({name: AttributionScore(name, text, "baseline",
                                       "validation_run" if name in NEEDS_VALIDATION_RUN else "")
                for name, text in BASELINES.items()})
    out["rank_average"] = AttributionScore("rank_average", "mean percentile rank of the configured `combine` "
                                           "scores", "combination")
    return out


ATTRIBUTION_SCORES: dict[str, AttributionScore] = _registry()


def register_attribution_score(name: str, help: str, kind: str, needs: str = "") -> AttributionScore:
    """Add a score to :data:`ATTRIBUTION_SCORES`: the audit report (its column in the histograms,
    correlation matrix and score table) and the docs read it from here. ``kind``: a :data:`KINDS` key."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if name in ATTRIBUTION_SCORES:
        raise ValueError(f"attribution score {name!r} is already registered")
    ATTRIBUTION_SCORES[name] = spec = AttributionScore(name, help, kind, needs)
    return spec
