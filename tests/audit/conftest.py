"""Fixtures for audit tests: simulator pairs and a tiny-random-llama peft model with non-zero LoRA."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sim_pairs():
    """Short arithmetic simulator pairs (train, eval) with 20 % flipped labels."""
    from pairlab.simulate import simulate_pairs

    train, held_out = simulate_pairs(n=40, seed=0, topics={"arithmetic": 1.0}, label_flip_rate=0.2,
                                     eval_fraction=0.2)
    return train.reset_index(drop=True), held_out.reset_index(drop=True)


@pytest.fixture(scope="session")
def tiny_peft():
    """(peft model, tokenizer), shared by the session: see :func:`make_tiny_peft`."""
    return make_tiny_peft()


@pytest.fixture
def fresh_tiny_peft():
    """The same, built for one test alone (for a library that wraps the model's modules)."""
    return make_tiny_peft()


def make_tiny_peft():
    """(peft model, tokenizer): tiny-random-llama in full precision (fp32) with a random
    LoRA adapter (B != 0, so gradients w.r.t. A are non-zero too)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from pairlab.models import load_model, load_tokenizer

    tokenizer = load_tokenizer("tiny-random-llama")
    model = load_model("tiny-random-llama", quantization="none", dtype="float32", device="cpu")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                        init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(model, config), tokenizer
