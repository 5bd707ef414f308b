"""curate_stream(): a pool read chunk by chunk gives the in-memory curation, file for file,
and an interrupted streamed curation resumes from the chunks already scored."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from curate_checks import FILES, pair, same_outputs
from pairlab.curate import CurateConfig, curate
from pairlab.curate import stream as stream_module
from pairlab.curate.stream import curate_stream
from pairlab.io import read_pairs, write_pairs
from pairlab.schema import build_pairs

CFG = CurateConfig(tokenizer="none")
# every filter that needs the whole train side (two-pass), and row-local ones
SPEC = ["drop_ties", {"length_ratio": [0.4, 2.5]}, "dedupe_prompts", "balance_length",
        {"keep_quantile": {"score": "rating_gap", "lo": 0.1, "hi": 1.0}},
        {"sample": {"n": 120, "stratify": "source"}}]


@pytest.fixture
def pool_file(tmp_path, make_pool):
    """340 pairs; 40 repeat (exactly or nearly) a prompt from another chunk."""
    pool = make_pool(300)
    extra = []
    for i in range(40):
        prompt = pool["prompt_text"].iloc[(i * 7) % 300]
        if i % 2:  # a near-duplicate: one more word at the end
            prompt = prompt + " now"
        extra.append(pair(prompt, f"another answer {i} " + "word " * (3 + i % 9), f"other reply {i}",
                          sc=float(2 + i % 7), sr=float(1 + i % 5), source="sharegpt"))
    pool = pd.concat([pool, build_pairs(extra)], ignore_index=True)
    path = tmp_path / "pool.parquet"
    write_pairs(pool, path)
    return path


def test_streamed_curation_equals_in_memory(tmp_path, pool_file):
    whole = curate(read_pairs(str(pool_file)), SPEC, CFG, out_dir=tmp_path / "whole")
    streamed = curate_stream(pool_file, SPEC, CurateConfig(tokenizer="none", cache=False),
                             out_dir=tmp_path / "streamed", chunk_rows=64)
    assert streamed.manifest["streamed"] == {"chunk_rows": 64, "chunks": 6}
    # the prompt-duplicate scores span chunks: rows repeating a prompt from another chunk
    assert (whole.scores["prompt_dup_count"] > 1).sum() >= 20 and whole.scores["prompt_near_dup"].sum() >= 20
    same_outputs(tmp_path / "whole", tmp_path / "streamed")
    assert {s["filter"] for s in streamed.steps if s["dropped"]} >= {"dedupe_prompts", "balance_length"}
    assert (tmp_path / "streamed" / "curation.html").exists()


def test_interrupted_streamed_curation_resumes(tmp_path, pool_file, monkeypatch):
    real = stream_module.compute_scores
    calls = []

    def interrupted(*args, **kwargs):  # the 4th chunk's scoring is killed
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stream_module, "compute_scores", interrupted)
    with pytest.raises(KeyboardInterrupt):
        curate_stream(pool_file, SPEC, CFG, out_dir=tmp_path / "run", chunk_rows=64)
    assert not (tmp_path / "run" / "manifest.json").exists()
    monkeypatch.setattr(stream_module, "compute_scores", real)
    resumed = curate_stream(pool_file, SPEC, CFG, out_dir=tmp_path / "run", chunk_rows=64)
    assert resumed.manifest["score_cache"]["chunks_resumed"] == 3  # only chunks 4-6 scored again
    curate(read_pairs(str(pool_file)), SPEC, CurateConfig(tokenizer="none", cache=False),
           out_dir=tmp_path / "whole")
    same_outputs(tmp_path / "whole", tmp_path / "run")
    # the finished cache entry serves the next curation whole
    again = curate_stream(pool_file, ["drop_ties"], CFG, out_dir=tmp_path / "again", chunk_rows=64)
    assert again.manifest["score_cache"]["hit"]


def test_cli_streams_a_parquet_pool(tmp_path, pool_file):
    spec = tmp_path / "filters.yaml"
    spec.write_text("- drop_ties\n- dedupe_prompts\n")
    done = subprocess.run([sys.executable, "-m", "pairlab", "curate", "--input", str(pool_file), "--filters",
                           str(spec), "--out", str(tmp_path / "cur"), "--tokenizer", "none", "--no-report",
                           "--set", "chunk_rows=100"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "cur" / "manifest.json").read_text())
    assert manifest["streamed"] == {"chunk_rows": 100, "chunks": 4}
    counts = manifest["counts"]
    assert counts["train"] + counts["eval"] + counts["dropped"] == counts["input"] == 340


def test_large_parquet_pools_stream_by_default(tmp_path, pool_file, monkeypatch):
    """Without chunk_rows, a pairs Parquet pool streams once it has more rows than
    STREAM_ABOVE_ROWS (50,000: a 60k pool curates under 2 GB); smaller pools and other
    formats are read whole."""
    assert stream_module.STREAM_ABOVE_ROWS == 50_000
    assert stream_module.chunk_size(pool_file, CurateConfig()) == 0  # 340 rows: read whole
    assert stream_module.chunk_size(pool_file, CurateConfig(chunk_rows=64)) == 64
    monkeypatch.setattr(stream_module, "STREAM_ABOVE_ROWS", 300)
    assert stream_module.chunk_size(pool_file, CurateConfig()) == stream_module.DEFAULT_CHUNK_ROWS
    assert stream_module.chunk_size(pool_file, CurateConfig(chunk_rows=0)) == 0
    json_file = tmp_path / "pool.json"  # a JSON document: read whole, whatever its size
    json_file.write_text(json.dumps(read_pairs(str(pool_file))[["chosen", "rejected"]].to_dict("records")))
    assert stream_module.chunk_size(json_file, CurateConfig()) == 0


def test_killed_cli_curation_resumes(tmp_path, make_pool):
    """A `pairlab curate` process killed (SIGKILL) while scoring a streamed pool leaves its
    finished chunks in the score cache and no output directory; the rerun scores only the
    missing chunks and writes what an uninterrupted curation writes."""
    import os
    import signal
    import time

    pool = tmp_path / "pool.parquet"
    write_pairs(make_pool(1500), pool)
    spec = tmp_path / "filters.yaml"
    spec.write_text("- drop_ties\n- dedupe_prompts\n- balance_length\n")

    def argv(out: str) -> list[str]:
        return [sys.executable, "-m", "pairlab", "curate", "--input", str(pool), "--filters", str(spec),
                "--out", str(tmp_path / out), "--tokenizer", "none", "--no-report", "--set", "chunk_rows=50"]

    env = dict(os.environ)
    proc = subprocess.Popen(argv("run"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    scores = Path(env["PAIRLAB_CACHE"]) / "scores"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(scores.glob("*.parts-50/part-*.parquet"))) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the curation ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(scores.glob("*.parts-50/part-*.parquet")))
    assert 3 <= done_before < 30 and not (tmp_path / "run" / "manifest.json").exists()

    resumed = subprocess.run(argv("run"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    # parts are written atomically, in order: every finished one is reused, none rescored
    assert manifest["score_cache"]["chunks_resumed"] == done_before
    assert manifest["streamed"] == {"chunk_rows": 50, "chunks": 30}
    curate(read_pairs(str(pool)), ["drop_ties", "dedupe_prompts", "balance_length"],
           CurateConfig(tokenizer="none", cache=False, report=False), out_dir=tmp_path / "whole")
    same_outputs(tmp_path / "whole", tmp_path / "run")


def test_chunked_reads_do_not_accumulate_arrow_memory(tmp_path):
    """A chunked pass holds about one chunk of Arrow buffers, not the file: with Parquet's
    default read-ahead every row group read stayed allocated until the file closed
    (+370 MB over a 600k pool, per pass)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    text = pa.array(["".join(rng.choice(list("abcdefgh "), 2000)) for _ in range(400)])
    path = tmp_path / "many_groups.parquet"
    with pq.ParquetWriter(path, pa.schema([("chosen", pa.string()), ("rejected", pa.string())])) as writer:
        for _ in range(40):  # 40 row groups of 400 rows, 1.6 MB each uncompressed
            writer.write_table(pa.table({"chosen": text, "rejected": text}))
    whole = sum(pq.ParquetFile(path).metadata.row_group(i).total_byte_size for i in range(40))
    before = pa.total_allocated_bytes()
    held = [pa.total_allocated_bytes() - before for _ in stream_module._chunks(path, 200)]
    assert len(held) == 80
    assert max(held) < whole / 4, (max(held), whole)


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".csv"])
def test_streamed_jsonl_or_csv_pool_equals_in_memory(tmp_path, pool_file, suffix):
    """`pairlab curate --input pool.jsonl.gz` (or .csv) with chunk_rows set streams: the pool is
    converted chunk by chunk into a Parquet in the cache, then curated from it. Its rejected
    rows are unreadable rows of dropped.parquet, as when the file is read whole; every output
    and the manifest's counts and inputs are the in-memory curation's."""
    import gzip

    pool = read_pairs(str(pool_file))
    flat = pool.assign(prompt=pool["prompt_text"])[["prompt", "chosen", "rejected", "score_chosen",
                                                     "score_rejected", "source"]]
    if suffix == ".csv":
        lines = flat.to_csv(index=False).splitlines()
        lines.insert(100, "a,row,with,too,few")
        lines.insert(200, lines[30])  # an exact repeat of a pair, in a later chunk
        path = tmp_path / "pool.csv"
        path.write_text("\n".join(lines) + "\n")
    else:
        lines = [json.dumps(r).encode() for r in flat.to_dict("records")]
        lines.insert(100, b'{"prompt": "cut')
        lines.insert(200, b'{"prompt": "a \xff", "chosen": "x", "rejected": "y"}')
        lines.insert(250, lines[30])
        path = tmp_path / "pool.jsonl.gz"
        with gzip.open(path, "wb") as fh:
            fh.write(b"\n".join(lines) + b"\n")
    spec = tmp_path / "filters.yaml"
    spec.write_text("".join(f"- {json.dumps(f)}\n" for f in SPEC))

    def run(out: str, chunk_rows: int) -> dict:
        from pairlab.cli import main

        assert main(["curate", "--input", str(path), "--filters", str(spec), "--out", str(tmp_path / out),
                     "--tokenizer", "none", "--set", f"chunk_rows={chunk_rows}"]) == 0
        return json.loads((tmp_path / out / "manifest.json").read_text())

    whole, streamed = run("whole", 0), run("streamed", 37)
    assert "streamed" not in whole and streamed["streamed"]["chunk_rows"] == 37
    same_outputs(tmp_path / "whole", tmp_path / "streamed")
    assert whole["inputs"]["pool"] == streamed["inputs"]["pool"]
    assert streamed["counts"]["unreadable"] == (1 if suffix == ".csv" else 2)
    dropped = pd.read_parquet(tmp_path / "streamed" / "dropped.parquet")
    assert (dropped["dropped_by"] == "unreadable").sum() == streamed["counts"]["unreadable"]
    assert dropped["reject_line"].dropna().astype(int).tolist() == ([101] if suffix == ".csv" else [101, 201])
    assert dropped["pair_id"].str.endswith("-1").sum() == 1  # the repeat, numbered across chunks
    # the converted pool is cached: a second streamed curation reuses it
    assert len(list((Path(os.environ["PAIRLAB_CACHE"]) / "pools").glob("*.parquet"))) == 2  # pool + rejects
    again = run("again", 37)
    assert again["counts"] == streamed["counts"] and again["score_cache"]["hit"]


