"""The shared step runner (pairlab.experiments): one resume rule, seen through ablate and audit --validate.

finished + same config and inputs -> reused; debris -> redone; finished from another config or
inputs -> redone (and says why); finished but changed by hand -> refused.
"""
from __future__ import annotations

import pandas as pd
import pytest

from pairlab import artifacts
from pairlab.curate.config import CurateConfig
from pairlab.dirs import MANIFEST, CurateDir, EvalDir, RunDir, StageDirError
from pairlab.experiments import SKIPPED, ensure_curated


@pytest.fixture(scope="module")
def pool():
    from pairlab.simulate import simulate_pairs

    train, _ = simulate_pairs(n=40, seed=0, topics={"arithmetic": 1.0}, length="short", label_flip_rate=0.2)
    return train.reset_index(drop=True)


def _cfg(**changes) -> CurateConfig:
    return CurateConfig(**{"seed": 0, "max_length": 80, "eval_fraction": 0.0, "cache": False, "report": False,
                           **changes})


def _stamp(path):
    return (path / MANIFEST).stat().st_mtime_ns


def test_curate_step_reuses_redoes_and_refuses(pool, tmp_path):
    out = tmp_path / "cur"
    assert ensure_curated(pool, ["drop_empty"], _cfg(), out)["state"] == "curated"
    first = _stamp(out)
    assert ensure_curated(pool, ["drop_empty"], _cfg(), out) == {"state": SKIPPED}
    assert _stamp(out) == first  # reused, not rewritten
    assert ensure_curated(pool, ["drop_empty", "drop_identical"], _cfg(), out)["replaced"] == "filters changed"
    assert ensure_curated(pool, ["drop_empty", "drop_identical"], _cfg(seed=1), out)["replaced"].startswith(
        "config changed (seed")
    assert ensure_curated(pool.head(30), ["drop_empty", "drop_identical"], _cfg(seed=1), out)["replaced"] \
        == "pool changed"
    assert len(pd.read_parquet(out / CurateDir.PAIRS)) <= 30
    # debris: the manifest gone (killed mid-write) -> redone, not reused
    (out / MANIFEST).unlink()
    assert ensure_curated(pool.head(30), ["drop_empty", "drop_identical"], _cfg(seed=1), out)["state"] == "curated"
    CurateDir.verify(out)
    # changed by hand: refused, never discarded
    (out / CurateDir.DROPPED).write_bytes(b"edited")
    with pytest.raises(StageDirError, match="differs|bytes"):
        ensure_curated(pool.head(30), ["drop_empty", "drop_identical"], _cfg(seed=1), out)


TINY = {"name": "step runner", "pool": {"simulate": {"n": 60, "seed": 3, "length": "short"}, "max_eval_pairs": 8},
        "budget": {"unit": "steps", "value": 1}, "seeds": [0], "curate": {"max_length": 128},
        "train": {"model": "tiny-random-llama", "save_steps": 1,
                  "dpo": {"per_device_train_batch_size": 2, "max_length": 128}},
        "eval": {"batch_size": 8, "generate": False},
        "arms": [{"name": "all", "filters": []}, {"name": "gap1", "filters": [{"min_rating_gap": 1.0}]}]}


def test_ablate_prepare_redoes_only_the_arm_whose_filters_changed(tmp_path):
    """Through ablate (no training): the second prepare reuses the unchanged arm's curation and
    redoes the arm whose filters changed in the YAML."""
    import yaml

    from pairlab.ablate import load_ablation_config, prepare

    def cfg(gap):
        path = tmp_path / f"ablation-{gap}.yaml"
        path.write_text(yaml.safe_dump({**TINY, "arms": [TINY["arms"][0],
                                                         {"name": "gap1", "filters": [{"min_rating_gap": gap}]}]}))
        return load_ablation_config(str(path))

    layout, _, _ = prepare(cfg(1.0), tmp_path / "abl")
    kept, changed = _stamp(layout.curate("all")), _stamp(layout.curate("gap1"))
    prepare(cfg(1.0), tmp_path / "abl")
    assert (_stamp(layout.curate("all")), _stamp(layout.curate("gap1"))) == (kept, changed)
    prepare(cfg(2.0), tmp_path / "abl")
    assert _stamp(layout.curate("all")) == kept and _stamp(layout.curate("gap1")) != changed
    assert artifacts.read_manifest(layout.curate("gap1"))["filters"] == [{"min_rating_gap": 2.0}]


@pytest.mark.slow
def test_train_and_evaluate_steps_through_audit_validation(pool, tmp_path):
    """Through audit --validate's counterfactual arm step (tiny-random-llama, 1-2 steps): a rerun
    reuses run and eval; another step budget retrains, and the evaluation of the old run is redone."""
    from pairlab.audit.validate import ValidateConfig, _train_and_eval, train_config

    vcfg = ValidateConfig(model="tiny-random-llama", max_steps=1, save_steps=1, batch_size=2, max_length=64,
                          ref_cache_dir=str(tmp_path / "ref"))
    eval_pairs = pool.tail(6).reset_index(drop=True)
    train_pairs = pool.head(8)
    arm = tmp_path / "cf-x"
    first = _train_and_eval(train_pairs, eval_pairs, arm, train_config(vcfg))
    run_stamp, eval_stamp = _stamp(arm / "run"), _stamp(arm / "eval")
    again = _train_and_eval(train_pairs, eval_pairs, arm, train_config(vcfg))
    assert (_stamp(arm / "run"), _stamp(arm / "eval")) == (run_stamp, eval_stamp)  # both reused
    pd.testing.assert_frame_equal(first, again)
    # another config: the finished run is from another step budget -> retrained, its eval redone
    _train_and_eval(train_pairs, eval_pairs, arm, train_config(vcfg, **{"dpo.max_steps": 2}))
    assert RunDir.verify(arm / "run")["global_step"] == 2
    assert _stamp(arm / "eval") > _stamp(arm / "run") > run_stamp
    EvalDir.verify(arm / "eval")
    # other pairs (one removed): retrained on them
    _train_and_eval(train_pairs.head(7), eval_pairs, arm, train_config(vcfg, **{"dpo.max_steps": 2}))
    assert RunDir.verify(arm / "run")["inputs"]["pairs_sha256"] == artifacts.file_sha256(arm / "pairs.parquet")
    assert len(pd.read_parquet(arm / "pairs.parquet")) == 7
