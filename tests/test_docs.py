"""The documentation site: generated pages are current, every documented command parses,
and the site builds with ``mkdocs build --strict``."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pairlab.cli import build_parser
from pairlab.docs import DOCS, ROOT, stale_pages

README = ROOT / "README.md"
_FENCE = re.compile(r"```(?:bash|console|sh|text)?\n(.*?)```", re.S)


def _documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every `pairlab ...` line in a code block of the README and docs/."""
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    found = []
    for page in pages:
        if "reference/cli.md" in str(page):
            continue  # --help output, not commands
        for block in _FENCE.findall(page.read_text(encoding="utf-8")):
            block = block.replace("\\\n", " ")
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ")
                if not line.startswith("pairlab "):
                    continue
                line = re.split(r" #|;|&&|\|\|| >", line, maxsplit=1)[0].strip()
                if line.split()[1].endswith(":"):
                    continue  # printed output ("pairlab inspect: note: ..."), not a command
                if any(mark in line for mark in ("[", "…", "...", "|", "<", "$")):
                    continue  # a usage template, not a runnable command
                found.append((str(page.relative_to(ROOT)), line))
    return found


def test_generated_pages_are_current():
    assert stale_pages() == [], "run `python -m pairlab.docs` and commit docs/"


def test_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_docs_hold_commands():
    assert len(_documented_commands()) >= 20


@pytest.mark.parametrize("page,command", _documented_commands())
def test_documented_command_parses(page, command):
    parser = build_parser()
    argv = shlex.split(command)[1:]
    try:
        parser.parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{page}: `{command}` does not parse (exit {exc.code})")


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is a test dependency (pip install -e '.[test]')"
    out = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
