"""Curating pools larger than memory: peak RSS and time of `pairlab curate` at two pool sizes.

Each size is a realistic-length simulator pool written to one pairs Parquet file (block by
block, so the bench itself never holds it). Each curation runs as a separate process (its
own peak RSS, ``ru_maxrss``): `pairlab curate` streaming the pool in chunks of 10,000 rows
(the default above 100,000 rows), SmolLM2's tokenizer, a filter spec with two-pass filters
(dedupe_prompts, balance_length, keep_quantile). At the smallest size the in-memory path
(``chunk_rows=0``, the whole pool as one DataFrame) runs too, as the baseline.

Goal: peak RSS <= 2 GB at every size, time ~linear (time per pair at the largest size
within 1.3x of the smallest). ``PAIRLAB_BENCH_CURATE_SIZES`` sets the sizes (default
``60000,600000``; on the shared 2-core machine, at 5-12 ms per pair, 600k takes 1-2 hours:
the figures in docs/guide/curate.md are from ``10000,40000``); ``PAIRLAB_BENCH_QUICK=1`` uses
``3000,30000``.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK = 20_000
SPEC = ("- drop_ties\n- length_ratio: [0.5, 2.0]\n- dedupe_prompts\n- balance_length\n"
        "- keep_quantile: {score: rating_gap, lo: 0.0, hi: 0.9}\n")


def _sizes() -> list[int]:
    if os.environ.get("PAIRLAB_BENCH_QUICK") == "1":
        return [3_000, 30_000]
    raw = os.environ.get("PAIRLAB_BENCH_CURATE_SIZES", "60000,600000")
    return sorted(int(s) for s in raw.split(",") if s.strip())


def write_pool(path: Path, n: int) -> float:
    """n distinct realistic simulator pairs into one Parquet file, BLOCK rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pairlab.io.write import _arrow_safe
    from pairlab.schema import as_messages
    from pairlab.simulate import simulate_pairs

    t0 = time.perf_counter()
    seen: set[str] = set()
    writer, written, seed = None, 0, 0
    while written < n:
        block, _ = simulate_pairs(n=min(BLOCK, n - written) + 64, length="realistic", eval_fraction=0.0,
                                  seed=seed)
        seed += 1
        block = block[~block["pair_id"].isin(seen)].drop_duplicates("pair_id").head(n - written)
        seen.update(block["pair_id"])
        block = block.reset_index(drop=True)
        block["prompt"] = [as_messages(m) for m in block["prompt"]]
        table = pa.Table.from_pandas(_arrow_safe(block), preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table.cast(writer.schema))
        written += len(block)
    writer.close()
    return time.perf_counter() - t0


def _child(argv: list[str]) -> None:
    """Run `pairlab curate ARGV` in this process; print its wall time and peak RSS as JSON."""
    from pairlab.cli import main

    t0 = time.perf_counter()
    code = main(["curate", *argv])
    print(json.dumps({"code": code, "seconds": time.perf_counter() - t0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _curate(pool: Path, out: Path, spec: Path, chunk_rows: int | None, env: dict) -> dict:
    argv = ["--input", str(pool), "--filters", str(spec), "--out", str(out), "--no-report"]
    if chunk_rows is not None:
        argv += ["--set", f"chunk_rows={chunk_rows}"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_curate_scale", "--child", *argv],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    manifest = json.loads((out / "manifest.json").read_text())
    return {"seconds": round(figures["seconds"], 2), "peak_rss_mb": round(figures["peak_rss_mb"], 1),
            "streamed": manifest.get("streamed"), "counts": manifest["counts"]}


def main(out_dir: Path) -> dict:
    sizes = _sizes()
    results: dict = {"sizes": sizes, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="pairlab-bench-scale-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "PAIRLAB_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        spec = root / "filters.yaml"
        spec.write_text(SPEC)
        for n in sizes:
            pool = root / f"pool-{n}.parquet"
            gen_s = write_pool(pool, n)
            run = _curate(pool, root / f"cur-{n}", spec, 10_000, env)
            run.update(n_pairs=n, generate_pool_s=round(gen_s, 1), pool_file_mb=round(pool.stat().st_size / 2**20, 1),
                       us_per_pair=round(1e6 * run["seconds"] / n, 1))
            if n == sizes[0]:  # the baseline: the whole pool in memory
                base = _curate(pool, root / f"whole-{n}", spec, 0, {**env, "PAIRLAB_CACHE": str(root / "cache2")})
                results["in_memory_baseline"] = {**base, "n_pairs": n,
                                                 "us_per_pair": round(1e6 * base["seconds"] / n, 1)}
            results["runs"][str(n)] = run
            pool.unlink()
    runs = [results["runs"][str(n)] for n in sizes]
    results["peak_rss_mb"] = {str(n): r["peak_rss_mb"] for n, r in zip(sizes, runs)}
    results["seconds"] = {str(n): r["seconds"] for n, r in zip(sizes, runs)}
    results["time_per_pair_ratio_largest_vs_smallest"] = round(runs[-1]["us_per_pair"] / runs[0]["us_per_pair"], 3)
    results["goals"] = {"peak_rss_under_2gb_at_every_size": all(r["peak_rss_mb"] <= 2048 for r in runs),
                        "time_about_linear": results["time_per_pair_ratio_largest_vs_smallest"] <= 1.3}
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    else:
        from pairlab.artifacts import to_json

        print(to_json(main(Path("bench_results"))))
