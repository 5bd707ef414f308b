"""`pairlab audit --run ... --eval ...` end to end on a tiny run, checked against brute force."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairlab import artifacts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, sim_pairs):
    """A 4-step tiny-random-llama LoRA run (fp32, no quantization) keeping checkpoints 2 and 4."""
    from pairlab.train import load_train_config, train

    train_pairs, _ = sim_pairs
    root = tmp_path_factory.mktemp("audit")
    pairs = train_pairs.iloc[:8].copy()
    pairs.loc[0, "chosen"] = "<script>alert('x')</script> " + pairs.loc[0, "chosen"]
    pairs = pairs.reset_index(drop=True)
    artifacts.write_parquet(root / "pairs.parquet", pairs)
    cfg = load_train_config(None, [
        "model=tiny-random-llama", "quantization=none", "dtype=float32", "seed=1", "save_steps=2",
        "save_total_limit=null", f"ref_cache_dir={root / 'ref'}", "dpo.max_length=64", "dpo.max_steps=4",
        "dpo.per_device_train_batch_size=2", "dpo.learning_rate=0.01", "lora.r=4"])
    train(root / "pairs.parquet", cfg, root / "run")
    return root


def test_audit_cli_writes_attribution_and_report(tiny_run, sim_pairs):
    from pairlab.cli import main

    _, held_out = sim_pairs
    artifacts.write_parquet(tiny_run / "eval.parquet", held_out.iloc[:4])
    code = main(["audit", "--run", str(tiny_run / "run"), "--eval", str(tiny_run / "eval.parquet"),
                 "--out", str(tiny_run / "audit"), "--set", "proj_dim=1000", "--set", "batch_size=3",
                 "--set", "harmful_score=tracin"])
    assert code == 0
    scores = pd.read_parquet(tiny_run / "audit" / "attribution.parquet")
    assert len(scores) == 8 and scores["pair_id"].is_unique
    for col in ("tracin", "rating_gap", "implicit_margin", "policy_margin", "base_margin",
                "loss_difference", "confidence", "rank_average", "region", "tracin_step_2", "tracin_step_4"):
        assert col in scores, col
    assert scores["tracin"].notna().all() and scores["tracin"].abs().max() > 0
    manifest = artifacts.read_manifest(tiny_run / "audit")
    steps = [c["step"] for c in manifest["checkpoints"]]
    assert steps == [2, 4]
    weights = [c["lr_weight"] for c in manifest["checkpoints"]]
    np.testing.assert_allclose(scores["tracin"], weights[0] * scores["tracin_step_2"]
                               + weights[1] * scores["tracin_step_4"], rtol=1e-9)
    html = (tiny_run / "audit" / "audit.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html


def test_tracin_terms_equal_brute_force_at_a_checkpoint(tiny_run, sim_pairs):
    """The per-checkpoint term <g_i, mean g_eval> from the audit equals one computed with
    one backward per pair and the full (exact, unprojected) LoRA gradient."""
    from pairlab.audit.gradients import LossSettings, build_projections, naive_pair_gradients
    from pairlab.audit.pipeline import load_adapter_weights, load_trainable_policy
    from pairlab.evaluate.config import EvalConfig
    from pairlab.policy import reference_cache, reference_logps, resolve_setup

    scores = pd.read_parquet(tiny_run / "audit" / "attribution.parquet")
    pairs = pd.read_parquet(tiny_run / "pairs.parquet")
    held_out = pd.read_parquet(tiny_run / "eval.parquet")
    setup = resolve_setup(EvalConfig(), run=tiny_run / "run")
    model, tokenizer = load_trainable_policy(setup, tiny_run / "run" / "adapter")
    load_adapter_weights(model, tiny_run / "run" / "checkpoints" / "checkpoint-2")
    cache = reference_cache(setup, tokenizer)
    loss = LossSettings(beta=setup.beta, max_length=setup.max_length)
    proj = build_projections(model, 1000, seed=0)
    grads = {}
    for name, frame in (("train", pairs), ("eval", held_out)):
        ref, _ = reference_logps(model, tokenizer, frame, setup, cache, batch_size=4)
        grads[name] = naive_pair_gradients(model, tokenizer, frame, ref[["chosen_logps", "rejected_logps"]]
                                           .to_numpy(np.float32), proj, loss)
    brute = grads["train"].astype(np.float64) @ grads["eval"].astype(np.float64).mean(axis=0)
    got = scores.set_index("pair_id").loc[pairs["pair_id"], "tracin_step_2"].to_numpy()
    np.testing.assert_allclose(got, brute, rtol=1e-3, atol=1e-4 * np.abs(brute).max())


def test_audit_needs_eval_or_validate(tmp_path):
    from pairlab.cli import main

    assert main(["audit", "--out", str(tmp_path)]) == 2


def test_report_dispatch_knows_audit(tiny_run):
    import pairlab.reports.audit_report  # noqa: F401  (registers the kind)
    from pairlab.reports import detect_kind

    assert detect_kind(tiny_run / "audit").name == "audit"


def test_rerun_reuses_cached_gradients_and_a_new_projection_recomputes(tiny_run):
    """An audit run again into the same OUT reads each checkpoint's gradients back (same
    scores, no recomputation); a different projection invalidates them."""
    from pairlab.cli import main

    before = pd.read_parquet(tiny_run / "audit" / "attribution.parquet")
    assert sorted(p.name for p in (tiny_run / "audit" / "gradients").iterdir()) == ["step-2.npz", "step-4.npz"]
    args = ["audit", "--run", str(tiny_run / "run"), "--eval", str(tiny_run / "eval.parquet"),
            "--out", str(tiny_run / "audit"), "--set", "batch_size=3", "--set", "harmful_score=tracin",
            "--set", "report=false"]
    assert main([*args, "--set", "proj_dim=1000"]) == 2  # a finished audit is replaced only with --overwrite
    args.insert(1, "--overwrite")  # which keeps the content-keyed gradient cache
    assert main([*args, "--set", "proj_dim=1000"]) == 0
    again = pd.read_parquet(tiny_run / "audit" / "attribution.parquet")
    assert all(c["reused"] for c in artifacts.read_manifest(tiny_run / "audit")["checkpoints"])
    for col in ("tracin", "tracin_cosine", "self_influence", "policy_margin"):
        np.testing.assert_array_equal(again[col], before[col])
    assert main([*args, "--set", "proj_dim=8"]) == 0
    assert not any(c["reused"] for c in artifacts.read_manifest(tiny_run / "audit")["checkpoints"])
    assert not np.allclose(pd.read_parquet(tiny_run / "audit" / "attribution.parquet")["tracin"], before["tracin"])


def test_pairs_training_never_saw_get_no_score(tmp_path, sim_pairs, capsys):
    """A pair whose prompt alone fills max_length is dropped by TRL before training: its
    gradients are zero and its margins empty, so the audit leaves its scores empty (the ratings'
    gap excepted), counts it and never ranks it, instead of calling it neutral."""
    from pairlab.cli import main
    from pairlab.train import load_train_config, train

    train_pairs, held_out = sim_pairs
    pairs = train_pairs.iloc[:6].copy().reset_index(drop=True)
    long_prompt = "Please read all of this before answering. " * 40
    pairs.loc[2, "prompt"] = [{"role": "user", "content": long_prompt}]
    pairs.loc[2, "prompt_text"] = long_prompt
    artifacts.write_parquet(tmp_path / "pairs.parquet", pairs)
    artifacts.write_parquet(tmp_path / "eval.parquet", held_out.iloc[:2])
    cfg = load_train_config(None, [
        "model=tiny-random-llama", "quantization=none", "dtype=float32", "seed=1", "save_steps=2",
        f"ref_cache_dir={tmp_path / 'ref'}", "dpo.max_length=64", "dpo.max_steps=2",
        "dpo.per_device_train_batch_size=2", "dpo.learning_rate=0.01", "lora.r=4"])
    train(tmp_path / "pairs.parquet", cfg, tmp_path / "run")
    capsys.readouterr()
    assert main(["audit", "--run", str(tmp_path / "run"), "--eval", str(tmp_path / "eval.parquet"),
                 "--out", str(tmp_path / "audit"), "--set", "proj_dim=64", "--set", "report=false"]) == 0
    assert "audited 5 of 6 pairs" in capsys.readouterr().out
    scores = pd.read_parquet(tmp_path / "audit" / "attribution.parquet").set_index("pair_id")
    gone = pairs.loc[2, "pair_id"]
    assert scores["excluded"].ne("").sum() == 1 and scores.loc[gone, "excluded"].startswith("no completion token")
    for col in ("tracin", "tracin_cosine", "ekfac", "implicit_margin", "confidence", "rank_average", "tracin_step_2"):
        assert np.isnan(scores.loc[gone, col]), col
        # (cartography's confidence needs a pass over the pair: 2 steps of 2 saw 4 of the 5)
        assert scores.drop(index=gone)[col].notna().all() or col == "confidence", col
    assert not np.isnan(scores.loc[gone, "rating_gap"])
    assert pd.isna(scores.loc[gone, "harmful_rank"])
    assert sorted(scores["harmful_rank"].dropna().astype(int)) == [1, 2, 3, 4, 5]
    assert artifacts.read_manifest(tmp_path / "audit")["inputs"]["n_not_trained_on"] == 1
