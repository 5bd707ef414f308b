"""`pairlab convert` and `pairlab inspect` on every layout; bad input exits 2 without a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from io_fixtures import argilla_records, generic_records, h4_records, nested_records, raw_records
from pairlab.cli import main
from pairlab.io import read_pairs

HH = [{"prompt": "Human: Hi\n\nAssistant: Hello\n\nHuman: Joke?", "chosen": "Knock knock.",
       "rejected": "No."}]
LAYOUT_RECORDS = {"h4": h4_records, "raw": raw_records, "argilla": argilla_records,
                  "generic": generic_records, "hh": lambda: HH}


@pytest.mark.parametrize("layout", sorted(LAYOUT_RECORDS))
def test_convert_then_inspect_every_layout(layout, jsonl, tmp_path, capsys):
    src = jsonl(LAYOUT_RECORDS[layout]())
    out = tmp_path / "pairs.parquet"
    assert main(["convert", "--input", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"layout {layout}" in printed and str(out) in printed
    assert read_pairs(out).attrs["read_stats"]["layout"] == "pairs"

    assert main(["inspect", "--input", str(src), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == layout
    assert summary["rows"] == len(read_pairs(src))

    assert main(["inspect", "--input", str(out)]) == 0  # the converted file reads as pairs
    text = capsys.readouterr().out
    assert "layout       pairs" in text and "score_chosen" in text


def test_convert_with_map_and_forced_format_to_jsonl(jsonl, tmp_path, capsys):
    out = tmp_path / "mapped.jsonl"
    code = main(["convert", "--input", str(jsonl(nested_records())), "--format", "generic",
                 "--map", "prompt=question", "--map", "chosen=answers.good",
                 "--map", "rejected=answers.bad", "--map", "score_chosen=meta.scores.good",
                 "--map", "score_rejected=meta.scores.bad", "--out", str(out)])
    assert code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["chosen"] for r in lines] == ["6", "9"]
    assert lines[1]["score_rejected"] is None  # missing as JSON null, not NaN


def test_convert_raw_options(jsonl, tmp_path, capsys):
    out = tmp_path / "raw.parquet"
    assert main(["convert", "--input", str(jsonl(raw_records())), "--binarize", "overall-score",
                 "--pairing", "best-vs-worst", "--out", str(out)]) == 0
    assert "1 ties dropped" in capsys.readouterr().out
    assert read_pairs(out).loc[0, "chosen"] == "Gravity is magic."


def test_convert_trl_output(jsonl, tmp_path, capsys):
    import datasets

    out = tmp_path / "trl.parquet"
    assert main(["convert", "--input", str(jsonl(h4_records())), "--trl", "--out", str(out)]) == 0
    ds = datasets.Dataset.from_parquet(str(out))
    assert ds.column_names == ["prompt", "chosen", "rejected", "pair_id"]


def test_inspect_text_shows_flags_with_examples(jsonl, capsys):
    assert main(["inspect", "--input", str(jsonl(h4_records())), "--examples", "1"]) == 0
    text = capsys.readouterr().out
    assert "chosen_equals_rejected 1" in text and "[chosen_equals_rejected]" in text
    assert "ties 1" in text


@pytest.mark.parametrize("content, strict, expected", [
    ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{oops\n', True, "line 2"),
    ('{"prompt": "p", "chosen": 5, "rejected": "b"}\n', False, "field 'chosen'"),
    ('{oops\n[1]\n', False, "no row could be read (2 of 2 rejected)"),
    ("", False, "empty file"),
    ('{"question": "q"}\n', False, "unknown layout"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, content, strict, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert main(["inspect", "--input", str(path), *(["--strict"] if strict else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pairlab inspect: error: ") and expected in err and str(path) in err


def test_cli_subprocess_no_traceback(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\nnot json\n')
    proc = subprocess.run([sys.executable, "-m", "pairlab", "convert", "--input", str(path),
                           "--out", str(tmp_path / "x.parquet"), "--strict"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "line 2" in proc.stderr
    assert not (tmp_path / "x.parquet").exists()
    # without --strict the bad line is rejected and the good one converted, but bad input is
    # still an error: one line naming file and line, exit 2 (--rejects FILE accepts them: exit 0)
    proc = subprocess.run([sys.executable, "-m", "pairlab", "convert", "--input", str(path),
                           "--out", str(tmp_path / "x.parquet")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "1 of 2 rows rejected" in proc.stderr and f"{path}, line 2" in proc.stderr
    assert "2 rows: 1 read + 1 rejected" in proc.stdout
    assert len(read_pairs(tmp_path / "x.parquet")) == 1
