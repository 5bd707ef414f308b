"""Long sequences never break a number: truncation follows TRL's collator, pairs with no
completion token left are excluded and counted, no NaN reaches metrics.json, and an
interrupted evaluation keeps the log-probs it computed."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pairlab.evaluate import metrics
from pairlab.logprobs import kept_tokens, length_profile, truncation_counts, truncation_table

REPO = Path(__file__).resolve().parents[2]


def _strict_json(path: Path):
    """metrics.json parsed with NaN / Infinity refused (json.loads accepts them by default)."""
    def refuse(constant):
        raise AssertionError(f"{constant} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ---------------------------------------------------------------- pure: TRL's rule

@pytest.mark.parametrize("mode", ["keep_start", "keep_end"])
def test_kept_tokens_equal_trls_collator(mode):
    """What kept_tokens predicts is what TRL's own collator keeps and scores, length by length."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    rng = np.random.default_rng(0)
    prompts, completions = rng.integers(1, 40, 60), rng.integers(1, 40, 60)
    collate = DataCollatorForPreference(pad_token_id=0, max_length=32, truncation_mode=mode)
    examples = [{"prompt_ids": [5] * p, "chosen_ids": [7] * c, "rejected_ids": [9] * c}
                for p, c in zip(prompts, completions)]
    batch = collate(examples)
    scored = batch["completion_mask"][: len(examples), 1:].sum(dim=1).numpy()
    kept = batch["completion_mask"][: len(examples)].sum(dim=1).numpy()
    predicted = kept_tokens(prompts, completions, 32, mode)
    np.testing.assert_array_equal(predicted["completion_scored"], scored)
    np.testing.assert_array_equal(predicted["completion_kept"], kept)
    attended = batch["attention_mask"][: len(examples)].sum(dim=1).numpy()
    np.testing.assert_array_equal(predicted["prompt_kept"], attended - kept)


def test_truncation_table_kinds_reasons_and_counts():
    lengths = pd.DataFrame({"pair_id": list("abcde"), "prompt_tokens": [10, 10, 40, 31, 5],
                            "chosen_tokens": [5, 30, 5, 5, 5], "rejected_tokens": [5, 5, 5, 5, 40]})
    table = truncation_table(lengths, 32, "keep_start")
    assert list(table["truncated"]) == ["none", "completion", "both", "completion", "completion"]
    # keep_start: a prompt reaching max_length leaves no completion token (TRL drops it in training)
    assert list(table["scorable"]) == [True, True, False, True, True]
    assert "prompt has 40 tokens >= max_length 32" in table.loc[2, "excluded_reason"]
    assert table.loc[3, "chosen_scored"] == 1  # one token fits after a 31-token prompt
    counts = truncation_counts(table, 32)
    assert counts["truncated"] == 4 and counts["excluded"] == 1 and counts["scored"] == 4
    assert counts["by_kind"] == {"none": 1, "prompt": 0, "completion": 3, "both": 1}
    assert sum(counts["excluded_reasons"].values()) == counts["excluded"]
    assert truncation_table(lengths, None)["truncated"].eq("none").all()
    profile = length_profile(lengths, [32, 64])
    assert profile["percentiles"]["prompt"]["max"] == 40 and profile["at_max_length"]["32"]["excluded"] == 1
    assert profile["at_max_length"]["64"] == {"truncated": 0, "truncated_share": 0.0, "excluded": 0,
                                              "excluded_share": 0.0}


def test_summarize_uses_scored_pairs_only_and_never_nan():
    """Unscorable rows (NaN log-probs) are excluded from every statistic, counted, and no NaN leaks."""
    rng = np.random.default_rng(1)
    n = 12
    policy = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "chosen_logps": rng.normal(-20, 3, n),
                           "rejected_logps": rng.normal(-22, 3, n), "chosen_tokens": 5, "rejected_tokens": 6})
    policy.loc[[2, 7], ["chosen_logps", "rejected_logps"]] = np.nan
    policy.loc[[2, 7], ["chosen_tokens", "rejected_tokens"]] = 0
    ref = policy.assign(chosen_logps=policy["chosen_logps"] + 0.5)
    pairs = pd.DataFrame({"pair_id": policy["pair_id"], "score_chosen": 5.0, "score_rejected": 3.0})
    per_pair = metrics.per_pair_table(pairs, policy, ref, beta=0.1)
    per_pair["scorable"] = policy["chosen_tokens"].to_numpy() > 0
    summary = metrics.summarize(per_pair, 0.1, n_boot=200)
    assert summary["n_pairs"] == 10 and summary["n_excluded"] == 2
    scored = per_pair[per_pair["scorable"]]
    assert summary["accuracy"] == pytest.approx(scored["correct"].mean())
    assert summary["mean_margin"] == pytest.approx(scored["margin"].mean())
    assert summary["calibration"]["auroc"] is not None
    text = json.dumps(summary, default=str)
    assert "NaN" not in text and "Infinity" not in text
    # nothing scorable at all: every statistic is None, still no NaN
    empty = metrics.summarize(per_pair.assign(scorable=False), 0.1, n_boot=200)
    assert empty["n_pairs"] == 0 and empty["accuracy"] is None and empty["calibration"] is None
    assert "NaN" not in json.dumps(empty, default=str)
    assert "undefined" in metrics.verdict({**empty, "policy_is_reference": True})["text"]


