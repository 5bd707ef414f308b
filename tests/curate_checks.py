"""Helpers shared by the curation tests (a module, not conftest, so any test order imports them):
a pair row, and the check that two curation directories hold the same outputs."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

def pair(prompt, chosen="A fine answer.", rejected="A worse answer.", sc=8.0, sr=4.0, **extra):
    """One raw pair row: a prompt (text or messages), two answers and their ratings."""
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return {"prompt": messages, "chosen": chosen, "rejected": rejected,
            "score_chosen": sc, "score_rejected": sr, **extra}


#: The tables every curation directory holds.
FILES = ["pairs.parquet", "eval.parquet", "dropped.parquet", "scores.parquet"]


def same_outputs(a: Path, b: Path) -> None:
    """Same tables (values; dtypes may widen), counts, steps and pool content hash."""
    for name in FILES:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), check_dtype=False,
                                      obj=name)
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["counts"] == mb["counts"] and ma["steps"] == mb["steps"]
    assert ma["inputs"]["pool"]["content_sha256"] == mb["inputs"]["pool"]["content_sha256"]