def test_large_line_files_stream_by_default(tmp_path, pool_file, monkeypatch):
    """A JSONL/CSV pool streams without chunk_rows when it has more lines than STREAM_ABOVE_ROWS
    (no footer holds its row count: the lines are counted, stopping past the threshold)."""
    jsonl = tmp_path / "pool.jsonl"
    write_pairs(read_pairs(str(pool_file)), jsonl)
    assert stream_module.chunk_size(jsonl, CurateConfig()) == 0  # 340 lines
    monkeypatch.setattr(stream_module, "STREAM_ABOVE_ROWS", 300)
    assert stream_module.chunk_size(jsonl, CurateConfig()) == stream_module.DEFAULT_CHUNK_ROWS
    assert stream_module.chunk_size(jsonl, CurateConfig(chunk_rows=0)) == 0


def test_streamed_curation_records_unreadable_eval_from_rows(tmp_path, pool_file, make_pool):
    """The --eval-from split's unreadable rows go to dropped.parquet on the streamed path too
    (they used to stop it), as the in-memory curation records them."""
    from pairlab.cli import main

    eval_file = tmp_path / "eval.jsonl"
    write_pairs(make_pool(20, prefix="held out"), eval_file)
    eval_file.write_text(eval_file.read_text() + '{"prompt": "cut\n')
    outs = {}
    for name, chunk_rows in (("whole", 0), ("streamed", 64)):
        assert main(["curate", "--input", str(pool_file), "--eval-from", str(eval_file), "--filters",
                     str(_spec(tmp_path)), "--out", str(tmp_path / name), "--tokenizer", "none", "--no-report",
                     "--set", f"chunk_rows={chunk_rows}"]) == 0
        outs[name] = json.loads((tmp_path / name / "manifest.json").read_text())
    assert outs["streamed"]["counts"] == outs["whole"]["counts"] and outs["whole"]["counts"]["unreadable"] == 1
    same_outputs(tmp_path / "whole", tmp_path / "streamed")


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "filters.yaml"
    spec.write_text("- drop_ties\n- dedupe_prompts\n")
    return spec


