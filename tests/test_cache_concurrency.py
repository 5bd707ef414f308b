"""The shared caches under concurrency: several processes fill them at once, each entry is
complete and computed once (the reference log-prob cache and the curation score cache)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pairlab.logprobs import REF_COLUMNS, RefLogpCache

KEY = {"model": "test", "max_length": 8}


def _fake_rows(ids: list[str]) -> pd.DataFrame:
    # A value derived from the id, so a torn or mixed-up row would show.
    values = np.array([int(i.split("-")[1]) for i in ids], dtype=float)
    return pd.DataFrame({"pair_id": ids, "ref_chosen_logps": -values, "ref_rejected_logps": -2 * values,
                         "chosen_tokens": np.ones(len(ids), dtype=np.int64),
                         "rejected_tokens": np.ones(len(ids), dtype=np.int64)})[REF_COLUMNS]


def _fill_worker(root: str, ids: list[str], barrier, log: str) -> None:
    cache = RefLogpCache(KEY, root=root)

    def compute(missing: list[str]) -> pd.DataFrame:
        with open(log, "a", encoding="utf-8") as fh:  # one line per computed pair, by pid
            fh.writelines(f"{os.getpid()} {p}\n" for p in missing)
        time.sleep(0.3)  # long enough that an unlocked second process would start the same pairs
        return _fake_rows(missing)

    barrier.wait()
    cache.fill(ids, compute)


def test_two_processes_fill_the_reference_cache_computing_each_pair_once(tmp_path):
    ids = [f"p-{i}" for i in range(40)]
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    log = tmp_path / "computed.txt"
    # Overlapping halves: 0..29 and 10..39 -> the shared 20 must be computed once.
    procs = [ctx.Process(target=_fill_worker, args=(str(tmp_path / "cache"), part, barrier, str(log)))
             for part in (ids[:30], ids[10:])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    computed = [line.split()[1] for line in log.read_text().splitlines()]
    assert sorted(computed) == sorted(ids)  # every pair once, none twice
    assert len({line.split()[0] for line in log.read_text().splitlines()}) == 2  # both did work
    cache = RefLogpCache(KEY, root=tmp_path / "cache")
    shards = [pd.read_parquet(s) for s in cache.dir.glob("shard-*.parquet")]
    stored = pd.concat(shards)
    assert len(stored) == len(ids) and stored["pair_id"].is_unique
    pd.testing.assert_frame_equal(cache.get(ids), _fake_rows(ids))
    assert not list(cache.dir.glob(".*.tmp"))  # no half-written shard left behind


def _score_worker(cache_root: str, pool_path: str, barrier, out: str) -> None:
    os.environ["PAIRLAB_CACHE"] = cache_root
    from pairlab.curate import CurateConfig, cached_scores

    pool = pd.read_parquet(pool_path)
    barrier.wait()
    scores, info = cached_scores(pool, CurateConfig(tokenizer="none", max_length=256))
    Path(out).write_text(json.dumps({"hit": info["hit"], "rows": len(scores)}))


def test_two_processes_score_the_same_pool_once(tmp_path):
    from pairlab.curate import CurateConfig, cached_scores
    from pairlab.simulate import simulate_pairs

    pool, _ = simulate_pairs(n=400, seed=5, length="short")
    pool_path = tmp_path / "pool.parquet"
    pool.to_parquet(pool_path)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    procs = [ctx.Process(target=_score_worker, args=(str(tmp_path / "cache"), str(pool_path), barrier, str(o)))
             for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [json.loads(o.read_text()) for o in outs]
    assert sorted(r["hit"] for r in results) == [False, True]  # one scored, the other read its entry
    assert all(r["rows"] == len(pool) for r in results)
    entries = list((tmp_path / "cache" / "scores").glob("*.parquet"))
    assert len(entries) == 1
    os.environ["PAIRLAB_CACHE"], old = str(tmp_path / "cache"), os.environ.get("PAIRLAB_CACHE")
    try:
        again, info = cached_scores(pool, CurateConfig(tokenizer="none", max_length=256))
    finally:
        if old is None:
            del os.environ["PAIRLAB_CACHE"]
        else:
            os.environ["PAIRLAB_CACHE"] = old
    assert info["hit"] and list(again["pair_id"]) == list(pool["pair_id"].astype(str))


@pytest.mark.slow
def test_two_evaluations_at_once_compute_the_reference_once(tmp_path):
    """Two `pairlab evaluate` processes on the same pairs and cache (tiny-random-llama)."""
    from pairlab.io import write_pairs
    from pairlab.simulate import simulate_pairs

    _, eval_pairs = simulate_pairs(n=200, seed=2, length="short")
    eval_pairs = eval_pairs.head(24)
    spec = write_pairs(eval_pairs, tmp_path / "eval.parquet")
    env = {**os.environ, "PAIRLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "pairlab", "evaluate", "--model", "tiny-random-llama",
                               "--eval", str(spec), "--eval-format", "pairs", "--out", str(tmp_path / f"e{i}"),
                               "--no-generate", "--set", "max_length=128"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    refs = [json.loads((tmp_path / f"e{i}" / "metrics.json").read_text())["reference"] for i in range(2)]
    assert sorted(r["computed"] for r in refs) == [0, len(eval_pairs)]  # one computed all, one none
    assert refs[0]["key"] == refs[1]["key"]
    shards = list(Path(refs[0]["dir"]).glob("shard-*.parquet"))
    stored = pd.concat([pd.read_parquet(s) for s in shards])
    assert len(stored) == len(eval_pairs) and stored["pair_id"].is_unique
    a, b = (pd.read_parquet(tmp_path / f"e{i}" / "per_pair.parquet") for i in range(2))
    np.testing.assert_array_equal(a["ref_chosen_logps"], b["ref_chosen_logps"])
