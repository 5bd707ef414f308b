"""One override grammar: `--config FILE` plus repeatable `--set dotted.key=value` on every command
with a config (train, evaluate, ablate, audit), one implementation (pairlab.config.cli_overrides);
the old spellings fail with exit 2 and the new form as the hint."""
from __future__ import annotations

from pathlib import Path

import pytest

from pairlab.cli import main
from pairlab.config import ConfigError, cli_overrides

DEMO = Path(__file__).resolve().parents[1] / "examples" / "ablation-demo.yaml"


def test_dotted_keys_set_one_nested_field_and_keep_the_files_others():
    from pairlab.ablate.config import load_ablation_config

    cfg = load_ablation_config(str(DEMO), ["train.dpo.beta=0.3", "pool.simulate.n=80", "seeds=[0,1]"])
    assert cfg.train["dpo"]["beta"] == 0.3 and cfg.train["dpo"]["learning_rate"] == 5.0e-4
    assert cfg.pool.simulate["n"] == 80 and cfg.pool.simulate["rater_noise"] == 1.5 and cfg.seeds == [0, 1]


def test_a_typed_map_value_is_kept_but_a_section_mapping_is_refused():
    from pairlab.ablate.config import AblationConfig
    from pairlab.audit.validate import ValidateConfig

    assert cli_overrides(["topics={arithmetic: 1.0}"], ValidateConfig) == {"topics": {"arithmetic": 1.0}}
    with pytest.raises(ConfigError, match="replace the whole `train` section") as err:
        cli_overrides(["train={dpo: {beta: 0.2}}"], AblationConfig)
    assert err.value.hint.endswith("--set train.dpo.beta=0.2")


def test_ablate_old_top_level_spelling_exits_2_with_the_dotted_form(tmp_path, capsys):
    code = main(["ablate", "--config", str(DEMO), "--out", str(tmp_path / "abl"),
                 "--set", "train={dpo: {beta: 0.2}}"])
    err = capsys.readouterr().err
    assert code == 2 and "--set train.dpo.beta=0.2" in err and "Traceback" not in err
    assert not (tmp_path / "abl").exists()


def test_ablate_dotted_key_reaches_the_nested_field(tmp_path, capsys):
    code = main(["ablate", "--config", str(DEMO), "--out", str(tmp_path / "abl"), "--set", "pool.flip_rate=2"])
    assert code == 2 and "pool.flip_rate" in capsys.readouterr().err


def test_audit_positional_overrides_exit_2_with_the_set_form(tmp_path, capsys):
    code = main(["audit", "--validate", "--out", str(tmp_path / "v"), "n=8", "counterfactual=false"])
    err = capsys.readouterr().err
    assert code == 2 and "--set n=8 --set counterfactual=false" in err
    assert not (tmp_path / "v").exists()


def test_audit_set_reaches_its_config(tmp_path, capsys):
    # a bad value through --set is checked against ValidateConfig (exit 2 naming the field), before any work
    code = main(["audit", "--validate", "--out", str(tmp_path / "v"), "--set", "flip_rate=1.5"])
    assert code == 2 and "flip_rate" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "ablate", "audit"])
def test_every_config_command_takes_config_and_set(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--config YAML" in out and "--set KEY=VALUE" in out and "dotted" in out
