"""Kill -9 each long-running stage (issue 16): the next reader refuses the debris with a clear
error, and a rerun completes with outputs equal to an uninterrupted run.

Real `pairlab` processes, killed with SIGKILL at several points: after a delay, and as
soon as a file appears (polled). Train runs tiny-random-llama in fp32, where a killed
and resumed run ends with the same adapter bit for bit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pairlab import dirs
from pairlab.cli import main
from pairlab.dirs import CurateDir, EvalDir, RunDir, StageDirError

ENV = {**os.environ, "TQDM_DISABLE": "1"}


def _pairlab(*args: str, log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pairlab", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env={**ENV, **env})


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """SIGKILL ``proc`` once ``ready()`` holds; True when it was still running (a real kill)."""
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


def _any_file(folder: Path):
    return lambda: folder.is_dir() and any(folder.iterdir())


def _tables(folder: Path, names) -> dict[str, pd.DataFrame]:
    return {n: pd.read_parquet(folder / n) for n in names}


# ---------------------------------------------------------------- curate

@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    from pairlab.io import write_pairs
    from pairlab.simulate import simulate_pairs

    train, _ = simulate_pairs(n=700, seed=2, topics={"facts": 1.0, "definitions": 1.0, "arithmetic": 1.0})
    return write_pairs(train, tmp_path_factory.mktemp("pool") / "pool.parquet")


def test_killed_curate_is_refused_then_redone_exactly(tmp_path, pool_file, monkeypatch, capsys):
    from pairlab.train.pipeline import read_train_pairs

    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    cache = {"PAIRLAB_CACHE": str(tmp_path / "cache")}
    base = ["--input", str(pool_file), "--tokenizer", "none"]
    other = tmp_path / "filters.yaml"
    other.write_text("- drop_ties\n- min_rating_gap: 1.5\n")
    whole = tmp_path / "whole"
    assert main(["curate", *base, "--out", str(whole)]) == 0  # also warms the score cache
    names = CurateDir.OUTPUTS

    out = tmp_path / "cur"
    # 1. a first run killed after 1 s (starting up): nothing complete is left
    proc = _pairlab("curate", *base, "--out", str(out), log=tmp_path / "1.log", **cache)
    time.sleep(0.5)
    assert _kill_when(proc, lambda: True), (tmp_path / "1.log").read_text()
    assert not (out / dirs.MANIFEST).exists()
    # 2. a first run killed as soon as its first output file appears: tables, no manifest
    proc = _pairlab("curate", *base, "--out", str(out), log=tmp_path / "2.log", **cache)
    assert _kill_when(proc, _any_file(out)), (tmp_path / "2.log").read_text()
    with pytest.raises(StageDirError, match="incomplete curate directory"):
        read_train_pairs(out)
    # 3. the case: a finished curation with other filters, re-curated with --overwrite
    #    and killed as its report is drawn (the new tables already written)
    #    (the window between the last table and the manifest is short on a fast CPU: a run that
    #    finished before the kill landed is redone, up to five times)
    def tables_written_no_manifest():
        return not (out / dirs.MANIFEST).exists() and all((out / n).exists() for n in names)

    for attempt in range(5):
        assert main(["curate", *base, "--filters", str(other), "--out", str(out), "--overwrite"]) == 0
        old = json.loads((out / dirs.MANIFEST).read_text())
        proc = _pairlab("curate", *base, "--out", str(out), "--overwrite", log=tmp_path / "3.log", **cache)
        if _kill_when(proc, tables_written_no_manifest) and tables_written_no_manifest():
            break
    else:
        pytest.fail("five runs finished before the kill landed: " + (tmp_path / "3.log").read_text())
    assert not (out / dirs.MANIFEST).exists(), "the old manifest must not describe the new tables"
    with pytest.raises(StageDirError, match=r"incomplete curate directory.*rerun `pairlab curate"):
        read_train_pairs(out / CurateDir.PAIRS)
    capsys.readouterr()
    assert main(["train", "--pairs", str(out), "--out", str(tmp_path / "run")]) == 2
    assert "incomplete curate directory" in capsys.readouterr().err

    # the rerun (no --overwrite needed for debris) completes equal to the uninterrupted run
    assert main(["curate", *base, "--out", str(out)]) == 0
    got, want = _tables(out, names), _tables(whole, names)
    for name in names:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)
    manifest = CurateDir.verify(out)
    assert manifest["counts"] == json.loads((whole / dirs.MANIFEST).read_text())["counts"] != old["counts"]


# ---------------------------------------------------------------- train and evaluate

SETTINGS = ["model=tiny-random-llama", "quantization=none", "dtype=float32", "seed=7", "save_steps=2",
            "dpo.max_steps=6", "dpo.max_length=96", "dpo.learning_rate=0.002", "lora.r=8"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from pairlab.io import write_pairs
    from pairlab.simulate import simulate_pairs

    root = tmp_path_factory.mktemp("kill")
    train_pairs, held_out = simulate_pairs(n=80, seed=0, eval_fraction=0.2,
                                           topics={"facts": 1.0, "definitions": 1.0})
    write_pairs(train_pairs.head(16), root / "pairs.parquet")
    write_pairs(held_out.head(6), root / "eval.parquet")
    return root


def _train_args(work: Path, out: Path, *extra: str) -> list[str]:
    sets = [a for s in [*SETTINGS, f"ref_cache_dir={work / 'ref_cache'}"] for a in ("--set", s)]
    return ["train", "--pairs", str(work / "pairs.parquet"), *sets, "--out", str(out), *extra]


def _adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / RunDir.ADAPTER / "adapter_model.safetensors"))


def _same_adapter(a: Path, b: Path) -> bool:
    import torch

    x, y = _adapter(a), _adapter(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def whole_run(work):
    assert main(_train_args(work, work / "whole")) == 0
    return work / "whole"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_train_is_refused_then_resumes_bit_for_bit(work, whole_run, tmp_path, capsys):
    from pairlab.policy import read_run

    out = tmp_path / "run"
    proc = _pairlab(*_train_args(work, out), log=tmp_path / "train.log")
    first = out / RunDir.CHECKPOINTS / "checkpoint-2"
    assert _kill_when(proc, lambda: (first / "dynamics.parquet").exists()), (tmp_path / "train.log").read_text()
    assert not (out / dirs.MANIFEST).exists()
    with pytest.raises(StageDirError, match=r"incomplete train directory.*--resume"):
        read_run(out)  # what evaluate and audit read
    capsys.readouterr()
    assert main(_train_args(work, out)) == 2
    assert "interrupted run" in capsys.readouterr().err

    assert main(_train_args(work, out, "--resume")) == 0
    printed = capsys.readouterr()
    assert "resuming" in printed.err and "(step " in printed.err and "resumed from step" in printed.out
    manifest = RunDir.verify(out)
    assert manifest["global_step"] == 6 and manifest["resumed_from_step"] >= 2
    assert _same_adapter(out, whole_run)  # fp32: bit for bit
    pd.testing.assert_frame_equal(pd.read_parquet(out / RunDir.DYNAMICS), pd.read_parquet(whole_run / RunDir.DYNAMICS))

    # --resume on the finished run does nothing (no 7th step) and says so
    before = (out / dirs.MANIFEST).read_bytes()
    assert main(_train_args(work, out, "--resume")) == 0
    assert "already finished at step 6; nothing to do" in capsys.readouterr().out
    assert (out / dirs.MANIFEST).read_bytes() == before
    assert not (out / RunDir.CHECKPOINTS / "checkpoint-7").exists()
    assert main(_train_args(work, out)) == 2  # finished: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err

    # killed after its last checkpoint, before the outputs: the resume restores, trains nothing
    last = tmp_path / "last"
    (last / RunDir.CHECKPOINTS).mkdir(parents=True)
    import shutil

    shutil.copytree(whole_run / RunDir.CHECKPOINTS / "checkpoint-6", last / RunDir.CHECKPOINTS / "checkpoint-6")
    assert main(_train_args(work, last, "--resume")) == 0
    assert RunDir.verify(last)["global_step"] == 6 and _same_adapter(last, whole_run)
    assert not (last / RunDir.CHECKPOINTS / "checkpoint-7").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_evaluate_is_refused_then_redone_exactly(work, whole_run, tmp_path, capsys):
    from pairlab.evaluate.comparison import read_eval
    from pairlab.reports import render_report

    args = ["evaluate", "--run", str(whole_run), "--eval", str(work / "eval.parquet"), "--no-generate",
            "--batch-size", "4"]
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) == 0
    out = tmp_path / "ev"
    # killed loading the model: nothing is written
    proc = _pairlab(*args, "--out", str(out), log=tmp_path / "1.log")
    time.sleep(2.0)
    assert _kill_when(proc, lambda: True), (tmp_path / "1.log").read_text()
    assert not (out / dirs.MANIFEST).exists()
    # killed as soon as it starts writing: refused by every reader
    for attempt in range(3):  # a kill can land after the last write; then try again
        proc = _pairlab(*args, "--out", str(out), "--overwrite", log=tmp_path / "2.log")
        _kill_when(proc, _any_file(out))
        if not (out / dirs.MANIFEST).exists():
            break
    assert not (out / dirs.MANIFEST).exists(), "no kill landed before the manifest in 3 tries"
    # (a kill between creating the directory and its start marker leaves it empty: "not a ... directory")
    for reader in (read_eval, render_report):
        with pytest.raises(StageDirError, match="incomplete evaluate directory|not a evaluate directory"):
            reader(out)
    assert main([*args, "--out", str(out)]) == 0
    for name in (EvalDir.PER_PAIR, EvalDir.EXCLUDED):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(whole / name), obj=name)
    got, want = (json.loads((d / EvalDir.METRICS).read_text()) for d in (out, whole))
    for key in ("n_pairs", "accuracy", "accuracy_ci95", "mean_margin", "ref_free_accuracy"):
        assert got[key] == want[key], key
    EvalDir.verify(out)
