"""Real rows, end to end: convert -> curate -> train -> evaluate -> report on each real file
in ../shared/data, with only the --map flags its layout needs and default settings
otherwise (skipped cleanly when the folder is absent).

Affordable on a 2-core CPU: the first 20 rows of each file; one SmolLM2 4-bit QLoRA run
(2 optimizer steps, on the smallest file's curated pairs) shared by every evaluation;
no generations (4-bit CPU generation cost ~5 min per file here and is tested elsewhere);
30% of each file held out for evaluation.
Everything else (max_length, beta, curation filters) is the default.
"""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from reports.headless import chromium, need_chromium  # tests/reports/headless.py

from pairlab.cli import main
from realdata import SHARED_DATA

ROWS = 20
#: file -> the --map flags its layout needs (nothing else).
FILES = {
    "ultrafeedback/h4-binarized_train_prefs_head16.jsonl": [],
    "ultrafeedback/trl-lib-binarized_train_slice1000.jsonl": [
        "--map", "score_chosen=metadata.score_chosen", "--map", "score_rejected=metadata.score_rejected"],
    "ultrafeedback/argilla-cleaned_sample1000.jsonl": [
        "--map", "score_chosen=metadata.rating_chosen", "--map", "score_rejected=metadata.rating_rejected"],
    "hh-rlhf/hh-rlhf_test_prompt-split_1000.jsonl": [],
}
TRAIN_ON = "ultrafeedback/h4-binarized_train_prefs_head16.jsonl"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real data not present: {SHARED_DATA}")]


def _strict_json(path):
    def refuse(constant):
        raise AssertionError(f"{constant} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _finite(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """file -> (rows written, curate dir): convert, then curate, each file's first rows."""
    work = tmp_path_factory.mktemp("realdata")
    out = {}
    for name, maps in FILES.items():
        source = SHARED_DATA / name
        if not source.exists():
            pytest.skip(f"real data not present: {source}")
        stem = source.name.split(".")[0]
        head = work / f"{stem}.jsonl"
        lines = source.read_text(encoding="utf-8").splitlines()[:ROWS]
        head.write_text("\n".join(lines) + "\n", encoding="utf-8")
        converted = work / f"{stem}.parquet"
        assert main(["convert", "--input", str(head), *maps, "--out", str(converted)]) == 0
        # 30% held out (the default 5% holds out 0-1 pairs of 20 rows, none of H4's 16) so each
        # evaluation has pairs to score and to truncate.
        assert main(["curate", "--input", str(converted), "--out", str(work / f"cur-{stem}"),
                     "--eval-fraction", "0.3", "--no-report"]) == 0
        out[name] = (len(lines), work / f"cur-{stem}")
    return work, out


@pytest.fixture(scope="module")
def run(curated):
    work, dirs = curated
    run_dir = work / "run"
    assert main(["train", "--pairs", str(dirs[TRAIN_ON][1]), "--model", "smollm2-135m-instruct",
                 "--set", "dpo.max_steps=2", "--set", f"ref_cache_dir={work / 'cache'}", "--out", str(run_dir)]) == 0
    return run_dir


def test_every_real_file_trains_evaluates_and_reports(curated, run, capsys):
    work, dirs = curated
    manifest = _strict_json(run / "manifest.json")
    t = manifest["truncation"]
    assert manifest["global_step"] == 2 and t["trl_dropped"] == t["excluded"]
    assert t["trl_trained_pairs"] + t["trl_dropped"] == t["pairs"] == manifest["inputs"]["n_pairs"]
    if manifest["device"] == "cpu":  # real, truncated batches all laid out one row per pair
        assert manifest["policy_layout"] == {"layout": "shared", "shared_batches": 2, "trl_batches": 0}
    for name, (rows, cur) in dirs.items():
        # every row accounted for: read + rejected = rows; curated = train + eval + dropped
        curate_manifest = _strict_json(cur / "manifest.json")
        pairs, held_out = pd.read_parquet(cur / "pairs.parquet"), pd.read_parquet(cur / "eval.parquet")
        dropped = pd.read_parquet(cur / "dropped.parquet")
        assert len(pairs) + len(held_out) + len(dropped) == rows, (name, curate_manifest.get("counts"))
        assert len(held_out) > 0, name

        out = work / f"eval-{cur.name}"
        assert main(["evaluate", "--run", str(run), "--eval", str(cur / "eval.parquet"), "--out", str(out),
                     "--no-generate"]) == 0, name
        m = _strict_json(out / "metrics.json")
        assert _finite(m), name
        tr = m["truncation"]
        per_pair, excluded = pd.read_parquet(out / "per_pair.parquet"), pd.read_parquet(out / "excluded.parquet")
        assert tr["pairs"] == len(held_out) == len(per_pair) + len(excluded) == m["n_pairs"] + m["n_excluded"]
        assert tr["excluded"] == len(excluded) and tr["truncated"] == len(held_out) - tr["by_kind"]["none"]
        assert 0 <= m["accuracy"] <= 1 and m["accuracy_ci95"][0] <= m["accuracy_ci95"][1]
        assert m["settings"]["max_length"] == 256  # the run's (pairlab's default), not overridden

        need_chromium()
        dom, console = chromium((out / "report.html").as_uri(), work / "profile", "--dump-dom")
        assert console == [], (name, console)
        assert '<section id="headline">' in dom and f"{tr['truncated']} of {tr['pairs']} pairs were truncated" in dom
        assert f'data-ready="{len(per_pair)}"' in dom
