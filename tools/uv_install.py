"""Install packages into a venv with uv, under pip's own configuration.

``make install`` uses it: uv installs the stack in seconds where pip takes about a minute
and a half (most of it unpacking torch and the pinned stack). uv does not read pip's
configuration, so this translates what ``pip config list`` reports (index URLs, find-links,
constraints, the CA bundle; environment variables first, as pip ranks them) into uv's
options, and resolves across every index the way pip does (best match). It exits non-zero
when uv fails, so the Makefile falls back to pip.

    python tools/uv_install.py VENV_PYTHON [uv pip install arguments ...]
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: pip option -> (uv flag, several values separated by whitespace)
OPTIONS = {
    "index-url": ("--index-url", False),
    "extra-index-url": ("--extra-index-url", True),
    "find-links": ("--find-links", True),
    "constraint": ("--constraint", True),
    "no-index": ("--no-index", False),
}
#: Two names of one pip option.
ALIASES = {"default-timeout": "timeout"}
#: pip's true values (strtobool)
TRUE = ("1", "y", "yes", "t", "true", "on")
#: pip ranks its sources: environment variables over the install section over global.
SECTIONS = (":env:", "install", "global")


def pip_config(python: str) -> dict[str, str]:
    """``{option: value}`` of pip's effective configuration, as ``pip config list`` shows it."""
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True,
                         check=False).stdout
    return parse_pip_config(out)


def parse_pip_config(text: str) -> dict[str, str]:
    found: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        section, dot, option = key.rpartition(".")
        if not sep or not dot:
            continue
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        option = ALIASES.get(option, option)
        if str(value).strip():  # pip ignores an empty value
            found.setdefault((section, option), str(value))
    config: dict[str, str] = {}
    for option in {option for _, option in found}:
        for section in SECTIONS:
            if (section, option) in found:
                config[option] = found[(section, option)]
                break
    return config


def uv_arguments(config: dict[str, str]) -> list[str]:
    args = ["--index-strategy", "unsafe-best-match"]
    for option, (flag, several) in OPTIONS.items():
        value = config.get(option)
        if value is None:
            continue
        if flag == "--no-index":
            if value.lower() in TRUE:
                args.append(flag)
            continue
        for item in value.split() if several else [value]:
            args += [flag, item]
    return args


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    python, packages = argv[0], argv[1:]
    uv = Path(python).parent / "uv"
    uv = str(uv) if uv.exists() else shutil.which("uv")
    if uv is None:
        return 1
    config = pip_config(python)
    env = dict(os.environ)
    if config.get("cert") and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = config["cert"]
    if config.get("timeout"):
        env.setdefault("UV_HTTP_TIMEOUT", config["timeout"])
    # --no-config: uv's own uv.toml files must not change what pip's configuration says
    command = [uv, "pip", "install", "--quiet", "--no-config", "--python", python, *uv_arguments(config),
               *packages]
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
