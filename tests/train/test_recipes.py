"""TRL / alignment-handbook recipes: flat keys mapped to TrainConfig, hub names, a handbook recipe trains."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pairlab.config import ConfigError
from pairlab.train import load_train_config
from pairlab.train.config import build_dpo_config, hub_repo_name
from pairlab.train.recipes import RECIPE_KEYS, map_recipe, recipe_table

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "recipe-handbook-qlora.yaml"


def test_handbook_recipe_maps_every_key_with_a_notice(caplog):
    import yaml

    with caplog.at_level(logging.WARNING, logger="pairlab.recipe"):
        mapped, notices = map_recipe(yaml.safe_load(RECIPE.read_text()))
    cfg = load_train_config(RECIPE)
    assert cfg.model == "alignment-handbook/zephyr-7b-sft-qlora"
    assert cfg.quantization == "4bit" and cfg.dtype == "float16"  # torch_dtype claims dtype before bf16
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (16, 16, 0.05)
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                       "down_proj"]
    assert cfg.seed == 42 and cfg.logging_steps == 10 and cfg.save_steps == 100 and cfg.save_total_limit == 1
    assert cfg.dpo["beta"] == 0.01 and cfg.dpo["lr_scheduler_type"] == "cosine"
    assert cfg.dpo["warmup_steps"] == 0.1 and cfg.dpo["optim"] == "paged_adamw_32bit"
    assert cfg.dpo["gradient_checkpointing_kwargs"] == {"use_reentrant": False}
    for dropped in ("dataset_mixer", "dataset_splits", "output_dir", "max_prompt_length", "do_eval",
                    "evaluation_strategy", "eval_steps", "use_peft", "preprocessing_num_workers"):
        assert dropped not in mapped and dropped not in cfg.dpo
        assert any(n.startswith(f"recipe key {dropped} dropped") for n in notices), dropped
    assert any("recipe key bf16" in n and "ignored" in n for n in notices)
    # one line per recipe key (pairlab's own spellings -- seed, save_steps, ... -- need none)
    own = {"seed", "logging_steps", "save_steps", "save_total_limit"}
    assert len(notices) == len(yaml.safe_load(RECIPE.read_text())) - len(own)
    assert all("\n" not in n for n in notices)


def test_pairlab_spelling_wins_and_overrides_may_use_recipe_keys(caplog):
    cfg = load_train_config(None, {"model": "tiny-random-llama", "model_name_or_path": "org/big",
                                   "lora": {"r": 4}, "lora_r": 64, "dpo": {"beta": 0.3}, "beta": 0.9})
    assert cfg.model == "tiny-random-llama" and cfg.lora.r == 4 and cfg.dpo["beta"] == 0.3
    cfg = load_train_config(RECIPE, ["max_steps=2", "model=tiny-random-llama", "lora_r=4"])
    assert cfg.dpo["max_steps"] == 2 and cfg.model == "tiny-random-llama" and cfg.lora.r == 4


@pytest.mark.parametrize("key,value,match", [
    ("use_peft", False, "full fine-tuning"),
    ("load_in_8bit", True, "load_in_4bit"),
    ("bnb_4bit_quant_type", "fp4", "NF4"),
    ("use_dora", True, "plain LoRA"),
    ("load_in_4bit", "yes", "true or false"),
])
def test_settings_pairlab_cannot_honour_are_refused_by_name(tmp_path, key, value, match):
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": "org/m", key: value}))
    with pytest.raises(ConfigError, match=match) as err:
        load_train_config(path)
    assert err.value.field == key and err.value.file == str(path)


def test_unknown_recipe_key_still_fails():
    with pytest.raises(ConfigError, match="lora_rnk"):
        load_train_config(None, {"lora_rnk": 8})


def test_table_lists_every_key():
    table = recipe_table()
    for key in RECIPE_KEYS:
        assert f"| `{key}` |" in table
    # The README (or the docs page it moved to) shows the table exactly as the code generates it.
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    shown = [p for p in pages if "| `model_name_or_path` |" in p.read_text()]
    assert shown, "no page shows the recipe-key table"
    for page in shown:
        assert table in page.read_text(), f"{page}: recipe table is stale (pairlab.train.recipes.recipe_table())"


def test_hub_repository_is_named_after_the_run(tmp_path):
    import torch

    run = tmp_path / "zephyr-dpo"
    cfg = load_train_config(RECIPE, ["hub_model_id=null"])  # push_to_hub: true, no name
    args = build_dpo_config(cfg, run / "checkpoints", torch.float32, "cpu")
    assert args.push_to_hub is True and args.hub_model_id == "zephyr-dpo" and args.run_name == "zephyr-dpo"
    named = build_dpo_config(load_train_config(RECIPE), run / "checkpoints", torch.float32, "cpu")
    assert named.hub_model_id == "zephyr-7b-dpo-qlora"
    ablation_run = tmp_path / "my ablation" / "arms" / "gap-1.5" / "seed3" / "run"
    args = build_dpo_config(load_train_config(None, ["hub_model_id=null", "push_to_hub=true"]),
                            ablation_run / "checkpoints", torch.float32, "cpu")
    assert args.hub_model_id == "my-ablation-gap-1.5-seed3" == hub_repo_name(ablation_run)
    assert "checkpoints" not in args.hub_model_id


def test_ablation_train_section_takes_recipe_keys():
    from pairlab.ablate.config import AblationConfig, Arm, train_config
    from pairlab.config import from_dict

    cfg = from_dict(AblationConfig, {
        "pool": {"input": "x.jsonl"}, "train": {"model_name_or_path": "tiny-random-llama", "lora_r": 4,
                                                "beta": 0.2, "load_in_4bit": False},
        "arms": [{"name": "a", "filters": []}, {"name": "b", "filters": [], "train": {"beta": 0.5}}]})
    cfg.validate()
    a, b = (train_config(cfg, arm, 0) for arm in cfg.arms)
    assert a.model == "tiny-random-llama" and a.lora.r == 4 and a.quantization == "none"
    assert a.dpo["beta"] == 0.2 and b.dpo["beta"] == 0.5 and b.dpo["max_steps"] == 30
    with pytest.raises(ConfigError) as err:
        from_dict(AblationConfig, {"pool": {"input": "x"}, "train": {"use_peft": False},
                                   "arms": [Arm("a")]}).validate()
    assert err.value.field == "train.use_peft"


@pytest.mark.slow
def test_handbook_recipe_trains_through_the_cli(tmp_path, sim_pairs, capfd):
    """The zephyr QLoRA recipe, unedited, trains 2 steps on tiny-random-llama (model/data overridden)."""
    from pairlab.cli import main
    from pairlab.io import write_pairs

    write_pairs(sim_pairs.head(8), tmp_path / "pairs.parquet")
    code = main(["train", "--pairs", str(tmp_path / "pairs.parquet"), "--config", str(RECIPE),
                 "--model", "tiny-random-llama", "--set", "max_steps=2", "--set", "dtype=float32",
                 "--set", "push_to_hub=false", "--set", f"ref_cache_dir={tmp_path / 'cache'}",
                 "--out", str(tmp_path / "run")])
    assert code == 0, capfd.readouterr().err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["global_step"] == 2
    config = manifest["config"]
    assert config["model"] == "tiny-random-llama" and config["quantization"] == "4bit"
    assert config["lora"]["r"] == 16 and config["lora"]["target_modules"][0] == "q_proj"
    assert config["dpo_effective"]["beta"] == 0.01 and config["dpo_effective"]["lr_scheduler_type"] == "cosine"
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 16
    assert sorted(adapter["target_modules"]) == sorted(config["lora"]["target_modules"])
