"""pairlab compare: McNemar and paired bootstrap between evaluations on the same pairs."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from scipy.stats import binomtest

from pairlab.cli import main
from pairlab.dirs import EvalDir
from pairlab import stats


def test_compare_cli_matches_the_statistics_on_the_per_pair_tables(base_eval, trained_eval, tmp_path):
    assert main(["compare", str(base_eval), str(trained_eval), "--out", str(tmp_path), "--n-boot", "500"]) == 0
    result = json.loads((tmp_path / "comparison.json").read_text())
    base = pd.read_parquet(base_eval / "per_pair.parquet")
    trained = pd.read_parquet(trained_eval / "per_pair.parquet").set_index("pair_id").loc[base["pair_id"]]
    (c,) = result["comparisons"]
    assert c["baseline"] == str(base_eval) and c["other"] == str(trained_eval)
    acc = c["accuracy"]
    # One orientation everywhere: delta = other - baseline; b = baseline-only-correct, c = other-only.
    b = int((base["correct"].to_numpy() & ~trained["correct"].to_numpy()).sum())
    only_other = int((~base["correct"].to_numpy() & trained["correct"].to_numpy()).sum())
    assert (acc["baseline_only_correct"], acc["other_only_correct"]) == (b, only_other)
    assert acc["p_value"] == pytest.approx(1.0 if b + only_other == 0 else
                                           binomtest(b, b + only_other, 0.5).pvalue)
    assert acc["delta"] == pytest.approx(trained["correct"].mean() - base["correct"].mean())
    assert acc["mde"] == stats.mde(len(base), (b + only_other) / len(base))
    assert acc["n_comparisons"] == 1 and acc["p_holm"] == pytest.approx(acc["p_value"])
    assert c["ref_free"]["delta"] == pytest.approx(trained["ref_free_correct"].mean()
                                                   - base["ref_free_correct"].mean())
    boot = stats.paired_bootstrap(base["margin"], trained["margin"], n_boot=500)
    assert c["margin_bootstrap"]["mean_difference"] == pytest.approx(boot["mean_difference"])
    assert c["margin_bootstrap"]["ci95"] == pytest.approx(boot["ci95"])
    # The base's margins are all 0: every pair the trained run gets right is discordant, on its side.
    assert acc["baseline_only_correct"] == 0 and acc["other_only_correct"] == int(trained["correct"].sum())
    assert ("not significant" in acc["verdict"]) == (acc["p_value"] >= 0.05)
    # the overall verdict (stats.verdict, the rule ablate uses): a winner only when detected
    expected_winner = None if not acc["significant"] else str(trained_eval) if acc["delta"] > 0 else str(base_eval)
    assert result["verdict"]["winner"] == expected_winner and acc["verdict"] in result["verdict"]["text"]
    assert [e["eval_dir"] for e in result["evals"]] == [str(base_eval), str(trained_eval)]
    assert (tmp_path / "manifest.json").exists()


def test_compare_prints_json_without_out(base_eval, trained_eval, capsys):
    assert main(["compare", str(trained_eval), str(base_eval), "--n-boot", "200"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["baseline"] == str(trained_eval) and len(printed["comparisons"]) == 1


def test_compare_refuses_different_pairs(base_eval, trained_eval, tmp_path, capsys):
    other = tmp_path / "fewer"
    shutil.copytree(trained_eval, other)
    per_pair = pd.read_parquet(other / "per_pair.parquet")
    per_pair.iloc[1:].to_parquet(other / "per_pair.parquet")
    assert main(["compare", str(base_eval), str(other)]) == 2  # changed after evaluate finished
    assert "per_pair.parquet" in capsys.readouterr().err
    EvalDir.finish(other, config={})  # an evaluation that really had one pair fewer
    assert main(["compare", str(base_eval), str(other)]) == 2
    err = capsys.readouterr().err
    assert "different pairs" in err and "1 only in" in err and per_pair["pair_id"].iloc[0] in err
    assert main(["compare", str(base_eval), str(tmp_path)]) == 2  # not an evaluation directory
