"""`pairlab audit --validate` end to end on SmolLM2 (slow): flips must be found well above chance."""
from __future__ import annotations

import pytest

from pairlab import artifacts


@pytest.mark.slow
@pytest.mark.heavy  # ~6 min on the slow CPU; CI runs the tiny-model validation and the quick suite
def test_validate_on_simulator_flips_smollm2(tmp_path):
    from pairlab.cli import main

    # CI size: the ValidateConfig defaults without the counterfactual retraining, one
    # checkpoint (the final one) for TracIn, and full-precision LoRA (4-bit training is
    # tested in tests/train/test_e2e.py; here it only costs time: 6.7 vs 4.0 s a step); no
    # LossDiff auxiliary run (LossDiff is checked in test_influence.py and the quick suite).
    code = main(["audit", "--validate", "--out", str(tmp_path / "v"), "--set", "counterfactual=false",
                 "--set", "save_steps=16", "--set", "quantization=none", "--set", "lossdiff=false",
                 "--set", f"ref_cache_dir={tmp_path / 'ref'}"])
    assert code == 0
    result = artifacts.read_json(tmp_path / "v" / "validation.json")
    assert result["status"] == "done"
    auroc = result["auroc_mislabeled"]
    assert set(auroc) >= {"tracin", "tracin_cosine", "self_influence", "rating_gap", "implicit_margin",
                          "policy_margin", "base_margin",
                          "loss_difference", "confidence", "rank_average"}
    # This configuration measured tracin 0.878, ekfac 0.866 and rating_gap 0.61 (seed 0, the slow
    # AVX2 CPU, fp32). The tolerance (0.08) is a margin for the other CPU kind's numerics, not a
    # measured spread: it ran on this kind only. The default harmful_score (tracin_cosine, the
    # SmolLM2 suite's choice) was not measured in this configuration: it is held to the bar the
    # docs state for every gradient score here, well above chance.
    from pairlab.audit.pipeline import AuditConfig

    default = AuditConfig().harmful_score
    assert auroc["ekfac"] is not None and auroc["ekfac"] >= 0.866 - 0.08
    assert auroc[default] is not None and auroc[default] >= 0.7
    assert auroc["tracin"] is not None and auroc["tracin"] >= 0.878 - 0.08
    assert auroc["tracin"] > auroc["rating_gap"] + 0.1
    assert (tmp_path / "v" / "audit" / "audit.html").exists()


@pytest.mark.slow
def test_validate_pipeline_with_counterfactual_on_tiny_model(tmp_path):
    """Every phase runs and lands in validation.json (tiny-random-llama learns nothing, so
    only the shape is checked here)."""
    from pairlab.audit import ValidateConfig, run_validation

    cfg = ValidateConfig(model="tiny-random-llama", n=16, n_eval=8, max_steps=2, save_steps=1,
                         max_length=64, ref_cache_dir=str(tmp_path / "ref"))
    result = run_validation(cfg, tmp_path / "v")
    assert result["status"] == "done"
    cf = result["counterfactual"]
    assert cf["k"] == result["data"]["n_mislabeled"]
    gradient = result["best_gradient_score"]
    assert gradient in ("tracin", "tracin_cosine", "self_influence", "datainf", "influence_fisher", "rank_average")
    assert {"full", f"minus_{gradient}", "minus_random", f"minus_{result['best_baseline']}"} <= set(cf["arms"])
    vs = cf["arms"][f"minus_{gradient}"]["vs_minus_random"]
    # one paired comparison per arm against minus_random, Holm-corrected across the arms, with its MDE
    compared = [a for a in cf["arms"].values() if "vs_minus_random" in a]
    assert all(a["vs_minus_random"]["n_comparisons"] == len(compared) for a in compared)
    assert vs["delta"] == pytest.approx(cf["arms"][f"minus_{gradient}"]["accuracy"]
                                        - cf["arms"]["minus_random"]["accuracy"])  # arm - minus_random
    assert vs["p_holm"] >= vs["p_value"] and "mde" in vs
    goal = result["goal"]["counterfactual"]
    assert goal["score"] == gradient
    mine, rand = cf["arms"][f"minus_{gradient}"], cf["arms"]["minus_random"]
    assert goal["beats_random"] == (mine["accuracy"] > rand["accuracy"])
    assert artifacts.read_json(tmp_path / "v" / "validation.json")["counterfactual"]["k"] == cf["k"]
    html = (tmp_path / "v" / "audit" / "audit.html").read_text()
    assert "Counterfactual retraining" in html and "held-out DPO loss" in html
    for arm in cf["arms"].values():
        low, high = arm["heldout_loss_ci95"]
        assert arm["heldout_loss"] > 0 and low <= arm["heldout_loss"] <= high
    assert "heldout_loss" in cf["arms"][f"minus_{gradient}"]["vs_minus_random"]

    # Run again into the same OUT: the run, the gradients and every arm are reused, same figures.
    again = run_validation(cfg, tmp_path / "v")
    assert again["earlier_runs"][0]["status"] == "done"
    assert again["auroc_mislabeled"] == result["auroc_mislabeled"]
    assert again["counterfactual"]["arms"] == cf["arms"]
    assert all(c["reused"] for c in artifacts.read_manifest(tmp_path / "v" / "audit")["checkpoints"])
