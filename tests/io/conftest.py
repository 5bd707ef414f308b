"""Fixtures for tests/io; the record builders live in io_fixtures.py (importable by name)."""
from __future__ import annotations

import pytest

from io_fixtures import write_jsonl


@pytest.fixture
def jsonl(tmp_path):
    """``jsonl(records, name="data.jsonl") -> Path`` writes a fixture file in tmp_path."""
    def make(records, name: str = "data.jsonl"):
        return write_jsonl(tmp_path / name, records)
    return make
