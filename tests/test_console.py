"""A quiet console: the CLI keeps library notices (bitsandbytes' kernel notice, FutureWarnings)
off the terminal, shows everything else as before, and a run's log file still records them."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import logging, sys, warnings
from pairlab.console import quiet_console

quiet_console()
quiet_console()  # idempotent: one handler, each line once
log_file = logging.FileHandler(sys.argv[1], encoding="utf-8")
for name in ("bitsandbytes", "py.warnings"):  # as ablate's run_log attaches its log.txt
    logging.getLogger(name).addHandler(log_file)
logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
    "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'")
warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
warnings.warn("a warning a user should see", UserWarning)
logging.getLogger("pairlab.something").warning("a pairlab warning")
"""


def test_library_notices_stay_off_the_console_but_reach_the_log(tmp_path):
    log = tmp_path / "log.txt"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "gemm_4bit_forward" not in proc.stderr and "FutureWarning" not in proc.stderr
    assert proc.stderr.count("a warning a user should see") == 1
    assert proc.stderr.count("a pairlab warning") == 1
    kept = log.read_text(encoding="utf-8")
    assert "gemm_4bit_forward" in kept and "FutureWarning" in kept


def test_pyproject_uses_the_spdx_license_string():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # not the deprecated {text = ...} table
    requires = project["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in requires)  # SPDX needs 77+