def test_streamed_pool_with_only_unreadable_drops_equals_in_memory(tmp_path, pool_file):
    """No filter drops a pair, but the JSONL pool has an unreadable line: dropped.parquet holds
    only that row (it used to crash: the empty chunk's `prompt` column could not take the
    unreadable rows' list type)."""
    from pairlab.cli import main

    path = tmp_path / "pool.jsonl"
    write_pairs(read_pairs(str(pool_file)), path)
    lines = path.read_text().splitlines()
    lines.insert(150, '{"prompt": "cut')
    path.write_text("\n".join(lines) + "\n")
    for name, chunk_rows in (("whole", 0), ("streamed", 64)):
        assert main(["curate", "--input", str(path), "--out", str(tmp_path / name), "--tokenizer", "none",
                     "--no-report", "--set", f"chunk_rows={chunk_rows}"]) == 0
    same_outputs(tmp_path / "whole", tmp_path / "streamed")
    dropped = pd.read_parquet(tmp_path / "streamed" / "dropped.parquet")
    assert dropped["dropped_by"].tolist() == ["unreadable"] and dropped["reject_line"].tolist() == [151]


def test_cached_conversion_of_a_copy_names_the_file_curated(tmp_path, pool_file):
    """The cached conversion is keyed by content: curating a copy of the file (another path)
    reuses it, but the unreadable rows name the file curated, as the in-memory read does
    (they used to name the first path, and their pair ids hashed it)."""
    from pairlab.cli import main

    first = tmp_path / "pool.jsonl"
    write_pairs(read_pairs(str(pool_file)), first)
    first.write_text(first.read_text() + '{"prompt": "cut\n')
    copy = tmp_path / "moved" / "copy.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    for name, path, chunk_rows in (("first", first, 64), ("streamed", copy, 64), ("whole", copy, 0)):
        assert main(["curate", "--input", str(path), "--out", str(tmp_path / name), "--tokenizer", "none",
                     "--no-report", "--set", f"chunk_rows={chunk_rows}"]) == 0
    same_outputs(tmp_path / "whole", tmp_path / "streamed")
    dropped = pd.read_parquet(tmp_path / "streamed" / "dropped.parquet")
    assert dropped["reject_file"].tolist() == [str(copy)]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_streamed_pool_refuses_hub_options_like_the_whole_read(tmp_path, pool_file, suffix, capsys):
    """--hub-config on a local file is an error (exit 2) whether or not the pool would stream
    (the streamed path used to ignore it)."""
    from pairlab.cli import main

    path = tmp_path / f"pool{suffix}"
    write_pairs(read_pairs(str(pool_file)), path)
    for chunk_rows in (0, 64):
        assert main(["curate", "--input", str(path), "--out", str(tmp_path / f"c{chunk_rows}"), "--tokenizer",
                     "none", "--no-report", "--hub-config", "x", "--set", f"chunk_rows={chunk_rows}"]) == 2
        assert "--hub-config and --hub-revision apply to hub dataset ids only" in capsys.readouterr().err
        assert not (tmp_path / f"c{chunk_rows}").exists()


