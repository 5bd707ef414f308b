"""The exported `trl dpo` YAML of a 4-bit run: TRL's own parser takes every key (no model)."""
from __future__ import annotations

import yaml

from pairlab.export.pipeline import trl_config
from pairlab.train import load_train_config
from pairlab.train.config import dpo_settings


def test_qlora_run_becomes_a_trl_dpo_yaml_trl_parses(tmp_path):
    from dataclasses import asdict

    from trl.scripts.dpo import make_parser

    cfg = load_train_config(None, ["lora_r=4", "lora_target_modules=[q_proj, v_proj]", "beta=0.05",
                                   "max_steps=7", "attn_implementation=sdpa"])
    run = {"config": {**asdict(cfg), "dpo_effective": dpo_settings(cfg)}, "compute_dtype": "bfloat16"}
    out = trl_config(run, "org/base", has_test=True, hub_model_id="abl-gap-seed0")
    assert out["load_in_4bit"] is True and out["bnb_4bit_quant_type"] == "nf4" and out["use_bnb_nested_quant"]
    assert out["lora_target_modules"] == ["q_proj", "v_proj"] and out["lora_r"] == 4
    assert out["bf16"] is True and out["fp16"] is False and out["dtype"] == "bfloat16"
    path = tmp_path / "trl_dpo.yaml"
    path.write_text(yaml.safe_dump(out))
    # bf16 is what the run used (a GPU); HF refuses it on this CPU-only machine, so parse with it off
    script, training, model, _ = make_parser().parse_args_and_config(["--config", str(path), "--bf16", "false"])
    assert model.load_in_4bit and model.lora_r == 4 and model.attn_implementation == "sdpa"
    assert training.beta == 0.05 and training.max_steps == 7 and training.hub_model_id == "abl-gap-seed0"
    assert script.dataset_name == "data" and script.dataset_test_split == "test"
