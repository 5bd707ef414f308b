"""`pairlab export`: TRL-format data and config that TRL's own DPO script trains on, adapter, merged model, cards."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

MAX_LENGTH = 96
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """curate (one filter) -> train (tiny, full precision, 2 steps) -> evaluate -> export --merge, via the CLI."""
    from pairlab.cli import main
    from pairlab.io import write_pairs
    from pairlab.simulate import simulate_pairs

    work = tmp_path_factory.mktemp("export")
    pool, held_out = simulate_pairs(n=60, seed=1, eval_fraction=0.2, topics={"facts": 1.0, "definitions": 1.0})
    write_pairs(pool.head(12), work / "pool.parquet")
    write_pairs(held_out.head(6), work / "held_out.parquet")
    (work / "filters.yaml").write_text("- min_rating_gap: 0.5\n")
    assert main(["curate", "--input", str(work / "pool.parquet"), "--filters", str(work / "filters.yaml"),
                 "--set", "tokenizer=none", "--set", "report=false", "--out", str(work / "curated")]) == 0
    assert main(["train", "--pairs", str(work / "curated"), "--model", "tiny-random-llama", "--quantization", "none",
                 "--set", "dtype=float32", "--set", "seed=2", "--set", f"ref_cache_dir={work / 'cache'}",
                 "--set", f"dpo.max_length={MAX_LENGTH}", "--set", "dpo.learning_rate=0.05", "--set",
                 "dpo.max_steps=2", "--set", "lora.r=8", "--out", str(work / "my-run")]) == 0
    assert main(["evaluate", "--run", str(work / "my-run"), "--eval", str(work / "held_out.parquet"),
                 "--no-generate", "--set", "n_boot=200", "--out", str(work / "eval")]) == 0
    assert main(["export", str(work / "my-run"), "--eval", str(work / "eval"), "--merge",
                 "--out", str(work / "out")]) == 0
    return work


def test_export_holds_data_config_adapter_and_cards(exported):
    import datasets

    out = exported / "out"
    curated = pd.read_parquet(exported / "curated" / "pairs.parquet")
    train = pd.read_parquet(out / "data" / "train.parquet")
    assert len(train) == len(curated) and list(train["pair_id"]) == list(curated["pair_id"])
    assert train["chosen"].iloc[0][0]["role"] == "assistant" and train["prompt"].iloc[0][-1]["role"] == "user"
    disk = datasets.load_from_disk(str(out / "dataset"))
    assert disk["train"].num_rows == len(curated) and disk["test"].num_rows == len(
        pd.read_parquet(exported / "curated" / "eval.parquet"))
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    trl = yaml.safe_load((out / "trl_dpo.yaml").read_text())
    assert trl["use_peft"] is True and trl["lora_r"] == 8 and trl["learning_rate"] == 0.05
    assert trl["max_steps"] == 2 and trl["max_length"] == MAX_LENGTH and trl["dataset_name"] == "data"
    assert "load_in_4bit" not in trl and trl["hub_model_id"] == "my-run" == trl["run_name"]
    assert "accelerate launch --num_processes 1 -m trl.scripts.dpo --config trl_dpo.yaml" in (
        out / "launch.sh").read_text()
    card = (out / "README.md").read_text()
    metrics = json.loads((exported / "eval" / "metrics.json").read_text())
    lo, hi = metrics["accuracy_ci95"]
    assert "tiny-random-llama" in card and "min_rating_gap" in card and f"training pairs: {len(curated)}" in card
    assert f"{100 * metrics['accuracy']:.1f}% (95% CI {100 * lo:.1f}% to {100 * hi:.1f}%)" in card
    assert "| beta | 0.1 |" in card and "merged/" in card
    data_card = (out / "data" / "README.md").read_text()
    assert data_card.startswith("---\nconfigs:") and "path: train.parquet" in data_card
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "export" and manifest["merged"]["dtype"] == "float32"
    assert not list(exported.glob(".out.*.tmp"))  # built aside, renamed into place


def test_merged_model_matches_the_adapter_model(exported):
    """merge_and_unload on the full-precision base: same log-probs as base + adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pairlab.logprobs import sequence_logps
    from pairlab.models import load_model, load_tokenizer

    pairs = pd.read_parquet(exported / "held_out.parquet").head(4)
    tokenizer = load_tokenizer("tiny-random-llama")
    base = load_model("tiny-random-llama", quantization="none", dtype="float32", device="cpu")
    base_logps = sequence_logps(base, tokenizer, pairs, max_length=MAX_LENGTH)
    adapted = PeftModel.from_pretrained(base, str(exported / "out" / "adapter")).eval()
    adapter_logps = sequence_logps(adapted, tokenizer, pairs, max_length=MAX_LENGTH)
    merged = AutoModelForCausalLM.from_pretrained(exported / "out" / "merged", use_safetensors=True).eval()
    assert merged.dtype.__repr__() == "torch.float32"
    assert (exported / "out" / "merged" / "model.safetensors").exists()
    merged_logps = sequence_logps(merged, load_tokenizer(str(exported / "out" / "merged")), pairs,
                                  max_length=MAX_LENGTH)
    for col in ("chosen_logps", "rejected_logps"):
        assert merged_logps[col].to_numpy() == pytest.approx(adapter_logps[col].to_numpy(), abs=1e-3)
        # the adapter moved the model, so the equality above says something
        assert abs(adapter_logps[col] - base_logps[col]).max() > 1e-2


def test_trl_dpo_script_trains_on_the_exported_data_and_config(exported, monkeypatch):
    """TRL's own `trl dpo` entry point (trl.scripts.dpo) parses the YAML and trains one step on the data."""
    from trl.scripts.dpo import main, make_parser

    out = exported / "out"
    monkeypatch.chdir(out)  # the YAML's dataset_name is relative to the export, as launch.sh runs it
    parser = make_parser()
    args = parser.parse_args_and_config(["--config", "trl_dpo.yaml", "--max_steps", "1",
                                         "--output_dir", str(exported / "trl-run"), "--save_strategy", "no"])
    main(*args)
    assert (exported / "trl-run" / "adapter_model.safetensors").exists()
    assert json.loads((exported / "trl-run" / "adapter_config.json").read_text())["r"] == 8


def test_export_refuses_an_existing_out_and_an_ablation_without_winner(exported, tmp_path):
    from pairlab.cli import main

    assert main(["export", str(exported / "my-run"), "--out", str(exported / "out")]) == 2
    abl = tmp_path / "abl"
    (abl / "arms" / "a").mkdir(parents=True)
    (abl / "comparison.json").write_text(json.dumps({"verdict": {"winner": None}}))
    assert main(["export", str(abl), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_export_takes_only_an_evaluation_of_the_run_as_it_is(exported, tmp_path, capsys, monkeypatch):
    """`--eval` must have evaluated the exported run as it is now (the run manifest's sha256 the
    evaluation recorded), whatever path names the run; another run's or a stale one is refused."""
    import shutil

    from pairlab.cli import main

    monkeypatch.chdir(tmp_path)  # the evaluation recorded the run by another path: still the same run
    assert main(["export", str(exported / "my-run"), "--eval", str(exported / "eval"), "--out", "from-elsewhere"]) == 0
    other = tmp_path / "other-run"
    shutil.copytree(exported / "my-run", other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "note": "retrained"}))  # another run now
    capsys.readouterr()
    assert main(["export", str(other), "--eval", str(exported / "eval"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "an evaluation of another run" in err and "--eval" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