def test_calibration_ignores_nan_margins():
    cal = metrics.calibration(np.array([1.0, -0.5, np.nan, 2.0]))
    assert cal["auroc"] is not None and np.isfinite(cal["ece"]) and np.isfinite(cal["brier"])
    assert sum(b["n"] for b in cal["reliability"]) == 6  # 3 finite margins, scored twice


# ---------------------------------------------------------------- end to end, tiny model

def long_prompt_pairs(sim_split, n: int = 6, long_every: int = 3, repeat: int = 30) -> pd.DataFrame:
    """Simulator eval pairs; every ``long_every``-th prompt made far longer than max_length."""
    from pairlab.schema import prompt_to_text

    pairs = sim_split[1].head(n).copy().reset_index(drop=True)
    for i in range(0, n, long_every):
        text = " ".join([pairs.loc[i, "prompt_text"]] * repeat)
        pairs.at[i, "prompt"] = [{"role": "user", "content": text}]
        pairs.loc[i, "prompt_text"] = prompt_to_text(pairs.loc[i, "prompt"])
    return pairs


def test_prompts_far_longer_than_max_length_tiny_model(tmp_path, sim_split):
    """The reported bug: a prompt over max_length gave NaN log-probs and a roc_auc traceback."""
    from pairlab.cli import main
    from pairlab.io import write_pairs

    pairs = long_prompt_pairs(sim_split)
    path = write_pairs(pairs, tmp_path / "long.parquet")
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", "tiny-random-llama", "--eval", str(path), "--out", str(out),
                 "--max-length", "64", "--set", f"ref_cache_dir={tmp_path / 'cache'}", "--n-prompts", "1",
                 "--max-new-tokens", "2"])
    assert code == 0
    m = _strict_json(out / "metrics.json")
    t = m["truncation"]
    assert t["pairs"] == len(pairs) and t["excluded"] == 2 and t["scored"] == len(pairs) - 2
    assert m["n_pairs"] == t["scored"] and m["n_excluded"] == t["excluded"]
    assert t["truncated"] == sum(v for k, v in t["by_kind"].items() if k != "none") >= t["excluded"]
    per_pair = pd.read_parquet(out / "per_pair.parquet")
    excluded = pd.read_parquet(out / "excluded.parquet")
    assert len(per_pair) + len(excluded) == len(pairs)
    assert set(excluded["pair_id"]) == set(pairs["pair_id"].iloc[[0, 3]])
    assert excluded["excluded_reason"].str.contains("max_length 64").all() and not excluded["scorable"].any()
    assert per_pair["scorable"].all() and np.isfinite(per_pair["margin"]).all()
    assert set(per_pair["truncated"]) <= {"none", "completion"} and (per_pair["chosen_tokens"] > 0).all()
    # the tokens actually scored are the ones TRL's rule leaves
    predicted = kept_tokens(per_pair["prompt_tokens"], per_pair["chosen_tokens_full"], 64)["completion_scored"]
    np.testing.assert_array_equal(per_pair["chosen_tokens"], predicted)
    assert m["calibration"]["auroc"] is not None and 0 <= m["ref_free_accuracy"] <= 1
    html = (out / "report.html").read_text()
    assert f"{t['truncated']} of {len(pairs)} pairs were truncated" in html and "excluded.parquet" in html


