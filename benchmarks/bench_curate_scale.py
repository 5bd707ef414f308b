"""Curating pools larger than memory: peak RSS and time of `pairlab curate` at 60k and 600k pairs.

The pool: realistic-length simulator pairs, generated once, block by block (the generator
never holds the pool), into ``bench_results/curate_scale_work/pool-<N>-<code hash>.parquet``
and reused by later runs (generation is slow: 2.2 ms per pair on a shared 2-core CPU; it is not counted in any
curation time). Each smaller size is the first rows of the largest pool, copied batch by
batch, so every size has the same mix of texts. The file name carries a hash of the
simulator's source: a changed simulator regenerates it.

Each curation is `pairlab curate --input pool.parquet` with its defaults (a pool above
:data:`~pairlab.curate.stream.STREAM_ABOVE_ROWS` rows streams in chunks), SmolLM2's
tokenizer, a fresh score cache, a filter spec with two-pass filters (dedupe_prompts,
balance_length, keep_quantile), run as a separate process: its wall time and its own peak
RSS (``ru_maxrss``). At the first size curated the in-memory path (``chunk_rows=0``, the
whole pool as one DataFrame) runs too, as the baseline (``PAIRLAB_BENCH_CURATE_BASELINE=0``
skips it). At the smallest size with the tokenizer, the same process then batch-tokenizes
the pool's texts alone (the floor: ``scoring_vs_tokenize_floor``, issue 17's goal, measured
through `pairlab curate` on the streamed path; the tokenizer's load is timed apart).

A JSONL input: the smallest pool is also written as ``.jsonl.gz`` (the generic layout:
prompt messages, chosen, rejected, ratings, source, models; ids derived on reading) and
curated with ``tokenizer: none`` twice, streamed (the pairlab default for a file of more
than :data:`~pairlab.curate.stream.STREAM_ABOVE_ROWS` lines: converted chunk by chunk into a
Parquet in the cache, then streamed) and read whole (``chunk_rows=0``), each in its own
process with a fresh cache: ``jsonl_input`` (``PAIRLAB_BENCH_CURATE_JSONL=0`` skips it).

``PAIRLAB_BENCH_CURATE_TOKENIZER_SIZES`` (default: every size) and
``PAIRLAB_BENCH_CURATE_NONE_SIZES`` (default: none) choose the sizes curated with SmolLM2's
tokenizer and with ``tokenizer: none``: the latter measures pairlab's own machinery (chunked
reads, the scores table, filters, writes) where the tokenizer alone would take hours.

Goal: peak RSS <= 2 GB at every size, time ~linear (time per pair at the largest size
within 1.3x of the smallest). ``PAIRLAB_BENCH_CURATE_SIZES`` sets the sizes (default
``60000,600000``: on a 2-core CPU 600k takes about an hour, nearly all of it in the
tokenizer); ``PAIRLAB_BENCH_QUICK=1`` uses ``3000,30000`` with 1,000-row chunks.
"""
from __future__ import annotations

import hashlib
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
ROOT = Path(__file__).resolve().parent.parent


def _quick() -> bool:
    return os.environ.get("PAIRLAB_BENCH_QUICK") == "1"


def _sizes() -> list[int]:
    if _quick():
        return [3_000, 30_000]
    raw = os.environ.get("PAIRLAB_BENCH_CURATE_SIZES", "60000,600000")
    return sorted(int(s) for s in raw.split(",") if s.strip())


def _simulator_hash() -> str:
    """Hash of the simulator's code: a pool written by another version is not reused."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "pairlab" / "simulate").glob("*.py")):
        digest.update(path.read_bytes())
    digest.update(str(BLOCK).encode())
    return digest.hexdigest()[:10]


def write_pool(path: Path, n: int) -> float:
    """n distinct realistic simulator pairs into one Parquet file, BLOCK rows at a time
    (written to ``path.tmp``, renamed when complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pairlab.io.write import _arrow_safe
    from pairlab.schema import as_messages
    from pairlab.simulate import simulate_pairs

    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
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
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table.cast(writer.schema))
        written += len(block)
    writer.close()
    tmp.replace(path)
    return time.perf_counter() - t0


