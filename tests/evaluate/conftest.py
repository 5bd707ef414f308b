"""Fixtures for evaluate tests: simulator pairs, a tiny trained run, its evaluation (through the CLI).

Everything runs tiny-random-llama in 4-bit with float32 compute, so recomputations agree
to rounding; the run is a real (3-step) `pairlab.train` run, so evaluate reads exactly
what training writes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

MAX_LENGTH = 96


@pytest.fixture(scope="session")
def sim_split():
    """(train, eval) short simulator pairs; ~12 held-out pairs with known true preference."""
    from pairlab.simulate import simulate_pairs

    train, held_out = simulate_pairs(n=80, seed=0, eval_fraction=0.15,
                                     topics={"facts": 1.0, "definitions": 1.0})
    return train.reset_index(drop=True), held_out.reset_index(drop=True)


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="session")
def tiny_run(work, sim_split) -> Path:
    """A real pairlab.train run: 3 steps on 6 pairs, lr high enough that the adapter moves."""
    from pairlab.train import load_train_config, train

    config = load_train_config(None, [
        "model=tiny-random-llama", "seed=3", "dtype=float32", f"ref_cache_dir={work / 'ref_cache'}",
        "save_steps=100", f"dpo.max_length={MAX_LENGTH}", "dpo.learning_rate=0.02", "dpo.beta=0.2",
        "lora.r=8", "dpo.max_steps=3"])
    train(sim_split[0].head(6), config, work / "run")
    return work / "run"


@pytest.fixture(scope="session")
def eval_file(work, sim_split) -> Path:
    from pairlab.io import write_pairs

    path = work / "eval_pairs.parquet"
    write_pairs(sim_split[1], path)
    return path


@pytest.fixture(scope="session")
def trained_eval(work, tiny_run, eval_file) -> Path:
    """`pairlab evaluate --run` through the CLI (cold reference cache for these eval pairs)."""
    from pairlab.cli import main

    out = work / "eval_trained"
    code = main(["evaluate", "--run", str(tiny_run), "--eval", str(eval_file), "--out", str(out),
                 "--batch-size", "4", "--n-prompts", "2", "--max-new-tokens", "6"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def trained_eval_trl(work, tiny_run, eval_file) -> Path:
    """The same evaluation in TRL's two-row layout (``PAIRLAB_LOGPS_LAYOUT=trl``), the one
    TRL's own ``evaluate()`` computes: the tests that compare with TRL to its last digit use
    it. (The default shared-prompt layout equals it to float rounding, which can flip the
    sign of a margin within rounding of 0: tests/train/test_logprobs_shared.py.)"""
    import os

    from pairlab.cli import main

    out = work / "eval_trained_trl"
    old = os.environ.get("PAIRLAB_LOGPS_LAYOUT")
    os.environ["PAIRLAB_LOGPS_LAYOUT"] = "trl"
    try:
        code = main(["evaluate", "--run", str(tiny_run), "--eval", str(eval_file), "--out", str(out),
                     "--batch-size", "4", "--n-prompts", "1", "--max-new-tokens", "2"])
    finally:
        if old is None:
            os.environ.pop("PAIRLAB_LOGPS_LAYOUT")
        else:
            os.environ["PAIRLAB_LOGPS_LAYOUT"] = old
    assert code == 0
    return out


@pytest.fixture(scope="session")
def base_eval(work, trained_eval, eval_file) -> Path:
    """`pairlab evaluate --model` of the untrained base, same settings (its reference is cached)."""
    from pairlab.cli import main

    out = work / "eval_base"
    code = main(["evaluate", "--model", "tiny-random-llama", "--eval", str(eval_file), "--out", str(out),
                 "--max-length", str(MAX_LENGTH), "--set", "dtype=float32", "--set", "beta=0.2",
                 "--set", f"ref_cache_dir={work / 'ref_cache'}", "--n-prompts", "1", "--max-new-tokens", "4"])
    assert code == 0
    return out
