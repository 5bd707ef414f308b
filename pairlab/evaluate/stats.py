"""The statistics evaluate uses, from the shared floor-2 module :mod:`pairlab.stats`.

Kept as an import path for :mod:`.metrics` and older callers; the code lives once, in
``pairlab/stats.py`` (bootstrap, McNemar, power, the paired comparison in one orientation).
"""
from __future__ import annotations

from ..stats import bootstrap_ci, mcnemar_exact, paired_bootstrap, paired_comparison

__all__ = ["bootstrap_ci", "mcnemar_exact", "paired_bootstrap", "paired_comparison"]
