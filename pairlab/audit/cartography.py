"""Dataset cartography (Swayamdipta et al., 2020) from the training dynamics. Pure.

Every time a pair is trained on, ``dynamics.parquet`` records its implicit reward margin
under the policy of that moment. Per pair:

* confidence  = mean over passes of sigmoid(margin): the policy's probability for the label;
* variability = sd of sigmoid(margin) over passes (0 when the pair was seen once);
* correctness = share of passes with margin > 0.

Regions: *ambiguous* = variability in the top third (and > 0); of the rest, *easy* when
confidence >= 0.5, else *hard-to-learn* (the region where mislabeled pairs gather). With a
single epoch every pair has one pass, variability is 0 and only confidence separates pairs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ("easy", "ambiguous", "hard-to-learn")
CARTOGRAPHY_COLUMNS = ["pair_id", "confidence", "variability", "correctness", "passes", "region"]


def cartography(dynamics: pd.DataFrame, *, ambiguous_quantile: float = 2 / 3) -> pd.DataFrame:
    """Per pair confidence, variability, correctness, passes and region from dynamics rows."""
    if dynamics.empty:
        return pd.DataFrame(columns=CARTOGRAPHY_COLUMNS)
    p = 1.0 / (1.0 + np.exp(-dynamics["margin"].astype(float).to_numpy()))
    frame = pd.DataFrame({"pair_id": dynamics["pair_id"].astype(str).to_numpy(), "p": p,
                          "correct": dynamics["margin"].to_numpy() > 0})
    by = frame.groupby("pair_id", sort=False)
    out = pd.DataFrame({"confidence": by["p"].mean(), "variability": by["p"].std(ddof=0),
                        "correctness": by["correct"].mean(), "passes": by.size()}).reset_index()
    out["variability"] = out["variability"].fillna(0.0)
    cut = out["variability"].quantile(ambiguous_quantile)
    ambiguous = (out["variability"] >= cut) & (out["variability"] > 0)
    out["region"] = np.where(ambiguous, "ambiguous",
                             np.where(out["confidence"] >= 0.5, "easy", "hard-to-learn"))
    return out[CARTOGRAPHY_COLUMNS]
