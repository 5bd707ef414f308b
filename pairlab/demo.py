"""`make demo`: the main job on embedded defaults, offline.

Runs ``pairlab ablate --config examples/ablation-demo.yaml --out demo_out`` (simulator
data with label noise, SmolLM2-135M-Instruct in 4-bit, two arms: every pair against a
rating-gap filter, on 220 held-out pairs) and prints the comparison report's path.
Re-running resumes: finished arms are skipped.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "ablation-demo.yaml"


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main
    from .dirs import AblationDir

    out = os.environ.get("PAIRLAB_DEMO_OUT", "demo_out")
    started = time.time()
    code = cli_main(["ablate", "--config", str(CONFIG), "--out", out, *(argv or [])])
    if code == 0:
        report = Path(out).resolve() / AblationDir.REPORT
        print(f"\ndemo finished in {time.time() - started:.0f} s")
        print(f"comparison report: {report}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
