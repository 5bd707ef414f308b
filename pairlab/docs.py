"""Keep the README's CLI reference generated from the parsers themselves.

``python -m pairlab.docs`` rewrites the block between ``<!-- section:cli -->`` and
``<!-- /section:cli -->`` in README.md with every subcommand's ``--help``; a test fails
when the README is out of date.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(<!-- section:cli -->\n).*?(<!-- /section:cli -->)", re.S)


def cli_reference() -> str:
    from .cli import build_parser

    os.environ["COLUMNS"] = "100"  # stable wrapping whatever the terminal
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["Generated from the parsers (`python -m pairlab.docs`). Every command that reads "
             "pairs takes `--input SPEC [--format F] [--map FIELD=PATH]...`; errors in data or "
             "config exit with status 2 and a message naming the file, line and field.", "",
             "```text", parser.format_help().rstrip(), "```", ""]
    for name, p in sub.choices.items():
        lines += [f"### `pairlab {name}`", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def render_readme(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + cli_reference() + m.group(2), text)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    README.write_text(render_readme(text), encoding="utf-8")
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