def test_streamed_write_killed_leaves_temp_files_a_rerun_removes(tmp_path, pool_file, monkeypatch):
    """A streamed curation killed while appending its outputs leaves temp files; the rerun
    (here read whole) cleans them, so the finished directory holds only its own files."""
    real, calls = stream_module._Appender.add, []

    def killed(self, frame):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, frame)

    monkeypatch.setattr(stream_module._Appender, "add", killed)
    with pytest.raises(KeyboardInterrupt):
        curate_stream(pool_file, SPEC, CFG, out_dir=tmp_path / "cur", chunk_rows=64)
    assert any(p.name.endswith(".tmp") for p in (tmp_path / "cur").iterdir())
    curate(read_pairs(str(pool_file)), SPEC, CurateConfig(tokenizer="none", report=False), out_dir=tmp_path / "cur")
    assert sorted(p.name for p in (tmp_path / "cur").iterdir()) == sorted([*FILES, "manifest.json"])


def test_cached_conversion_removes_a_killed_conversions_parts(tmp_path, pool_file):
    """A conversion killed (SIGKILL) midway leaves its part files in the cache; the next one of
    the same file, holding the lock, removes them instead of leaving a pool-sized leak."""
    from pairlab.io.convert import cached_parquet

    path = tmp_path / "pool.jsonl"
    write_pairs(read_pairs(str(pool_file)), path)
    pool, _, _ = cached_parquet(path, chunk_rows=64)
    key = pool.name.removesuffix(".parquet")
    pool.unlink()  # as if the conversion had never finished
    parts = pool.parent / f".{key}.converting.parquet.abc123.parts"
    parts.mkdir()
    (parts / "part-00000.parquet").write_bytes(b"half")
    again, _, _ = cached_parquet(path, chunk_rows=64)
    assert again == pool and pool.exists() and not parts.exists()
    assert len(pd.read_parquet(pool)) == len(read_pairs(str(path)))
