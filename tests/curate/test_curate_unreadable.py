"""Rows the reader rejected reach `dropped.parquet` as `unreadable: ...`, counted in the
manifest and the curation report: every input row is accounted for."""
from __future__ import annotations

import json

import pandas as pd

from pairlab.cli import main
from pairlab.curate import curate
from pairlab.curate.config import CurateConfig
from pairlab.io import read_pairs_with_rejects


def _pool_with_bad_rows(path, n=40):
    lines = [json.dumps({"prompt": f"Question {i}: what about topic {i}?",
                         "chosen": "A careful answer. " * (1 + i % 4), "rejected": "Short.",
                         "score_chosen": 1 + i % 9, "score_rejected": 1}) for i in range(n)]
    lines.insert(7, '{"prompt": "cut off", "chosen": ')                         # line 8
    lines.insert(20, json.dumps({"prompt": "p", "chosen": "a", "rejected": "b",
                                 "score_chosen": "excellent"}))               # line 21
    path.write_text("\n".join(lines) + "\n")
    return path


def test_curate_cli_writes_unreadable_rows_to_dropped(tmp_path, capsys):
    pool = _pool_with_bad_rows(tmp_path / "pool.jsonl")
    out = tmp_path / "cur"
    assert main(["curate", "--input", str(pool), "--out", str(out), "--tokenizer", "none"]) == 0
    printed = capsys.readouterr()
    assert "2 unreadable input rows in dropped.parquet" in printed.out
    assert "2 of 42 rows rejected" in printed.err

    dropped = pd.read_parquet(out / "dropped.parquet")
    bad = dropped[dropped["dropped_by"] == "unreadable"]
    assert bad["reject_line"].tolist() == [8, 21]
    assert bad["drop_reason"].str.startswith("unreadable: ").all()
    assert "line 8: malformed JSON" in bad["drop_reason"].iloc[0]
    assert "field 'score_chosen'" in bad["drop_reason"].iloc[1]
    assert bad["pair_id"].str.startswith("unreadable-").all() and dropped["pair_id"].is_unique

    m = json.loads((out / "manifest.json").read_text())
    counts = m["counts"]
    assert counts["unreadable"] == 2 and counts["input"] == 40
    assert counts["train"] + counts["eval"] + counts["dropped"] == counts["input"]
    pool_in = m["inputs"]["pool"]
    assert pool_in["rows_in_input"] == 42 == pool_in["records_read"] + pool_in["rejected"]
    html = (out / "curation.html").read_text()
    assert "Input rows: 42 = 40 read + 2 unreadable" in html


def test_curate_strict_stops_at_the_first_bad_row(tmp_path, capsys):
    pool = _pool_with_bad_rows(tmp_path / "pool.jsonl")
    code = main(["curate", "--input", str(pool), "--out", str(tmp_path / "cur"),
                 "--tokenizer", "none", "--strict"])
    assert code == 2
    err = capsys.readouterr().err
    assert "line 8" in err and "malformed JSON" in err and "Traceback" not in err
    assert not (tmp_path / "cur" / "manifest.json").exists()


def test_curate_api_takes_the_rejects_table(tmp_path):
    pairs, rejects = read_pairs_with_rejects(_pool_with_bad_rows(tmp_path / "pool.jsonl"))
    result = curate(pairs, ["drop_ties"], CurateConfig(tokenizer="none"), rejects=rejects)
    unreadable = result.dropped[result.dropped["dropped_by"] == "unreadable"]
    assert len(unreadable) == 2 and result.manifest["counts"]["unreadable"] == 2
    assert len(result.train) + len(result.eval) + len(result.dropped) == len(pairs) + len(rejects)
