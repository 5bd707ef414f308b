"""Fixtures for tests/curate: hand-built pools and an isolated score cache."""
from __future__ import annotations

import pytest

from curate_checks import pair

from pairlab.schema import build_pairs


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own $PAIRLAB_CACHE, so cache hits are only the test's own."""
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def make_pool():
    """``make_pool(n, seed_text="q")``: n distinct prompts with varied gaps, lengths, sources."""
    def make(n: int = 200, prefix: str = "question"):
        rows = []
        sources = ["evol_instruct", "truthful_qa", "ultrachat", "sharegpt"]
        for i in range(n):
            longer = "word " * (5 + (i * 7) % 40)
            shorter = "word " * (5 + (i * 3) % 20)
            chosen, rejected = (longer, shorter) if i % 3 else (shorter, longer)
            rows.append(pair(f"{prefix} {i}: explain topic {i * 31 % 97} in detail please",
                             f"{chosen} answer {i}", f"{rejected} reply {i}",
                             sc=float(1 + i % 10), sr=float(1 + (i * 3) % 10),
                             source=sources[i % 4]))
        return build_pairs(rows)
    return make
