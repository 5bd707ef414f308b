"""`pairlab curate` end to end, and exit code 2 on a bad filter file."""
from __future__ import annotations

import json

import pytest

from pairlab.cli import main


def _write_pool(path, n=60):
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"prompt": f"Question {i}: what about topic {i}?",
                                 "chosen": "A long careful answer. " * (1 + i % 5),
                                 "rejected": "Short." * (1 + i % 3),
                                 "meta": {"sc": 1 + i % 10, "sr": 1 + (i * 7) % 10}}) + "\n")
    return path


def test_cli_curates_and_writes_audit_trail(tmp_path, capsys):
    pool = _write_pool(tmp_path / "pool.jsonl")
    filters = tmp_path / "f.yaml"
    filters.write_text("filters:\n  - drop_ties\n  - min_rating_gap: 1\n  - balance_length\n"
                       "config:\n  eval_fraction: 0.1\n")
    out = tmp_path / "out"
    code = main(["curate", "--input", str(pool), "--map", "score_chosen=meta.sc",
                 "--map", "score_rejected=meta.sr", "--filters", str(filters), "--out", str(out),
                 "--tokenizer", "none", "--no-report"])
    assert code == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["eval_fraction"] == 0.1 and m["config"]["tokenizer"] == "none"
    assert sum(m["counts"][k] for k in ("train", "eval", "dropped")) == 60
    assert m["inputs"]["pool"]["file_sha256"]
    assert "min_rating_gap" in capsys.readouterr().out


@pytest.mark.parametrize("yaml_text, key", [
    ("- drop_ties\n- drop_everything\n", "filters[1].drop_everything"),
    ("- length_ratio: [3, 1]\n", "filters[0].length_ratio"),
    ("filters: [drop_ties]\nconfig: {max_lenght: 5}\n", "max_lenght"),
    ("filters: [drop_ties]\nextra: 1\n", "extra"),
])
def test_cli_bad_filter_file_exits_2_naming_the_key(tmp_path, capsys, yaml_text, key):
    pool = _write_pool(tmp_path / "pool.jsonl", n=3)
    filters = tmp_path / "bad.yaml"
    filters.write_text(yaml_text)
    code = main(["curate", "--input", str(pool), "--filters", str(filters),
                 "--out", str(tmp_path / "out"), "--tokenizer", "none"])
    assert code == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # failed before any work
