"""Where `make demo`'s wall time goes: the share of each phase, from one run.

Phases: install (the duration ``make install`` recorded in
``.venv/.pairlab-install-seconds``; pip cannot be re-timed inside a bench without
reinstalling, so a venv older than that timer reports it as not recorded), library
imports (torch, transformers, TRL, peft, bitsandbytes, datasets, timed cold in a fresh
process), model conversion (the embedded GGUF -> safetensors, in a fresh
``PAIRLAB_CACHE`` as on a fresh clone), then what ``pairlab ablate`` records in
``comparison.json``'s ``phase_timings``: pool and curation, the shared reference pass,
the base evaluation, training and evaluation per arm, reports.

The ablation is ``examples/ablation-demo.yaml`` cut down so the bench stays short (the
cut is in the result's ``setup.overrides``: fewer optimizer steps and eval pairs, same
arms, model and settings); ``PAIRLAB_BENCH_DEMO_FULL=1`` runs it as ``make demo`` does.
It runs in a subprocess, so imports and the conversion are those of a fresh process,
and ``tests/test_conversion_cache.py`` plus ``conversions`` here show the model is
converted once per cache, not once per arm.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "ablation-demo.yaml"
INSTALL_RECORD = ROOT / ".venv" / ".pairlab-install-seconds"
#: The cut-down demo: same arms, model and settings; fewer steps and eval pairs.
QUICK_OVERRIDES = ["budget.value=2", "pool.max_eval_pairs=16", "eval.n_prompts=1"]

_CHILD = r"""
import json, sys, time
t0 = time.time()
import torch, transformers, trl, peft, bitsandbytes, datasets  # noqa: F401  (timed cold)
imports_s = time.time() - t0
from pairlab import models
from pairlab.ablate.config import load_ablation_config
from pairlab.ablate.pipeline import ablate
cfg = load_ablation_config(sys.argv[1], json.loads(sys.argv[3]))
t0 = time.time()
comparison = ablate(cfg, sys.argv[2], progress=False)
print("RESULT " + json.dumps({"imports_s": round(imports_s, 3), "ablate_s": round(time.time() - t0, 3),
                              "phase_timings": comparison["phase_timings"],
                              "conversions": models.CONVERSIONS}))
"""


def install_record(path: Path = INSTALL_RECORD) -> dict:
    if not path.exists():
        return {"seconds": None, "note": f"not recorded: {path.name} is written by `make install` "
                                         "(a venv created before that timer has none)"}
    return json.loads(path.read_text(encoding="utf-8"))


def main(out_dir: Path) -> dict:
    full = os.environ.get("PAIRLAB_BENCH_DEMO_FULL") == "1"
    overrides = [] if full else list(QUICK_OVERRIDES)
    with tempfile.TemporaryDirectory(prefix="pairlab-bench-demo-") as tmp:
        env = {**os.environ, "PAIRLAB_CACHE": str(Path(tmp) / "cache"), "TQDM_DISABLE": "1",
               "HF_HUB_OFFLINE": "1"}
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(CONFIG), str(Path(tmp) / "demo_out"),
                               json.dumps(overrides)], capture_output=True, text=True, env=env, cwd=ROOT)
        process_s = time.time() - t0
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"demo ablation failed:\n{proc.stderr[-3000:]}")
    child = json.loads(line[0][7:])
    timings = child["phase_timings"]
    install = install_record()
    seconds: dict[str, float] = {}
    if install.get("seconds") is not None:
        seconds["install"] = float(install["seconds"])
    seconds["imports"] = child["imports_s"]
    seconds.update(timings["seconds"])
    # the process start and config load, outside ablate() and the timed imports
    seconds["process_startup"] = round(max(process_s - child["imports_s"] - child["ablate_s"], 0.0), 3)
    total = sum(seconds.values())
    grouped = {"training": sum(v for k, v in seconds.items() if k.startswith("train/")),
               "evaluation": sum(v for k, v in seconds.items() if k.startswith("evaluate/"))}
    built = [c for c in child["conversions"] if c["built"]]
    return {
        "setup": {"config": str(CONFIG.relative_to(ROOT)), "full_demo": full, "overrides": overrides,
                  "fresh_model_cache": True},
        "install": install,
        "phase_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "phase_share": {k: round(v / total, 4) for k, v in seconds.items()},
        "total_s": round(total, 2),
        "ablate_wall_s": timings["wall_s"],
        "grouped_share": {k: round(v / total, 4) for k, v in grouped.items()},
        "conversions": {"built": len(built), "cache_hits": len(child["conversions"]) - len(built),
                        "built_seconds": [c["seconds"] for c in built],
                        "built_kinds": [c.get("kind", "conversion") for c in built]},
        # each target (the GGUF conversion, the NF4 checkpoint) is built at most once, not once per arm
        "goals": {"model_conversion_once_per_process": {
            "measured": f"{len(built)} build(s) of {len({c['target'] for c in built})} target(s), "
                        f"{len(child['conversions']) - len(built)} cache hit(s)",
            "goal": "each model target built at most once per process (not once per arm)",
            "met": len(built) == len({c["target"] for c in built})}},
    }


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(main(Path("bench_results")), indent=2))
