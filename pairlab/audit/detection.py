"""How well a score flags the mislabeled pairs, where the truth is known. Pure.

Every score is oriented higher = more trustworthy, so the flag ranking is ``-score``:
* AUROC: the chance a random mislabeled pair ranks below a random clean one (0.5 = chance);
* AUPRC (average precision): area under precision-recall; chance = the mislabeled share;
* precision@k with k = the number of mislabeled pairs: the share of mislabeled among the k
  lowest (equal to recall@k at this k). Ties at the cut are broken by row order.
Undefined (None) when a score is all NaN or only one class is present.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def detection_metrics(flag: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    flag = np.asarray(flag, dtype=bool)
    score = np.asarray(score, dtype=float)
    k = int(flag.sum())
    ok = ~np.isnan(score)
    if ok.sum() < 2 or flag[ok].all() or not flag[ok].any():
        return {"auroc": None, "auprc": None, "precision_at_k": None, "k": k}
    lowest = np.argsort(np.where(ok, score, np.inf), kind="stable")[:k]
    return {"auroc": float(roc_auc_score(flag[ok], -score[ok])),
            "auprc": float(average_precision_score(flag[ok], -score[ok])),
            "precision_at_k": float(flag[lowest].mean()) if k else None, "k": k}


def detection_table(scores: pd.DataFrame, flag: np.ndarray, columns: list[str]) -> dict[str, dict[str, Any]]:
    """score -> :func:`detection_metrics`, for the ``columns`` present in ``scores``."""
    return {c: detection_metrics(flag, scores[c].to_numpy(float)) for c in columns if c in scores}
