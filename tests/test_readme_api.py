"""The README's Python API section runs as written (in an empty directory, tiny model)."""
from __future__ import annotations

import contextlib
import io
import re

import pytest

from realdata import REPO


def api_blocks() -> list[str]:
    # The README's section, or the docs page it moved to (the markers travel with it).
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        section = re.search(r"<!-- section:api -->(.*?)<!-- /section:api -->", page.read_text(encoding="utf-8"),
                            re.S)
        if section:
            return re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    raise AssertionError("no Python API section (<!-- section:api -->) in the README or docs/")


def test_api_section_has_examples():
    blocks = api_blocks()
    assert blocks and all("pairlab" in b for b in blocks)


@pytest.mark.slow
def test_api_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        for block in api_blocks():
            exec(compile(block, "README.md:python-api", "exec"), namespace)
    lines = printed.getvalue().splitlines()
    assert "Curation True" in lines
    assert any(line.endswith(" True") and line.startswith("(2, 2)") for line in lines), lines
    assert "'README.md'" in lines[-1] and "'trl_dpo.yaml'" in lines[-1] and "'data'" in lines[-1]
    assert namespace["by_source"].between(0, 1).all()
