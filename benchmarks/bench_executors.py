"""Scheduling overhead of each executor on the tiny grid, as a ratio against ``local``, one run.

The grid (2 arms x 1 seed, tiny-random-llama, 2 optimizer steps per run, 80 simulator
pairs) runs under ``local``, ``ray`` (a local Ray instance, 2 CPUs) and ``slurm`` on
submitit's local executor (the jobs are processes here), each as `pairlab ablate` in a
fresh process with its own empty cache, so each does the same work: curation, one
reference prefill, two arm tasks, the report. Per executor:

* ``wall_s``: the command's wall time; ``ratio_vs_local``: wall_s / local's wall_s;
* ``work_s``: time inside the steps, summed (the prefill's record, each run's and each
  evaluation's manifest ``wall_time_s``); ``task_s``: each Ray / Slurm task's own seconds;
* ``overhead_s``: wall_s - work_s (start-up, curation, scheduling, process and Ray start,
  polling; negative when tasks overlap in time).

The per-step figures the cost model in docs/guide/ablate.md uses come from the local run:
the prefill's seconds per reference pair and each run's seconds per optimizer step.
``PAIRLAB_BENCH_EXECUTORS`` picks executors (default ``local,ray,slurm``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GRID = {
    "name": "tiny grid",
    "pool": {"simulate": {"n": 80, "seed": 3, "length": "short", "rater_noise": 1.5}, "max_eval_pairs": 8},
    "budget": {"unit": "steps", "value": 2},
    "seeds": [0],
    "evaluate_base": False,
    "curate": {"max_length": 128},
    "train": {"model": "tiny-random-llama", "save_steps": 2,
              "dpo": {"per_device_train_batch_size": 2, "max_length": 128, "learning_rate": 1e-3}},
    "eval": {"batch_size": 8, "generate": False},
    "executor": {"num_cpus": 1, "ray_num_cpus": 2,
                 "slurm": {"gpus_per_task": 0, "cpus_per_task": 1, "time_min": 30, "cluster": "local"}},
    "arms": [{"name": "all", "filters": []}, {"name": "gap1", "filters": [{"min_rating_gap": 1.0}]}],
}


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _run(name: str, root: Path, config: Path) -> dict:
    out = root / name
    env = {**os.environ, "PAIRLAB_CACHE": str(root / f"cache-{name}"), "OMP_NUM_THREADS": "1",
           "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pairlab", "ablate", "--config", str(config), "--out", str(out),
                           "--executor", name, "--no-progress"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
    prefill = _read(out / "arms" / "reference_prefill.json")
    tasks = [_read(p) for p in sorted(out.glob("arms/*/*/task.json"))]  # ray and slurm tasks only
    runs = [_read(p) for p in sorted(out.glob("arms/*/*/run/manifest.json"))]
    evals = [_read(p) for p in sorted(out.glob("arms/*/*/eval/manifest.json"))]
    # the same work under every executor: the prefill, then each run's training and evaluation
    work = float(prefill.get("seconds", 0.0)) + sum(float(m.get("wall_time_s") or 0.0) for m in runs + evals)
    return {"wall_s": round(wall, 2), "work_s": round(work, 2), "overhead_s": round(wall - work, 2),
            "prefill_s": prefill.get("seconds"), "prefill_pairs": sum(g.get("pairs", 0) for g in prefill.get("groups", [])),
            "task_s": [t.get("seconds") for t in tasks],
            "seconds_per_step": [(r.get("timing") or {}).get("seconds_per_step") for r in runs],
            "reference_computed_by_arms": [(r.get("ref_cache") or {}).get("computed") for r in runs]}


def main(out_dir: Path) -> dict:
    names = os.environ.get("PAIRLAB_BENCH_EXECUTORS", "local,ray,slurm").split(",")
    results: dict = {"grid": {"arms": len(GRID["arms"]), "seeds": len(GRID["seeds"]),
                              "steps_per_run": GRID["budget"]["value"], "model": GRID["train"]["model"]},
                     "executors": {}}
    with tempfile.TemporaryDirectory(prefix="pairlab-bench-executors-") as tmp:
        root = Path(tmp)
        config = root / "grid.yaml"
        config.write_text(yaml.safe_dump(GRID), encoding="utf-8")
        for name in names:
            results["executors"][name] = _run(name, root, config)
    local = results["executors"].get("local")
    if local:
        for figures in results["executors"].values():
            figures["ratio_vs_local"] = round(figures["wall_s"] / local["wall_s"], 3)
            figures["overhead_minus_local_s"] = round(figures["overhead_s"] - local["overhead_s"], 2)
        results["ratio_vs_local"] = {n: f["ratio_vs_local"] for n, f in results["executors"].items()}
    return results


if __name__ == "__main__":
    from pairlab.artifacts import to_json

    print(to_json(main(Path("bench_results"))))