@pytest.mark.slow
def test_interrupted_evaluation_resumes_without_recomputing(tmp_path, sim_split):
    """SIGINT after a few saved chunks; the rerun reads them and computes only the rest."""
    from pairlab.io import write_pairs
    from pairlab.simulate import simulate_pairs

    # 150 pairs in chunks of 2: the interrupt is sent once 2 chunks are saved, and the other
    # 73 forwards outlast the poll and the signal's delivery on any CPU (with 40 pairs, an
    # idle CPU finished all 5 tries before the signal landed: the tiny model scores a batch of
    # 2 in a few milliseconds there)
    pairs, _ = simulate_pairs(n=150, seed=5, topics={"facts": 1.0, "definitions": 1.0})
    path = write_pairs(pairs, tmp_path / "pairs.parquet")
    env = {**os.environ, "TQDM_DISABLE": "1"}
    for attempt in range(5):  # a run that still finished before the interrupt is redone
        cache = tmp_path / f"cache-{attempt}"
        args = ["evaluate", "--model", "tiny-random-llama", "--eval", str(path), "--max-length", "96",
                "--batch-size", "2", "--set", "chunk_pairs=2", "--set", f"ref_cache_dir={cache}", "--no-generate"]
        first = tmp_path / f"first-{attempt}"
        # SIGINT's default action restored in the child: a test run started as a background job
        # (`make test &`, nohup) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
        proc = subprocess.Popen([sys.executable, "-m", "pairlab", *args, "--out", str(first)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(list(cache.glob("*/shard-*.parquet"))) < 2:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode == 130:
            break
        assert proc.returncode == 0, stderr  # finished before the interrupt: try again
    else:
        pytest.fail("five runs finished before the interrupt landed")
    assert not (first / "metrics.json").exists()
    saved = pd.concat([pd.read_parquet(p) for p in cache.glob("*/shard-*.parquet")])
    assert 2 <= len(saved) < len(pairs)

    from pairlab.cli import main

    assert main([*args, "--out", str(tmp_path / "second")]) == 0
    ref = _strict_json(tmp_path / "second" / "metrics.json")["reference"]
    assert ref["cache_hits"] == len(saved) and ref["computed"] == len(pairs) - len(saved)
    assert ref["forward_batches"] == math.ceil(ref["computed"] / 2)
    # what the interrupted run stored is what the rerun used
    per_pair = pd.read_parquet(tmp_path / "second" / "per_pair.parquet").set_index("pair_id")
    stored = saved.set_index("pair_id")
    np.testing.assert_array_equal(per_pair.loc[stored.index, "ref_chosen_logps"], stored["ref_chosen_logps"])


@pytest.mark.slow
def test_prompts_far_longer_than_max_length_smollm2(tmp_path, sim_split):
    """The same on the embedded SmolLM2 in 4-bit (the default model), through the API."""
    from pairlab.evaluate import evaluate, load_eval_config

    pairs = long_prompt_pairs(sim_split, n=4, long_every=2)
    config = load_eval_config(None, [f"ref_cache_dir={tmp_path / 'cache'}", "max_length=64", "generate=false"])
    result = evaluate(pairs, tmp_path / "eval", model="smollm2-135m-instruct", config=config, progress=False)
    m = _strict_json(tmp_path / "eval" / "metrics.json")
    assert m["truncation"]["excluded"] == 2 and m["n_pairs"] == 2 and m["n_excluded"] == 2
    assert set(result.excluded["pair_id"]) == set(pairs["pair_id"].iloc[[0, 2]])
    assert np.isfinite(result.per_pair[["policy_chosen_logps", "policy_rejected_logps"]]).all().all()
    assert m["calibration"]["auroc"] is not None and m["ref_free_accuracy"] is not None


@pytest.mark.slow
def test_bare_model_on_real_ultrafeedback_rows_with_default_settings(tmp_path):
    """The issue's acceptance case: real trl-lib UltraFeedback rows (one prompt of 3,708
    characters among the first 8), a bare model, default max_length: exit 0, finite metrics,
    truncated pairs counted (generations off: they are not the subject here)."""
    from pairlab.cli import main
    from realdata import shared_file

    lines = shared_file("ultrafeedback/trl-lib-binarized_train_slice1000.jsonl").read_text().splitlines()[:8]
    path = tmp_path / "uf8.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "e"
    code = main(["evaluate", "--model", "tiny-random-llama", "--eval", str(path),
                 "--eval-map", "score_chosen=metadata.score_chosen",
                 "--eval-map", "score_rejected=metadata.score_rejected",
                 "--set", f"ref_cache_dir={tmp_path / 'cache'}", "--no-generate", "--out", str(out)])
    assert code == 0
    m = _strict_json(out / "metrics.json")
    t = m["truncation"]
    assert t["max_length"] == 256 and t["pairs"] == 8 and t["excluded"] >= 1 and t["truncated"] > t["excluded"]
    assert m["n_pairs"] + m["n_excluded"] == 8 and m["calibration"]["auroc"] is not None
    assert m["spearman_margin_rating_gap"] is None  # all margins 0 (bare model): undefined, not NaN
