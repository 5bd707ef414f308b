"""`make bench`: run every ``benchmarks/bench_*.py`` and write machine-readable results.

Each bench module exposes ``main(out_dir: Path) -> dict`` and returns its figures;
this runner writes them to ``bench_results/<name>.json`` and a combined
``bench_results/summary.json``. Pass names to run a subset:
``python -m benchmarks.run curate train``.

Each result's ``goals`` (``{name: {"measured", "goal", "met"}}``) is gathered into the
summary's ``goals``; the machine's load average before and after each bench is recorded
beside it (the CPU may be shared: ratios compare against a baseline of the same run).
"""
from __future__ import annotations

import importlib
import json
import os
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
    summary = {"environment": environment(), "results": {}, "goals": {}}
    if wanted and (OUT / "summary.json").exists():  # a subset: keep the other benches' last figures
        rerun = {n.removeprefix("bench_") for n in names}
        old = json.loads((OUT / "summary.json").read_text(encoding="utf-8"))
        summary["results"] = {k: v for k, v in old.get("results", {}).items() if k not in rerun}
        summary["goals"] = {k: v for k, v in old.get("goals", {}).items() if k.split(".")[0] not in rerun}
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.time()
        load_before = [round(x, 2) for x in os.getloadavg()]
        module = importlib.import_module(f"benchmarks.{name}")
        result = module.main(OUT)
        result["bench_wall_s"] = round(time.time() - t0, 2)
        result["load_average"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()],
                                  "cpus": os.cpu_count()}
        for goal, record in (result.get("goals") or {}).items():
            summary["goals"][f"{name.removeprefix('bench_')}.{goal}"] = record
        write_json(OUT / f"{name.removeprefix('bench_')}.json", result)
        summary["results"][name.removeprefix("bench_")] = result
        print(f"   -> {OUT / (name.removeprefix('bench_') + '.json')}", flush=True)
        if wanted:  # after each bench: a long subset run loses nothing when interrupted
            _write_subset(summary, name.removeprefix("bench_"))
    if not wanted:
        write_json(OUT / "summary.json", summary)
    return 0


def _write_subset(summary: dict, name: str) -> None:
    """Merge one bench's figures into summary.json as it is on disk now: another subset run
    may have finished in the meantime (its figures are kept)."""
    path = OUT / "summary.json"
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"results": {}, "goals": {}}
    current["environment"] = summary["environment"]
    current.setdefault("results", {})[name] = summary["results"][name]
    goals = {k: v for k, v in current.get("goals", {}).items() if k.split(".")[0] != name}
    goals.update({k: v for k, v in summary["goals"].items() if k.split(".")[0] == name})
    current["goals"] = goals
    write_json(path, current)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
