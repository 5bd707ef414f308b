"""The eval report: sections, verdicts, baseline comparison, 2,000 pairs."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import report_fixtures as fx

from pairlab.reports import render_report, report_summary
from pairlab.reports.eval_report import verdict
from pairlab.reports.explorer import decode_texts

SECTIONS = ("headline", "training", "rewards", "calibration", "breakdowns", "extremes", "generations",
            "pairs", "config")


def _block(html: str, block_id: str) -> str:
    return re.search(rf'<script type="[^"]+" id="{block_id}">(.*?)</script>', html, re.S).group(1)


def test_eval_report_has_every_section_and_the_run(tmp_path):
    run = fx.write_run_dir(tmp_path / "run")
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=150, run_dir=run)
    path = render_report(eval_dir)
    assert path == eval_dir / "report.html"
    html = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert '<meta name="viewport"' in html
    # training curves, margin shift, reward histograms, calibration
    assert html.count("data:image/png;base64,") == 4
    # The fixture's +4.7 points has a bootstrap CI above 0 but McNemar's exact p = 0.065: the verdict
    # follows the test (significant only when p < 0.05) and says what the design could detect.
    assert "DPO did not significantly change held-out reference-free preference accuracy" in html
    assert "McNemar p = 0.065; with 150 pairs this design detects only differences ≥ 6 points" in html
    assert "95% CI" in html and "McNemar" in html
    for text in ("sim_qa", "rating gap", "chosen longer", "Largest margin", "Smallest margin",
                 "base greedy answer 0.", "aligned greedy answer 0.", "learning rate", "Per-pair dynamics",
                 "eval manifest", "train manifest", "smollm2-135m-instruct"):
        assert text in html, text
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    data = json.loads(_block(html, "explorer-data"))
    assert len(data["rows"]) == 150
    assert [c["key"] for c in data["columns"]] == ["pair_id", "source", "rating_gap", "chosen_tokens",
                                                   "rejected_tokens", "chosen_reward", "rejected_reward",
                                                   "margin", "correct"]


def test_untrained_model_explains_zero_accuracy(tmp_path):
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=60, trained=False)
    html = render_report(eval_dir).read_text(encoding="utf-8")
    assert "0 by definition" in html and "Reference-free accuracy" in html
    assert "Ranked by reference-free margin" in html  # margins are all 0
    assert "(no adapter: aligned is the base model)" in html
    assert "No training run to show" in html
    summary = report_summary(eval_dir)
    assert summary["ranked_by"] == "ref_free_margin"


def test_baseline_comparison_is_paired(tmp_path):
    base = fx.write_eval_dir(tmp_path / "base", n=80, trained=False)
    aligned = fx.write_eval_dir(tmp_path / "aligned", n=80)
    html = render_report(aligned, baseline=base).read_text(encoding="utf-8")
    assert "DPO raised held-out preference accuracy from 0.0% to" in html
    assert "its accuracy is 0 by the tie rule" in html
    summary = report_summary(aligned, baseline=base)
    assert summary["baseline"]["n_shared"] == 80
    assert summary["baseline"]["difference_ci95"][0] > 0


@pytest.mark.parametrize("metrics, expected", [
    ({"n_pairs": 100, "accuracy": 0.7, "accuracy_ci95": [0.61, 0.79], "ties": 0}, "better than chance"),
    ({"n_pairs": 100, "accuracy": 0.52, "accuracy_ci95": [0.42, 0.62], "ties": 0}, "not distinguishable"),
    ({"n_pairs": 100, "accuracy": 0.3, "accuracy_ci95": [0.21, 0.39], "ties": 0}, "worse than chance"),
    ({"n_pairs": 100, "accuracy": 0.0, "accuracy_ci95": [0.0, 0.0], "ties": 100, "ref_free_accuracy": 0.55,
      "ref_free_accuracy_norm": 0.5}, "0 by definition"),
    ({"n_pairs": 0}, "No pairs"),
])
def test_verdict_without_comparison(metrics, expected):
    assert expected in verdict(metrics)


def test_verdict_with_reference_free_comparison():
    text = verdict({"n_pairs": 500, "accuracy": 0.66, "accuracy_ci95": [0.62, 0.7], "ties": 0},
                   {"reference": 0.48, "aligned": 0.57, "difference": 0.09, "difference_ci95": [0.05, 0.13]})
    assert text.startswith("DPO raised held-out reference-free preference accuracy from 48.0%")
    assert "+9.0 points, 95% CI +5.0 to +13.0" in text
    flat = verdict({"n_pairs": 12, "accuracy": 0.5, "accuracy_ci95": [0.25, 0.75], "ties": 2},
                   {"reference": 0.33, "aligned": 0.25, "difference": -0.08, "difference_ci95": [-0.25, 0.0]})
    assert flat.startswith("DPO did not significantly change held-out reference-free preference accuracy: "
                           "33.0% (reference model), then 25.0%")


def test_missing_run_dir_is_said(tmp_path):
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=30, run_dir=tmp_path / "gone", generations=False)
    html = render_report(eval_dir).read_text(encoding="utf-8")
    assert "was not found" in html
    assert '<section id="generations">' not in html


def test_two_thousand_pairs_stay_small_and_complete(tmp_path):
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=2000, length="realistic")
    per_pair = pd.read_parquet(eval_dir / "per_pair.parquet")
    started = time.time()
    html = render_report(eval_dir).read_text(encoding="utf-8")
    assert time.time() - started < 60
    text_chars = int(per_pair[["prompt_text", "chosen", "rejected"]].apply(lambda s: s.str.len().sum()).sum())
    assert text_chars > 4_000_000  # realistic lengths: the texts alone would be MBs
    assert len(html.encode("utf-8")) < 2_000_000
    assert len(json.loads(_block(html, "explorer-data"))["rows"]) == len(per_pair) >= 1990
    texts = decode_texts(_block(html, "explorer-text"))
    assert texts[-1] == per_pair[["prompt_text", "chosen", "rejected"]].iloc[-1].tolist()


def test_real_ultrafeedback_text_size(tmp_path):
    """2,000 real UltraFeedback pairs (6.3 MB of text) make a report of about 3 MB."""
    data = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ultrafeedback"
    files = [data / "argilla-cleaned_sample1000.jsonl", data / "trl-lib-binarized_train_slice1000.jsonl"]
    if not all(f.exists() for f in files):
        pytest.skip(f"real data not present: {data}")
    from pairlab.io import read_pairs

    table = pd.concat([read_pairs(str(f)) for f in files], ignore_index=True).drop_duplicates("pair_id")
    html = render_report(fx.write_eval_dir(tmp_path / "eval", table=table)).read_text(encoding="utf-8")
    assert len(json.loads(_block(html, "explorer-data"))["rows"]) == len(table) >= 1990
    assert len(html.encode("utf-8")) < 3_500_000
