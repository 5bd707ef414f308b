"""End to end: a real QLoRA DPO run of SmolLM2-135M (embedded, 4-bit NF4) on simulator pairs; the loss
falls, and the trained adapter and the base model are evaluated with their reports."""
from __future__ import annotations

import json

import pytest

from pairlab.train import load_train_config, train


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_qlora_dpo_smollm2_loss_decreases(tmp_path, sim_pairs):
    # The 4 shortest pairs seen 4 times (2 steps an epoch, 8 steps): each pair is compared with
    # itself across epochs, so the check does not depend on which pairs are easy. ~2 min on 2 cores.
    size = sim_pairs["prompt_text"].str.len() + sim_pairs["chosen"].str.len() + sim_pairs["rejected"].str.len()
    pairs = sim_pairs.loc[size.sort_values(kind="stable").index[:4]]
    config = load_train_config(None, [
        "model=smollm2-135m-instruct", "quantization=4bit", "seed=0", f"ref_cache_dir={tmp_path / 'cache'}",
        "dpo.num_train_epochs=4", "dpo.per_device_train_batch_size=2", "dpo.max_length=80",
        "dpo.learning_rate=0.0005", "dpo.beta=0.1", "save_steps=4"])
    run = train(pairs, config, tmp_path / "run")
    assert run.global_step == 8
    dyn = run.dynamics
    by_epoch = dyn.groupby("epoch").agg(loss=("loss", "mean"), margin=("margin", "mean"))
    assert by_epoch.loc[3, "loss"] < by_epoch.loc[0, "loss"] - 0.05, by_epoch
    assert by_epoch.loc[3, "margin"] > by_epoch.loc[0, "margin"], by_epoch
    first, last = run.train_log["loss"].head(2).mean(), run.train_log["loss"].tail(2).mean()
    assert last < first, run.train_log
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["quantization"] == "4bit" and manifest["inputs"]["model"]["spec"] == "smollm2-135m-instruct"
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()

    # Evaluate the trained adapter and the untrained base on the same pairs; both reports render.
    from pairlab.evaluate import evaluate, load_eval_config
    from pairlab.reports import render_report

    eval_config = load_eval_config(None, ["n_prompts=1", "max_new_tokens=8", "modes=[greedy]"])
    trained = evaluate(pairs, tmp_path / "eval-trained", run=tmp_path / "run", config=eval_config)
    base = evaluate(pairs, tmp_path / "eval-base", model="smollm2-135m-instruct", config=eval_config)
    assert trained.reference["computed"] == 0  # training cached these pairs' reference log-probs
    assert trained.metrics["accuracy"] >= 0.75 and trained.metrics["mean_margin"] > 0
    assert base.metrics["ties"] == len(pairs)  # untrained: policy == reference
    for eval_dir in (tmp_path / "eval-trained", tmp_path / "eval-base"):
        html = (eval_dir / "report.html").read_text()
        for section in ('id="headline"', 'id="explorer"', 'id="generations"', 'id="calibration"'):
            assert section in html, (eval_dir, section)
    assert render_report(tmp_path / "run").name == "report.html"
