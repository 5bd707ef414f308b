"""comparison.parquet: the comparison dict as one flat row per arm x seed (no model)."""
from __future__ import annotations

import pandas as pd
import pytest

from pairlab.ablate.table import comparison_table, write_comparison_table

COMPARISON = {"arms": [
    {"name": "all", "is_baseline": True, "filters": [], "pairs_kept": 50, "pairs_dropped": 0,
     "true_label_noise": 0.12, "vs_baseline": None,
     "seeds": [{"seed": 0, "status": "done", "accuracy": 0.5, "accuracy_ci95": [0.3, 0.7],
                "by_source": {"facts": 0.4}},
               {"seed": 1, "status": "done", "accuracy": 0.55, "accuracy_ci95": [0.35, 0.75],
                "by_source": {"facts": 0.5}}]},
    {"name": "gap1", "is_baseline": False, "filters": [{"min_rating_gap": 1.0}], "pairs_kept": 30,
     "pairs_dropped": 20, "true_label_noise": 0.02,
     "vs_baseline": {"delta": 0.1, "p_value": 0.04, "significant": True, "ci95": [0.01, 0.2]},
     "seeds": [{"seed": 0, "status": "done", "accuracy": 0.6, "accuracy_ci95": [0.4, 0.8], "delta_accuracy": 0.1},
               {"seed": 1, "status": "missing"}]},
]}


def test_one_row_per_arm_and_seed_with_flat_columns(tmp_path):
    table = comparison_table(COMPARISON)
    assert list(zip(table["arm"], table["seed"])) == [("all", 0), ("all", 1), ("gap1", 0), ("gap1", 1)]
    assert table["accuracy"].tolist()[:3] == [0.5, 0.55, 0.6] and pd.isna(table["accuracy"].iloc[3])
    assert table["accuracy_ci95_lo"].tolist()[:3] == [0.3, 0.35, 0.4]
    assert table["by_source.facts"].tolist()[:2] == [0.4, 0.5]
    gap = table[table["arm"] == "gap1"]
    assert gap["vs_baseline.delta"].tolist() == [0.1, 0.1] and gap["vs_baseline.ci95_hi"].tolist() == [0.2, 0.2]
    assert table["vs_baseline.significant"].iloc[0] is None or pd.isna(table["vs_baseline.significant"].iloc[0])
    assert gap["filters"].iloc[0] == '[{"min_rating_gap": 1.0}]' and gap["pairs_dropped"].iloc[0] == 20
    path = write_comparison_table(COMPARISON, tmp_path)
    back = pd.read_parquet(path)
    assert back.shape == table.shape and back["arm"].tolist() == table["arm"].tolist()
    assert back["accuracy"].iloc[2] == pytest.approx(0.6)
