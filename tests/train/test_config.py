"""TrainConfig: YAML + dotted overrides, DPOConfig pass-through and its validation (no model)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pairlab.config import ConfigError
from pairlab.train import TrainConfig, load_train_config
from pairlab.train.config import build_dpo_config

REPO = Path(__file__).resolve().parents[2]


def test_defaults_and_dotted_overrides():
    cfg = load_train_config(None, ["lora.r=4", "dpo.beta=0.3", "dpo.max_steps=7", "seed=5"])
    assert cfg.lora.r == 4 and cfg.lora.alpha == 32 and cfg.seed == 5
    assert cfg.dpo == {"beta": 0.3, "max_steps": 7}
    assert cfg.quantization == "4bit" and cfg.lora.target_modules == "all-linear"


def test_yaml_with_overrides_merges_nested(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("model: tiny-random-llama\nlora: {r: 8, target_modules: [q_proj, v_proj]}\n"
                    "dpo:\n  beta: 0.2\n  learning_rate: 1e-4\n")
    cfg = load_train_config(path, ["dpo.loss_type=ipo"])
    assert cfg.dpo == {"beta": 0.2, "learning_rate": "1e-4", "loss_type": "ipo"}
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    import torch

    args = build_dpo_config(cfg, tmp_path / "ck", torch.float32, "cpu")
    # YAML reads 1e-4 as a string; it reaches TRL as a float. bf16 follows the dtype.
    assert args.learning_rate == pytest.approx(1e-4) and args.beta == 0.2
    assert args.loss_type == ["ipo"] and args.bf16 is False and args.fp16 is False


def test_removed_trl_key_is_named_with_a_hint():
    with pytest.raises(ConfigError, match=r"dpo\.rpo_alpha.*no longer exists in TRL 1.16.*loss_weights"):
        load_train_config(None, ["dpo.rpo_alpha=1.0"])
    with pytest.raises(ConfigError, match="max_prompt_length"):
        load_train_config(None, {"dpo": {"max_prompt_length": 128}})


def test_unknown_and_managed_keys():
    with pytest.raises(ConfigError, match=r"dpo\.bta.*did you mean.*beta"):
        load_train_config(None, ["dpo.bta=0.1"])
    with pytest.raises(ConfigError, match=r"dpo\.bf16.*dtype"):
        load_train_config(None, ["dpo.bf16=true"])
    # A top-level DPOConfig key is a TRL / handbook recipe spelling: it goes under dpo:.
    assert load_train_config(None, ["beta=0.1"]).dpo == {"beta": 0.1}
    with pytest.raises(ConfigError, match=r"lora_rank.*unknown key"):
        load_train_config(None, ["lora_rank=8"])
    with pytest.raises(ConfigError, match="quantization"):
        load_train_config(None, ["quantization=8bit"])


def test_example_yaml_loads():
    cfg = load_train_config(REPO / "examples" / "train.yaml")
    assert isinstance(cfg, TrainConfig)


def test_every_field_has_help():
    from pairlab.config import field_help
    from pairlab.train.config import LoraSettings

    for cls in (TrainConfig, LoraSettings):
        assert all(field_help(cls).values()), cls
