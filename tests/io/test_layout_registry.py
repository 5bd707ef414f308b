"""Input layouts are a registry: one `register_layout` call adds a layout that `--format` reads."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pairlab.cli import main
from pairlab.io import LAYOUT_REGISTRY, read_pairs, register_layout
from pairlab.io.layouts import canonical_format
from pairlab.schema import PairDataError, finalize_pairs


def _quiz_rows(ctx):
    """question / good / bad (+ an optional `votes` gap) -> pairs; a row without `good` is rejected."""
    rows = []
    for index, record in enumerate(ctx.records):
        if not isinstance(record.get("good"), str):
            ctx.log.add(PairDataError("missing required field", field="good", **ctx.batch.where(index)),
                        ctx.batch.records[index])
            continue
        rows.append({"prompt": [{"role": "user", "content": record["question"]}], "chosen": record["good"],
                     "rejected": record["bad"], "score_chosen": float(record.get("votes", 1)),
                     "score_rejected": 0.0})
    return finalize_pairs(pd.DataFrame(rows))


@pytest.fixture
def quiz_layout():
    register_layout("quiz", lambda record, plan: "question" in record and "bad" in record, _quiz_rows,
                    help="a toy layout: question / good / bad", aliases=("quiz-v1",))
    yield
    LAYOUT_REGISTRY.pop("quiz")  # leave the registry (and the generated CLI help) as found


def _write(tmp_path):
    path = tmp_path / "quiz.jsonl"
    records = [{"question": "2+2?", "good": "4", "bad": "5", "votes": 3},
               {"question": "capital of France?", "good": "Paris", "bad": "Lyon"},
               {"question": "broken", "bad": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_a_registered_layout_is_read_through_the_cli(tmp_path, quiz_layout, capsys):
    path = _write(tmp_path)
    out = tmp_path / "pairs.parquet"
    assert main(["convert", "--input", str(path), "--format", "quiz", "--out", str(out)]) == 2  # 1 rejected
    assert main(["convert", "--input", str(path), "--format", "quiz", "--out", str(out), "--overwrite",
                 "--rejects", str(tmp_path / "rejects.jsonl")]) == 0
    pairs = pd.read_parquet(out)
    assert pairs["chosen"].tolist() == ["4", "Paris"] and pairs["score_chosen"].tolist() == [3.0, 1.0]
    # auto-detection finds it before the catch-all generic, and its alias is a --format name
    df = read_pairs(str(path))
    assert df.attrs["read_stats"]["layout"] == "quiz" and df.attrs["read_stats"]["rejected"] == 1
    assert canonical_format("quiz-v1") == "quiz"
    assert list(LAYOUT_REGISTRY)[-2:] == ["quiz", "generic"]


def test_the_cli_help_lists_registered_layouts(quiz_layout, capsys):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    assert "quiz" in capsys.readouterr().out


def test_an_unknown_format_names_the_registered_ones(tmp_path, capsys):
    assert main(["inspect", "--input", str(_write(tmp_path)), "--format", "quiz"]) == 2
    err = capsys.readouterr().err
    assert "unknown format 'quiz'" in err and "generic" in err


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already taken"):
        register_layout("h4", lambda r, p: False, _quiz_rows)
    with pytest.raises(ValueError, match="already taken"):
        register_layout("other", lambda r, p: False, _quiz_rows, aliases=("trl",))
