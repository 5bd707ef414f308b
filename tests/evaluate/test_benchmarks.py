"""RewardBench-style evaluation: per-subset and per-section accuracy, best-of-n, against hand computations."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pairlab.errors import DataError
from pairlab.evaluate.benchmarks import REWARDBENCH_COUNTS, read_benchmark, summarize

SUBSETS = ["alpacaeval-easy", "mt-bench-med", "llmbar-natural", "refusals-dangerous", "math-prm", "hep-python",
           "my-own-subset"]


def _per_pair(margins, subsets, bench_ids=None):
    n = len(margins)
    frame = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "source": subsets,
                          "margin": np.asarray(margins, float), "ref_free_margin": -np.asarray(margins, float),
                          "ref_free_margin_norm": np.ones(n)})
    if bench_ids is not None:
        frame["bench_id"] = bench_ids
    return frame


def test_sections_are_weighted_by_rewardbench_counts_and_ties_are_wrong():
    # alpacaeval-easy 1/2 (one tie), mt-bench-med 1/1, math-prm 0/1, hep-python 1/1, custom 1/1
    pp = _per_pair([0.5, 0.0, 0.2, -0.1, 0.3, 1.0],
                   ["alpacaeval-easy", "alpacaeval-easy", "mt-bench-med", "math-prm", "hep-python", "x"])
    out = summarize(pp, n_boot=50)
    assert out["kind"] == "rewardbench" and out["subsets"]["alpacaeval-easy"]["accuracy"] == 0.5
    chat = (0.5 * 100 + 1.0 * 40) / (100 + 40)
    reasoning = (0.0 * 984 + 1.0 * 164) / (984 + 164)
    assert out["sections"]["Chat"]["accuracy"] == pytest.approx(chat)
    assert out["sections"]["Reasoning"]["accuracy"] == pytest.approx(reasoning)
    assert out["score"] == pytest.approx((chat + reasoning) / 2) and out["unmapped_subsets"] == ["x"]
    # reference-free (sum) flips every sign here; norm ranks every pair right
    assert summarize(pp, reference_free="sum", n_boot=50)["subsets"]["mt-bench-med"]["accuracy"] == 0.0
    assert summarize(pp, reference_free="norm", n_boot=50)["score"] == 1.0


def test_best_of_n_needs_chosen_above_every_rejected():
    pp = _per_pair([0.1, 0.2, 0.3, 0.1, -0.2, 0.4, 0.0, 0.5, 0.5], ["a"] * 6 + ["b"] * 3,
                   bench_ids=["e1"] * 3 + ["e2"] * 3 + ["e3"] * 3)
    out = summarize(pp, n_boot=50)
    assert out["kind"] == "best-of-n" and out["n_examples"] == 3
    assert out["subsets"]["a"] == {**out["subsets"]["a"], "n": 2, "correct": 1, "accuracy": 0.5}
    assert out["subsets"]["b"]["accuracy"] == 0.0  # a tie with one rejected completion is wrong
    assert out["score"] == 0.25


def _write_sets(tmp_path, sim_pairs):
    rows = sim_pairs.head(14).reset_index(drop=True)
    pairwise = [{"id": i, "prompt": r.prompt_text, "chosen": r.chosen, "rejected": r.rejected,
                 "subset": SUBSETS[i % len(SUBSETS)]} for i, r in rows.iterrows()]
    (tmp_path / "rb.jsonl").write_text("\n".join(json.dumps(r) for r in pairwise) + "\n")
    bon = [{"id": f"q{i}", "prompt": rows.prompt_text[i], "chosen": [rows.chosen[i]],
            "rejected": [rows.rejected[i], rows.rejected[(i + 1) % 14], rows.chosen[(i + 2) % 14]],
            "subset": ["Factuality", "Focus"][i % 2]} for i in range(6)]
    (tmp_path / "bon.jsonl").write_text("\n".join(json.dumps(r) for r in bon) + "\n")
    return tmp_path / "rb.jsonl", tmp_path / "bon.jsonl"


def test_reading_benchmark_files(tmp_path, sim_split):
    rb, bon = _write_sets(tmp_path, sim_split[0])
    pairs, kind = read_benchmark(rb)
    assert kind == "rewardbench" and len(pairs) == 14 and set(pairs["source"]) == set(SUBSETS)
    pairs, kind = read_benchmark(bon)
    assert kind == "best-of-n" and len(pairs) == 18 and pairs.groupby("bench_id").size().eq(3).all()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    with pytest.raises(DataError) as err:
        read_benchmark(tmp_path / "bad.jsonl")
    assert err.value.field == "subset" and err.value.line == 1


@pytest.mark.slow
def test_evaluate_reports_rewardbench_figures_equal_to_a_hand_computation(tmp_path, sim_split, tiny_run, work):
    from pairlab.cli import main

    rb, bon = _write_sets(tmp_path, sim_split[0])
    common = ["--run", str(tiny_run), "--no-generate", "--set", "n_boot=100", "--batch-size", "8"]
    assert main(["evaluate", *common, "--eval", str(rb), "--out", str(tmp_path / "rb")]) == 0
    metrics = json.loads((tmp_path / "rb" / "metrics.json").read_text())
    per_pair = pd.read_parquet(tmp_path / "rb" / "per_pair.parquet")
    bench = metrics["benchmark"]
    assert bench["kind"] == "rewardbench" and bench["n_examples"] == 14 and bench["reference_free"] == "none"
    by_subset = (per_pair["margin"] > 0).groupby(per_pair["source"]).mean()
    for subset, acc in by_subset.items():
        assert bench["subsets"][subset]["accuracy"] == pytest.approx(acc)
    sections = {"Chat": ["alpacaeval-easy", "mt-bench-med"], "Chat Hard": ["llmbar-natural"],
                "Safety": ["refusals-dangerous"], "Reasoning": ["math-prm", "hep-python"]}
    hand = {name: sum(by_subset[s] * REWARDBENCH_COUNTS[s] for s in subs) / sum(REWARDBENCH_COUNTS[s] for s in subs)
            for name, subs in sections.items()}
    for name, value in hand.items():
        assert bench["sections"][name]["accuracy"] == pytest.approx(value)
    assert bench["score"] == pytest.approx(np.mean(list(hand.values())))
    assert "my-own-subset" in bench["unmapped_subsets"]

    assert main(["evaluate", *common, "--eval", str(bon), "--reference-free", "norm",
                 "--out", str(tmp_path / "bon")]) == 0
    bench = json.loads((tmp_path / "bon" / "metrics.json").read_text())["benchmark"]
    per_pair = pd.read_parquet(tmp_path / "bon" / "per_pair.parquet")
    wins = (per_pair["ref_free_margin_norm"] > 0).groupby(per_pair["bench_id"]).all()
    subset = per_pair.groupby("bench_id")["source"].first()
    hand = wins.groupby(subset).mean()
    assert bench["kind"] == "best-of-n" and bench["n_examples"] == 6 and bench["reference_free"] == "norm"
    assert {k: v["accuracy"] for k, v in bench["subsets"].items()} == pytest.approx(hand.to_dict())
    assert bench["score"] == pytest.approx(hand.mean())
