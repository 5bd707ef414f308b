"""The real UltraFeedback / hh-rlhf rows in ../shared/data, for robustness tests.

Tests read them from beside the checkout (never copied into the repo) and skip cleanly
when the folder is absent. Importable from any test folder (pytest `pythonpath = tests`).
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    return path
