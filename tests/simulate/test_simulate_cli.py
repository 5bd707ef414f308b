"""`pairlab simulate`, both modes, end to end through the real command line."""
from __future__ import annotations

import pandas as pd
import yaml
from simulate_fixtures import REPO, shared_file

from pairlab.artifacts import read_manifest
from pairlab.cli import main
from pairlab.config import load_config
from pairlab.simulate import SimulateConfig


def test_example_yaml_loads_and_names_every_field():
    cfg = load_config(SimulateConfig, REPO / "examples" / "simulate.yaml")
    listed = set(yaml.safe_load((REPO / "examples" / "simulate.yaml").read_text()))
    assert listed == set(SimulateConfig.__dataclass_fields__)
    assert cfg.validate().n == 5000


def test_simulate_command_writes_raw_pairs_and_manifest(tmp_path, capsys):
    config = tmp_path / "sim.yaml"
    config.write_text("n: 300\nrater_noise: 0.2\ntopics: {arithmetic: 1, facts: 1}\n")
    code = main(["simulate", "--config", str(config), "--n", "200", "--seed", "3",
                 "--length-bias", "0", "--tie-rate", "0", "--set", "eval_fraction=0.25",
                 "--out", str(tmp_path / "sim")])
    assert code == 0
    manifest = read_manifest(tmp_path / "sim")
    cfg = manifest["config"]
    assert cfg["n"] == 200 and cfg["seed"] == 3 and cfg["rater_noise"] == 0.2  # flag > YAML
    assert cfg["eval_fraction"] == 0.25 and cfg["length_bias"] == 0.0
    train = pd.read_parquet(tmp_path / "sim" / "train_pairs.parquet")
    assert len(train) == 150 and set(train["topic"]) == {"arithmetic", "facts"}
    assert "wrote 150 train + 50 eval records" in capsys.readouterr().out


def test_bad_config_exits_2_naming_the_field(tmp_path, capsys):
    code = main(["simulate", "--n", "10", "--length", "huge", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "length" in capsys.readouterr().err
    assert not (tmp_path / "x" / "train.jsonl").exists()


def test_from_mode_injects_noise_into_real_rows(tmp_path, capsys):
    # argilla's nested metadata.rating_* scores are found without --map
    path = shared_file("ultrafeedback/argilla-cleaned_sample1000.jsonl")
    code = main(["simulate", "--from", str(path), "--flip-rate", "0.2", "--flip-by", "gap", "--seed", "1",
                 "--out", str(tmp_path / "noisy")])
    assert code == 0, capsys.readouterr().err
    pairs = pd.read_parquet(tmp_path / "noisy" / "pairs.parquet")
    assert pairs["flipped"].sum() == round(0.2 * len(pairs))
    assert (pairs["true_preference_correct"] == ~pairs["flipped"]).all()
    manifest = read_manifest(tmp_path / "noisy")
    assert manifest["config"] == {"flip_rate": 0.2, "flip_by": "gap", "seed": 1, "noise": "uniform",
                                  "noise_group": "source"}
    assert manifest["summary"]["n_flipped"] == pairs["flipped"].sum()


def test_from_mode_needs_a_flip_rate(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    assert main(["simulate", "--from", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "--flip-rate" in capsys.readouterr().err
