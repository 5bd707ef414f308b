"""Fixtures for train tests: simulator pairs and a quick tiny-model config."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sim_pairs():
    """Short simulator pairs (facts + definitions: ~45-token prompts and completions)."""
    from pairlab.simulate import simulate_pairs

    train, _ = simulate_pairs(n=80, seed=0, topics={"facts": 1.0, "definitions": 1.0})
    return train.reset_index(drop=True)


def _tiny_config(tmp_path, *extra: str, ref_cache: bool = True):
    """tiny-random-llama in 4-bit, batch 2, max_length 96, a per-test reference cache."""
    from pairlab.train import load_train_config

    return load_train_config(None, [
        "model=tiny-random-llama", "seed=3", f"ref_cache={str(ref_cache).lower()}",
        f"ref_cache_dir={tmp_path / 'ref_cache'}", "save_steps=100", "dpo.max_length=96",
        "dpo.learning_rate=0.002", "lora.r=8", *extra])


@pytest.fixture
def tiny_config():
    return _tiny_config
