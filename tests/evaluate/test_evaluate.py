"""pairlab evaluate end to end on a tiny trained run: outputs, exactness, TRL equivalence, the cache."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pairlab.evaluate import metrics

MAX_LENGTH = 96  # the tiny run's dpo.max_length (tests/evaluate/conftest.py)

CONTRACT_COLUMNS = [
    "pair_id", "policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
    "policy_chosen_logps_mean", "policy_rejected_logps_mean", "ref_chosen_logps_mean",
    "ref_rejected_logps_mean", "chosen_tokens", "rejected_tokens", "chosen_reward", "rejected_reward",
    "margin", "correct", "tie", "ref_free_margin", "ref_free_correct", "ref_free_margin_norm",
    "ref_free_correct_norm", "chosen_longer", "source", "score_chosen", "score_rejected", "rating_gap",
    "true_preference_correct", "prompt_text", "chosen", "rejected"]
GENERATION_COLUMNS = ["prompt_id", "prompt_text", "model", "mode", "seed", "text", "n_tokens",
                      "implicit_reward"]


def test_outputs_follow_the_contract(trained_eval, tiny_run, sim_split):
    per_pair = pd.read_parquet(trained_eval / "per_pair.parquet")
    assert set(CONTRACT_COLUMNS) <= set(per_pair.columns)
    assert list(per_pair["pair_id"]) == list(sim_split[1]["pair_id"])
    # The adapter moved every margin off 0, except where max_length cut chosen and rejected to
    # the same tokens (the simulator's answers share openings): a genuine tie.
    ties = per_pair[per_pair["tie"]]
    assert len(ties) < len(per_pair) / 2
    assert (ties["policy_chosen_logps"] == ties["policy_rejected_logps"]).all()
    m = json.loads((trained_eval / "metrics.json").read_text())
    assert m["run"] == str(tiny_run) and m["model"] == "tiny-random-llama" and m["beta"] == 0.2
    assert m["eval"]["n_pairs"] == len(per_pair) and len(m["eval"]["pairs_sha256"]) == 64
    assert m["settings"]["max_length"] == MAX_LENGTH and m["settings"]["dtype"] == "float32"
    assert m["timing"]["total_s"] > 0 and m["verdict"]["headline_metric"] == "accuracy"
    # metrics.json is summarize() of per_pair.parquet (same bootstrap seed)
    again = metrics.summarize(per_pair, 0.2)
    for key in ("accuracy", "accuracy_ci95", "mean_margin", "ref_free_accuracy", "calibration", "by_source"):
        assert m[key] == pytest.approx(again[key]) if not isinstance(again[key], (dict, list)) else \
            json.loads(json.dumps(again[key], default=float)) == m[key]
    gens = pd.read_parquet(trained_eval / "generations.parquet")
    assert list(gens.columns[:len(GENERATION_COLUMNS) - 1]) == GENERATION_COLUMNS[:-1]
    # 2 prompts x {base, aligned} x {greedy, sample seed 0}
    assert len(gens) == 8 and set(gens["model"]) == {"base", "aligned"} and set(gens["mode"]) == {"greedy", "sample"}
    assert gens["implicit_reward"].notna().all() and (gens["n_tokens"] <= 6).all()
    manifest = json.loads((trained_eval / "manifest.json").read_text())
    assert manifest["stage"] == "evaluate" and manifest["inputs"]["run"] == str(tiny_run)


def _direct_logps(model, tokenizer, prompt, completion, max_length):
    """Independent of pairlab: chat template -> completion tokens -> one unpadded forward -> gather."""
    import torch

    prompt = [dict(m) for m in prompt]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": completion}],
                                         tokenize=True, return_dict=True)["input_ids"]
    n = 0
    while n < min(len(prompt_ids), len(full)) and prompt_ids[n] == full[n]:
        n += 1
    ids = full[:max_length]  # keep_start truncation of prompt + completion
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return float(logp[n - 1:].sum()), len(ids) - n


def test_per_pair_equals_a_direct_recomputation(trained_eval_trl, tiny_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from pairlab.models import keep_4bit_weights_trainable, resolve_model

    path = resolve_model("tiny-random-llama").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.float32,
                                                device_map={"": "cpu"})
    # the 4-bit kernel pairlab computes with (bitsandbytes' repacked inference kernel, its default
    # in eval mode on AVX512-BF16 CPUs, computes in bf16 whatever the compute dtype)
    keep_4bit_weights_trainable(base)
    model = PeftModel.from_pretrained(base, str(tiny_run / "adapter"), autocast_adapter_dtype=False).eval()
    per_pair = pd.read_parquet(trained_eval_trl / "per_pair.parquet")
    pairs = pd.read_parquet(trained_eval_trl.parent / "eval_pairs.parquet").set_index("pair_id")
    rows = []
    for pid in per_pair["pair_id"]:
        p = pairs.loc[pid]
        row = {"pair_id": pid}
        for side in ("chosen", "rejected"):
            row[f"policy_{side}_logps"], row[f"{side}_tokens"] = _direct_logps(
                model, tokenizer, p["prompt"], p[side], MAX_LENGTH)
            with model.disable_adapter():
                row[f"ref_{side}_logps"], _ = _direct_logps(model, tokenizer, p["prompt"], p[side], MAX_LENGTH)
        rows.append(row)
    direct = pd.DataFrame(rows)
    for col in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
        np.testing.assert_allclose(per_pair[col], direct[col], rtol=1e-5, atol=2e-3)
    assert (per_pair["chosen_tokens"] == direct["chosen_tokens"]).all()
    assert (per_pair["rejected_tokens"] == direct["rejected_tokens"]).all()
    margin = 0.2 * ((direct["policy_chosen_logps"] - direct["ref_chosen_logps"])
                    - (direct["policy_rejected_logps"] - direct["ref_rejected_logps"]))
    np.testing.assert_allclose(per_pair["margin"], margin, atol=1e-3)
    assert (per_pair["correct"] == (margin > 0)).all()


def test_equals_trl_dpotrainer_evaluate_at_batch_size_1(trained_eval_trl, tiny_run, work):
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    from pairlab.io import to_trl_dataset
    from pairlab.models import load_model, load_tokenizer

    tokenizer = load_tokenizer("tiny-random-llama")
    model = PeftModel.from_pretrained(load_model("tiny-random-llama", quantization="4bit", dtype="float32"),
                                      str(tiny_run / "adapter"), is_trainable=False, autocast_adapter_dtype=False)
    dataset = to_trl_dataset(pd.read_parquet(trained_eval_trl.parent / "eval_pairs.parquet"))
    args = DPOConfig(output_dir=str(work / "trl"), per_device_eval_batch_size=1, max_length=MAX_LENGTH,
                     beta=0.2, use_cpu=True, bf16=False, fp16=False, report_to="none",
                     precompute_ref_log_probs=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset,
                         processing_class=tokenizer)
    # Given a PeftModel, TRL copies its adapter as the reference ("ref"); the DPO reference of a
    # trained run is the base, i.e. the adapter disabled, which TRL uses when there is no "ref".
    trainer.model.delete_adapter("ref")
    theirs = trainer.evaluate()
    ours = pd.read_parquet(trained_eval_trl / "per_pair.parquet")
    assert theirs["eval_rewards/accuracies"] == ours["correct"].mean()
    for key, col in (("chosen", "chosen_reward"), ("rejected", "rejected_reward"), ("margins", "margin")):
        assert theirs[f"eval_rewards/{key}"] == pytest.approx(ours[col].mean(), abs=1e-4)
    assert theirs["eval_logps/chosen"] == pytest.approx(ours["policy_chosen_logps"].mean(), rel=1e-5)


def test_reference_comes_from_the_cache_the_second_time(trained_eval, tiny_run, work, sim_split):
    from pairlab.evaluate import EvalConfig, evaluate

    first = json.loads((trained_eval / "metrics.json").read_text())["reference"]
    assert first["enabled"] and first["computed"] == len(sim_split[1]) and first["cache_hits"] == 0
    train_key = json.loads((tiny_run / "manifest.json").read_text())["ref_cache"]["key"]
    assert first["key"] == train_key  # the very cache training filled
    again = evaluate(sim_split[1], work / "eval_again", run=tiny_run, config=EvalConfig(generate=False))
    assert again.reference["computed"] == 0 and again.reference["forward_batches"] == 0
    assert again.reference["cache_hits"] == len(sim_split[1])
    before = pd.read_parquet(trained_eval / "per_pair.parquet")
    # batch 8 here vs 4 before: the policy side may differ by padding rounding only
    np.testing.assert_allclose(again.per_pair["ref_chosen_logps"], before["ref_chosen_logps"], rtol=0, atol=0)
    np.testing.assert_allclose(again.per_pair["margin"], before["margin"], atol=1e-4)
    assert not (work / "eval_again" / "generations.parquet").exists()


def test_bare_model_is_its_own_reference(base_eval, sim_split):
    per_pair = pd.read_parquet(base_eval / "per_pair.parquet")
    m = json.loads((base_eval / "metrics.json").read_text())
    assert per_pair["tie"].all() and (per_pair["margin"] == 0).all() and m["accuracy"] == 0.0
    assert m["policy_is_reference"] and m["run"] is None and m["ties"] == len(sim_split[1])
    assert m["verdict"]["headline_metric"] == "ref_free_accuracy" and m["verdict"]["all_ties"]
    assert m["verdict"]["headline_value"] == pytest.approx(per_pair["ref_free_correct"].mean())
    assert m["spearman_margin_rating_gap"] is None and m["accuracy_excluding_ties"] is None
    assert m["reference"]["computed"] == 0  # the trained run's evaluation cached this base's reference
    gens = pd.read_parquet(base_eval / "generations.parquet")
    assert set(gens["model"]) == {"base"} and gens["implicit_reward"].isna().all()


def test_resume_keeps_the_same_finished_evaluation_and_refuses_another(tiny_run, eval_file, work, sim_split, capsys,
                                                                       monkeypatch):
    """`evaluate --resume` (what `ablate --plan` prints): a finished evaluation of the same pairs,
    config and run is kept as is; one that differs is refused, never silently reused."""
    import os

    from pairlab.cli import main
    from pairlab.io import write_pairs

    out = work / "eval_resume"
    args = ["evaluate", "--run", str(tiny_run), "--eval", str(eval_file), "--out", str(out), "--no-generate"]
    assert main(args) == 0
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "already holds this evaluation" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp  # nothing rewritten
    assert main(args) == 2  # without --resume a finished evaluation is still refused
    assert "already holds a finished" in capsys.readouterr().err
    assert main([*args, "--resume", "--batch-size", "2"]) == 2
    assert "different config" in capsys.readouterr().err
    fewer = work / "eval_fewer.parquet"
    write_pairs(sim_split[1].head(5), fewer)
    assert main([*args[:4], str(fewer), *args[5:], "--resume"]) == 2
    assert "different eval pairs" in capsys.readouterr().err
    relabelled = work / "eval_relabelled.parquet"  # the same pairs, another source: by_source would be stale
    write_pairs(sim_split[1].assign(source="elsewhere"), relabelled)
    assert main([*args[:4], str(relabelled), *args[5:], "--resume"]) == 2
    assert "different eval pairs" in capsys.readouterr().err
    relative = os.path.relpath(tiny_run)  # the same run spelled another way is the same run
    assert main([args[0], "--run", relative, *args[3:], "--resume"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    assert os.path.exists(out / "manifest.json")
    capsys.readouterr()
    monkeypatch.setenv("PAIRLAB_LOGPS_LAYOUT", "trl")  # log-probs computed another way: not this evaluation
    assert main([*args, "--resume"]) == 2
    assert "different log-prob method" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    monkeypatch.delenv("PAIRLAB_LOGPS_LAYOUT")
    from pairlab.models import cpu_has_native_bf16  # dtype auto on the other CPU kind: not this evaluation

    native, flipped = ("1", "0") if cpu_has_native_bf16() else ("0", "1")  # as detected (or set) here
    monkeypatch.setenv("PAIRLAB_CPU_BF16", flipped)  # the run set dtype: float32, so nothing changes
    assert main([*args, "--resume"]) == 0
    monkeypatch.setenv("PAIRLAB_CPU_BF16", native)
    base = ["evaluate", "--model", "tiny-random-llama", "--eval", str(fewer), "--out", str(work / "eval_base_auto"),
            "--no-generate"]  # a bare model in dtype auto: bf16 or fp32 by the CPU
    assert main(base) == 0
    monkeypatch.setenv("PAIRLAB_CPU_BF16", flipped)
    capsys.readouterr()
    assert main([*base, "--resume"]) == 2
    assert "different compute dtype" in capsys.readouterr().err


def test_default_shared_prompt_layout_equals_the_trl_layout_to_rounding(trained_eval, trained_eval_trl):
    """The default evaluation (shared-prompt layout) against TRL's two-row layout: the same
    pairs, tokens and log-probs to float rounding (4-bit kernel, fp32 compute)."""
    ours = pd.read_parquet(trained_eval / "per_pair.parquet").set_index("pair_id")
    trl = pd.read_parquet(trained_eval_trl / "per_pair.parquet").set_index("pair_id").loc[ours.index]
    assert (ours["chosen_tokens"] == trl["chosen_tokens"]).all()
    assert (ours["rejected_tokens"] == trl["rejected_tokens"]).all()
    for col in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
        np.testing.assert_allclose(ours[col], trl[col], rtol=1e-5, atol=2e-3)
    methods = {json.loads((d / "metrics.json").read_text())["reference"]["key"] for d in (trained_eval, trained_eval_trl)}
    assert len(methods) == 2  # the two layouts never share reference-cache entries