def _head(big: Path, path: Path, n: int) -> None:
    """The first n rows of the pool file ``big`` into ``path``, batch by batch."""
    import pyarrow.parquet as pq

    source = pq.ParquetFile(big)
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, source.schema_arrow) as writer:
        left = n
        for batch in source.iter_batches(batch_size=min(BLOCK, n)):
            writer.write_batch(batch.slice(0, left))
            left -= min(left, batch.num_rows)
            if not left:
                break
    tmp.replace(path)


def pools(work: Path, sizes: list[int]) -> tuple[dict[int, Path], float | None]:
    """One pool file per size (generated or reused); the generation time when generated now."""
    work.mkdir(parents=True, exist_ok=True)
    tag = _simulator_hash()
    largest = work / f"pool-{sizes[-1]}-{tag}.parquet"
    gen_s = None if largest.exists() else write_pool(largest, sizes[-1])
    files = {sizes[-1]: largest}
    for n in sizes[:-1]:
        files[n] = work / f"pool-{n}-of-{sizes[-1]}-{tag}.parquet"
        if not files[n].exists():
            _head(largest, files[n], n)
    return files, gen_s


def write_jsonl_gz(pool: Path, path: Path) -> float:
    """The pool as gzipped JSON lines in the generic layout, batch by batch (reused when present)."""
    import gzip
    import json as json_module

    import pyarrow.parquet as pq

    if path.exists():
        return 0.0
    t0 = time.perf_counter()
    keep = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "source", "chosen_model",
            "rejected_model"]
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as fh:
        for batch in pq.ParquetFile(pool).iter_batches(batch_size=BLOCK, columns=keep):
            for record in batch.to_pylist():
                fh.write(json_module.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return time.perf_counter() - t0


def tokenize_floor(pool: Path) -> float:
    """Seconds to batch-tokenize the pool's texts (prompt_text, chosen, rejected) alone, with
    the call the scorer uses, 10,000 rows at a time: the floor scoring is compared with."""
    import pyarrow.parquet as pq

    from pairlab.curate.tokens import TokenCounter, load_tokenizer

    counter = TokenCounter(load_tokenizer("smollm2-135m-instruct"))
    spent = 0.0
    for batch in pq.ParquetFile(pool).iter_batches(batch_size=10_000, columns=["prompt_text", "chosen", "rejected"]):
        texts = [t for col in batch.columns for t in col.to_pylist()]
        t0 = time.perf_counter()
        counter.lengths(texts)
        spent += time.perf_counter() - t0
    return spent


def _child(argv: list[str]) -> None:
    """Run `pairlab curate ARGV` in this process; print its wall time and peak RSS as JSON
    (with ``--floor`` first: then the tokenization floor of the same pool, after the curation)."""
    from pairlab.cli import main

    floor = argv[:1] == ["--floor"]
    argv = argv[1:] if floor else argv
    load_s = None
    if not any("tokenizer: none" in Path(a).read_text() for a in argv if a.endswith(".yaml")):
        # loading the tokenizer (importing transformers) is a constant 5-20 s: timed apart, so
        # the curation's time is per pair (the curation gets it from the same per-process cache)
        from pairlab.curate.tokens import load_tokenizer

        t0 = time.perf_counter()
        load_tokenizer("smollm2-135m-instruct")
        load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    code = main(["curate", *argv])
    figures = {"code": code, "seconds": time.perf_counter() - t0, "tokenizer_load_s": load_s,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if floor:
        figures["tokenize_floor_s"] = tokenize_floor(Path(argv[argv.index("--input") + 1]))
    print(json.dumps(figures))


def _curate(pool: Path, out: Path, spec: Path, chunk_rows: int | None, env: dict, floor: bool = False) -> dict:
    argv = ["--input", str(pool), "--filters", str(spec), "--out", str(out), "--no-report"]
    if chunk_rows is not None:
        argv += ["--set", f"chunk_rows={chunk_rows}"]
    load_before = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_curate_scale", "--child",
                           *(["--floor"] if floor else []), *argv],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    manifest = json.loads((out / "manifest.json").read_text())
    run = {"seconds": round(figures["seconds"], 2), "peak_rss_mb": round(figures["peak_rss_mb"], 1),
           "tokenizer_load_s": figures["tokenizer_load_s"] and round(figures["tokenizer_load_s"], 2),
           "streamed": manifest.get("streamed"), "timings": manifest.get("timings"), "counts": manifest["counts"],
           "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if floor:  # scoring (hash pass, chunk reads, score-cache parts included) against tokenizing alone
        run["tokenize_floor_s"] = round(figures["tokenize_floor_s"], 2)
        if manifest.get("timings"):
            run["ratio_scoring_vs_floor"] = round(manifest["timings"]["scores_s"] / figures["tokenize_floor_s"], 3)
        run["ratio_curate_total_vs_floor"] = round(figures["seconds"] / figures["tokenize_floor_s"], 3)
    return run


def _int_list(name: str, default: list[int]) -> list[int]:
    raw = os.environ.get(name)
    return default if raw is None else sorted(int(x) for x in raw.split(",") if x.strip())


def _summary(runs: dict[str, dict]) -> dict:
    sizes = sorted(int(n) for n in runs)
    first, last = runs[str(sizes[0])], runs[str(sizes[-1])]
    return {"peak_rss_mb": {str(n): runs[str(n)]["peak_rss_mb"] for n in sizes},
            "seconds": {str(n): runs[str(n)]["seconds"] for n in sizes},
            "us_per_pair": {str(n): runs[str(n)]["us_per_pair"] for n in sizes},
            "time_per_pair_ratio_largest_vs_smallest": round(last["us_per_pair"] / first["us_per_pair"], 3)}


def main(out_dir: Path) -> dict:
    sizes = _sizes()
    # sizes curated with SmolLM2's tokenizer (default: all) and with `tokenizer: none` (default:
    # none): the latter measures pairlab's own machinery (chunked reads, scores table, filters,
    # writes) at sizes where the tokenizer alone would take hours on this CPU
    real_sizes = [n for n in _int_list("PAIRLAB_BENCH_CURATE_TOKENIZER_SIZES", sizes) if n in sizes]
    char_sizes = [n for n in _int_list("PAIRLAB_BENCH_CURATE_NONE_SIZES", []) if n in sizes]
    chunk_rows = 1_000 if _quick() else None  # None: pairlab's default for the pool's size
    results: dict = {"sizes": sizes, "tokenizer_sizes": real_sizes, "tokenizer_none_sizes": char_sizes,
                     "runs": {}, "runs_tokenizer_none": {}}
    work = Path(out_dir) / "curate_scale_work"
    files, gen_s = pools(work, sizes)
    results["generate_pool_s"] = None if gen_s is None else round(gen_s, 1)
    with tempfile.TemporaryDirectory(prefix="pairlab-bench-scale-") as tmp:
        root = Path(tmp)
        # a fresh score cache: every size is scored, none read from an earlier run
        env = {**os.environ, "PAIRLAB_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
        specs = {}
        for tok in ("real", "none"):
            specs[tok] = root / f"filters-{tok}.yaml"
            specs[tok].write_text(SPEC if tok == "real" else
                                  "filters:\n" + "".join("  " + line + "\n" for line in SPEC.splitlines())
                                  + "config: {tokenizer: none}\n")
        plan = [(n, "none") for n in char_sizes] + [(n, "real") for n in real_sizes]
        for n, tok in plan:
            pool = files[n]
            run = _curate(pool, root / f"cur-{tok}-{n}", specs[tok], chunk_rows, env,
                          floor=tok == "real" and n == real_sizes[0])
            run.update(n_pairs=n, pool_file_mb=round(pool.stat().st_size / 2**20, 1),
                       us_per_pair=round(1e6 * run["seconds"] / n, 1))
            results["runs" if tok == "real" else "runs_tokenizer_none"][str(n)] = run
            # a long run shows where it stands (bench_results/ gets the figures at the end)
            (work / "progress.json").write_text(json.dumps(results, indent=1))
            print(f"   curate {n} (tokenizer {tok}): {run['seconds']} s, peak {run['peak_rss_mb']} MB", flush=True)
            if (n, tok) == plan[0] and os.environ.get("PAIRLAB_BENCH_CURATE_BASELINE", "1") != "0":
                base = _curate(pool, root / f"whole-{n}", specs[tok], 0, {**env, "PAIRLAB_CACHE": str(root / "cache2")})
                results["in_memory_baseline"] = {**base, "n_pairs": n, "tokenizer": tok,
                                                 "us_per_pair": round(1e6 * base["seconds"] / n, 1)}
        if os.environ.get("PAIRLAB_BENCH_CURATE_JSONL", "1") != "0":
            results["jsonl_input"] = _jsonl_runs(files[sizes[0]], sizes[0], root, specs["none"], env)
    every = list(results["runs"].values()) + list(results["runs_tokenizer_none"].values())
    peak = max(r["peak_rss_mb"] for r in every)
    results["goals"] = {
        "peak_rss_under_2gb_at_every_size": {"measured": f"{peak:.0f} MB", "goal": "<= 2048 MB",
                                             "met": peak <= 2048},
        "every_size_streamed": {"measured": all(bool(r["streamed"]) for r in every), "goal": True,
                                "met": all(bool(r["streamed"]) for r in every)},
    }
    for key, label in (("runs", ""), ("runs_tokenizer_none", "_tokenizer_none")):
        if len(results[key]) >= 2:
            results[f"summary{label}"] = summary = _summary(results[key])
            ratio = summary["time_per_pair_ratio_largest_vs_smallest"]
            results["goals"][f"time_about_linear{label}"] = {
                "measured": ratio, "goal": "time per pair, largest / smallest size <= 1.3", "met": ratio <= 1.3}
    if "jsonl_input" in results:
        jsonl = results["jsonl_input"]
        results["goals"]["jsonl_streamed_peak_rss_under_2gb"] = {
            "measured": f"{jsonl['streamed']['peak_rss_mb']:.0f} MB (read whole: {jsonl['whole']['peak_rss_mb']:.0f} MB)",
            "goal": f"<= 2048 MB, {jsonl['n_pairs']} pairs from .jsonl.gz, tokenizer none",
            "met": jsonl["streamed"]["peak_rss_mb"] <= 2048 and bool(jsonl["streamed"]["streamed"])}
    if results["runs"]:
        smallest = results["runs"][str(real_sizes[0])]
        results["goals"]["scoring_vs_tokenize_floor"] = {
            "measured": smallest.get("ratio_scoring_vs_floor"),
            "goal": f"<= 1.25x at {real_sizes[0]} pairs (streamed, through `pairlab curate`)",
            "met": (smallest.get("ratio_scoring_vs_floor") or 99) <= 1.25}
    return results


def _jsonl_runs(pool: Path, n: int, root: Path, spec: Path, env: dict) -> dict:
    """The pool as .jsonl.gz, curated streamed (pairlab's default for its size; in quick mode
    1,000-row chunks) and read whole, each in its own process with a fresh cache."""
    jsonl = pool.with_name(pool.stem + ".jsonl.gz")
    write_s = write_jsonl_gz(pool, jsonl)
    runs: dict = {"n_pairs": n, "file_mb": round(jsonl.stat().st_size / 2**20, 1),
                  "write_jsonl_s": round(write_s, 1) if write_s else None}
    for name, chunk_rows in (("streamed", 1_000 if _quick() else None), ("whole", 0)):
        run = _curate(jsonl, root / f"jsonl-{name}-{n}", spec, chunk_rows,
                      {**env, "PAIRLAB_CACHE": str(root / f"cache-jsonl-{name}")})
        run["us_per_pair"] = round(1e6 * run["seconds"] / n, 1)
        runs[name] = run
        print(f"   curate {n} from .jsonl.gz ({name}): {run['seconds']} s, peak {run['peak_rss_mb']} MB", flush=True)
    return runs


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    else:
        from pairlab.artifacts import to_json

        print(to_json(main(Path("bench_results"))))
