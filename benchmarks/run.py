"""`make bench`: run every ``benchmarks/bench_*.py`` and write machine-readable results.

Each bench module exposes ``main(out_dir: Path) -> dict`` and returns its figures;
this runner writes them to ``bench_results/<name>.json`` and a combined
``bench_results/summary.json``. Pass names to run a subset:
``python -m benchmarks.run curate train``.
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from pairlab.artifacts import environment, write_json

OUT = Path("bench_results")


def main(argv: list[str]) -> int:
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    wanted = [a for a in argv if not a.startswith("-")]
    if wanted:
        names = [n for n in names if n.removeprefix("bench_") in wanted or n in wanted]
    OUT.mkdir(exist_ok=True)
    summary = {"environment": environment(), "results": {}}
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.time()
        module = importlib.import_module(f"benchmarks.{name}")
        result = module.main(OUT)
        result["bench_wall_s"] = round(time.time() - t0, 2)
        write_json(OUT / f"{name.removeprefix('bench_')}.json", result)
        summary["results"][name.removeprefix("bench_")] = result
        print(f"   -> {OUT / (name.removeprefix('bench_') + '.json')}", flush=True)
    write_json(OUT / "summary.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
