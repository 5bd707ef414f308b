"""``comparison.parquet``: the ablation's comparison as one flat row per arm x seed (for notebooks).

Built from the final comparison dict (what ``comparison.json`` holds), so both files always
say the same thing: each row carries the seed's own figures, the arm's curation counts,
and the arm's pooled comparison with the baseline (``vs_baseline.*``, repeated on each of
the arm's rows). Nested values are flattened with dotted names; a ``*_ci95`` pair becomes
``*_ci95_lo`` / ``*_ci95_hi``; other lists and mappings are stored as JSON text.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .. import artifacts
from ..dirs import AblationDir

COMPARISON_TABLE = AblationDir.COMPARISON_TABLE
#: Arm-level fields copied onto each of the arm's rows (the seed's own fields come next).
ARM_FIELDS = ("is_baseline", "filters", "pairs_kept", "pairs_dropped", "true_label_noise")


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(inner, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)) and prefix.endswith("ci95") and len(value) == 2:
        out[f"{prefix}_lo"], out[f"{prefix}_hi"] = value
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value, default=str)
    else:
        out[prefix] = value


def comparison_table(comparison: dict[str, Any]) -> pd.DataFrame:
    """One row per arm x seed from a comparison dict (``comparison.json``)."""
    rows = []
    for arm in comparison.get("arms", []):
        for entry in arm.get("seeds", []):
            row: dict[str, Any] = {"arm": arm["name"], "seed": entry.get("seed")}
            for key in ARM_FIELDS:
                _flatten(arm.get(key), key, row)
            _flatten({k: v for k, v in entry.items() if k != "seed"}, "", row)
            _flatten(arm.get("vs_baseline") or {}, "vs_baseline", row)
            rows.append(row)
    frame = pd.DataFrame(rows)
    # Parquet wants one type per column: a column mixing numbers and text (rare) becomes text.
    for col in frame.columns:
        kinds = {type(v) for v in frame[col] if v is not None and not (isinstance(v, float) and pd.isna(v))}
        if len(kinds) > 1 and str in kinds:
            frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    return frame


def write_comparison_table(comparison: dict[str, Any], root: str | Path) -> Path:
    path = Path(root) / COMPARISON_TABLE
    artifacts.write_parquet(path, comparison_table(comparison))
    return path
