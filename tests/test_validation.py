"""Validate before work: config ranges at load time (naming the dotted field), absurd scores
flagged when read and never an infinite gap, and an offline hub lookup that fails at once."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from pairlab.config import ConfigError, check_range, load_config, range_text
from pairlab.errors import DataError, ModelError, PairlabError, ReportError
from pairlab.schema import PairDataError, build_pairs


def test_one_error_hierarchy_with_exit_code_2():
    from pairlab.config import ConfigError as FromConfig
    from pairlab.models import ModelError as FromModels
    from pairlab.reports.kinds import ReportError as FromReports

    assert PairDataError is DataError and FromConfig is ConfigError
    assert FromModels is ModelError and FromReports is ReportError
    for cls in (DataError, ConfigError, ModelError, ReportError):
        assert cls.__mro__[1] is PairlabError and cls.exit_code == 2
    assert not issubclass(ModelError, DataError) and not issubclass(ReportError, DataError)


@pytest.mark.parametrize("rule, value, ok", [
    ({"gt": 0}, 0.1, True), ({"gt": 0}, 0, False), ({"min": 1}, -4, False), ({"min": 0, "max": 1}, 1, True),
    ({"min": 0, "lt": 1}, 1.0, False), ({}, float("nan"), False), ({}, float("inf"), False),
    ({"finite": False}, float("inf"), True), ({"min": 1, "allow": (-1,)}, -1, True), ({"min": 0}, [0, -1], False),
])
def test_check_range(rule, value, ok):
    if ok:
        check_range(value, rule, "x")
    else:
        with pytest.raises(ConfigError, match="field 'x"):
            check_range(value, rule, "x")


def test_range_text():
    assert range_text({"min": 0, "max": 1}) == "in [0, 1]" and range_text({"gt": 0}) == "> 0"
    assert range_text({"min": 0, "lt": 1}) == "in [0, 1)" and range_text({}) == ""


@pytest.mark.parametrize("override, field, text", [
    ("lora.r=-4", "lora.r", ">= 1"), ("dpo.beta=-1", "dpo.beta", "> 0"), ("dpo.beta=.nan", "dpo.beta", "finite"),
    ("dpo.learning_rate=0", "dpo.learning_rate", "> 0"), ("dpo.max_steps=0", "dpo.max_steps", "or -1"),
    ("dpo.per_device_train_batch_size=0", "dpo.per_device_train_batch_size", ">= 1"),
    ("lora.dropout=1", "lora.dropout", "[0, 1)"), ("save_steps=0", "save_steps", ">= 1"),
])
def test_train_config_ranges_name_the_dotted_field(override, field, text):
    from pairlab.train.config import load_train_config

    with pytest.raises(ConfigError) as err:
        load_train_config(None, [override])
    assert err.value.field == field and text in str(err.value)
    load_train_config(None, ["dpo.max_steps=-1", "dpo.beta=0.5", "lora.r=1"])  # the edges that are fine


@pytest.mark.parametrize("cls_ref, override, field", [
    ("pairlab.curate.config:CurateConfig", "near_dup_threshold=1.5", "near_dup_threshold"),
    ("pairlab.curate.config:CurateConfig", "eval_fraction=.nan", "eval_fraction"),
    ("pairlab.evaluate.config:EvalConfig", "top_p=0", "top_p"),
    ("pairlab.evaluate.config:EvalConfig", "sample_seeds=[0, -1]", "sample_seeds[1]"),
    ("pairlab.simulate.config:SimulateConfig", "tie_rate=.inf", "tie_rate"),
    ("pairlab.audit.pipeline:AuditConfig", "max_checkpoints=0", "max_checkpoints"),
    ("pairlab.audit.validate:ValidateConfig", "learning_rate=-1", "learning_rate"),
])
def test_every_stage_config_checks_ranges_at_load(cls_ref, override, field):
    import importlib

    module, name = cls_ref.split(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ConfigError) as err:
        load_config(cls, None, [override])
    assert err.value.field == field


def test_configs_built_in_code_are_checked_by_validate():
    from pairlab.curate.config import CurateConfig
    from pairlab.simulate.config import SimulateConfig

    with pytest.raises(ConfigError, match="max_length"):
        CurateConfig(max_length=0).validate()
    with pytest.raises(ConfigError, match="topics.facts"):
        SimulateConfig(topics={"facts": float("nan")}).validate()


def test_nan_and_inf_filter_thresholds_are_refused():
    from pairlab.curate import parse_filters

    for value in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"filters\[0\].min_rating_gap"):
            parse_filters([{"min_rating_gap": value}])
    (f,) = parse_filters([{"length_ratio": [0.5, float("inf")]}])  # an open range end stays allowed
    assert f.params == (0.5, float("inf"))


def _pairs(scores):
    return build_pairs([{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": "a", "rejected": "b",
                         "score_chosen": c, "score_rejected": r} for i, (c, r) in enumerate(scores)])


def test_absurd_scores_are_flagged_and_never_give_an_infinite_gap():
    from pairlab.curate.scores import rating_scores
    from pairlab.preference import rating_gap

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow RuntimeWarning either
        df = _pairs([(1e308, -1e308), (float("inf"), 1.0), (5.0, 1.0), (float("nan"), 1.0)])
        gaps = rating_scores(df)["rating_gap"]
        abs_gaps = rating_gap(df, aspect_fallback=True).abs().to_numpy()
    assert df["flags"].tolist() == ["nonfinite_score", "nonfinite_score", "", "missing_score"]
    assert np.isnan(gaps[:2]).all() and gaps[2] == 4.0 and np.isnan(gaps[3])
    assert np.isfinite(abs_gaps[2]) and not np.isinf(abs_gaps).any()


def test_missing_spec_fails_at_once_without_network(monkeypatch):
    """No HF offline mode, but the hub endpoint cannot be reached (a closed local port):
    the spec is reported as a missing path in well under a second, never retried."""
    import datasets
    from huggingface_hub import constants

    from pairlab.io import read_pairs, sources

    def must_not_run(*args, **kwargs):
        raise AssertionError("datasets.load_dataset should not be tried without a hub")

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    monkeypatch.setattr(sources, "_REACHABLE", None)
    monkeypatch.setattr(datasets, "load_dataset", must_not_run)
    started = time.time()
    with pytest.raises(PairDataError) as err:
        read_pairs("data/no_such_pairs")
    assert time.time() - started < 5
    assert err.value.file == "data/no_such_pairs" and "no such local file or directory" in str(err.value)
