"""Simulator speed: records/s for 100k records (short and realistic), in memory and on disk.

The issue's target: 100k synthetic records in 30 s or less on a 2-core CPU.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pairlab.simulate import SimulateConfig, simulate, write_simulation

N = 100_000
N_END_TO_END = 20_000


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(out_dir: Path) -> dict:
    results: dict = {"n_records": N}
    for length in ("short", "realistic"):
        result, seconds = _timed(lambda: simulate(SimulateConfig(n=N, seed=0, length=length)))
        chars = sum(len(c["response"]) for r in result.train_records[:2000]
                    for c in r["completions"]) / (4 * min(2000, len(result.train_records)))
        results[length] = {"generate_s": round(seconds, 2),
                           "generate_records_per_s": round(N / seconds),
                           "mean_chars_per_completion": round(chars)}
        del result
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        _, seconds = _timed(lambda: write_simulation(SimulateConfig(n=N, seed=0), Path(tmp) / "raw",
                                                     pairs=False))
        results["short"]["write_raw_s"] = round(seconds, 2)
        results["short"]["write_raw_records_per_s"] = round(N / seconds)
        summary, seconds = _timed(lambda: write_simulation(
            SimulateConfig(n=N_END_TO_END, seed=0), Path(tmp) / "pairs"))
        results["end_to_end_with_reader"] = {
            "n_records": N_END_TO_END, "seconds": round(seconds, 2),
            "records_per_s": round(N_END_TO_END / seconds),
            "label_noise_rate": round(summary["label_noise_rate"], 4)}
    results["target_100k_s"] = 30.0
    results["meets_target"] = results["short"]["generate_s"] <= 30.0
    return results


if __name__ == "__main__":
    from pairlab.artifacts import to_json

    print(to_json(main(Path("bench_results"))))
