"""Nothing is lost and nothing aborts the whole file: every row is read or rejected with
its file, line/row, field and reason; ``--strict`` turns the first reject into an error."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pandas as pd
import pytest

from io_fixtures import conv, generic_records, raw_records, real_file
from pairlab.cli import build_parser, main
from pairlab.io import REJECT_COLUMNS, read_pairs, read_pairs_with_rejects
from pairlab.schema import PairDataError

GOOD = {"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 2, "score_rejected": 1}

#: (bad JSONL line, the field a reject names, words of its reason)
BAD_LINES = {
    "malformed JSON": ('{"prompt": "x", "chosen": ', None, "malformed JSON"),
    "not an object": ('["a", "b"]', None, "expected a JSON object"),
    "too deep": ("[" * 100_000 + "]" * 100_000, None, "malformed JSON"),
    "missing field": (json.dumps({"prompt": "p", "chosen": "a"}), "rejected", "missing required field"),
    "completion is a number": (json.dumps({"prompt": "p", "chosen": 3, "rejected": "b"}), "chosen",
                               "wrong type"),
    "strings and messages": (json.dumps({"prompt": "p", "chosen": "a", "rejected": conv("p", "b")}),
                             "rejected", "both"),
    "prompt is a number": (json.dumps({"prompt": 7, "chosen": "a", "rejected": "b"}), "prompt",
                           "wrong type"),
    "score is a word": (json.dumps(dict(GOOD, score_rejected="high")), "score_rejected", "'high'"),
    "score is a list": (json.dumps(dict(GOOD, score_chosen=[5])), "score_chosen", "got list"),
    "score is a bool": (json.dumps(dict(GOOD, score_chosen=True)), "score_chosen", "True"),
    "message content": (json.dumps({"chosen": [{"role": "user", "content": "q"},
                                               {"role": "assistant", "content": {"t": 1}}],
                                    "rejected": conv("q", "b")}), "chosen", "message 1"),
    "differ before the last turn": (json.dumps({"chosen": conv("q1", "a"), "rejected": conv("q2", "b")}),
                                    "rejected", "differ before their last turn"),
    "source is a dict": (json.dumps(dict(GOOD, source={"a": 1})), "source", "expected a scalar"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_row_is_rejected_and_the_rest_read(tmp_path, case):
    line, field, reason = BAD_LINES[case]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join([json.dumps(GOOD), line, json.dumps(dict(GOOD, prompt="q"))]) + "\n")
    df, rejects = read_pairs_with_rejects(path)
    assert df["prompt_text"].tolist() == ["p", "q"]
    assert list(rejects.columns) == list(REJECT_COLUMNS) and len(rejects) == 1
    reject = rejects.iloc[0]
    assert (reject["file"], reject["line"], reject["field"]) == (str(path), 2, field)
    assert reason in reject["reason"] and reject["record"]
    stats = df.attrs["read_stats"]
    assert (stats["rows"], stats["records"], stats["rejected"]) == (3, 2, 1)
    assert stats["rejects"][0]["line"] == 2
    # --strict: the same row is the error, naming file, line and field
    with pytest.raises(PairDataError) as info:
        read_pairs(path, strict=True)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, field)


def test_raw_records_are_rejected_one_by_one(jsonl):
    records = raw_records()
    records[1]["completions"][1]["annotations"]["honesty"]["Rating"] = "excellent"
    records.append({"instruction": "No completions here."})
    df, rejects = read_pairs_with_rejects(jsonl(records))
    assert len(df) == 1 and df.loc[0, "prompt_text"] == "Explain gravity."
    assert rejects[["line", "field"]].astype(object).values.tolist() == [
        [2, "completions[1].annotations.honesty.Rating"], [3, "completions"]]


def test_parquet_rows_are_rejected_by_row(tmp_path):
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"prompt": ["a", "b", "c"], "chosen": ["x", "", "w"], "rejected": ["z", "y", "w"],
                  "score_chosen": ["1", "oops", " 2 "]}).to_parquet(path)
    df, rejects = read_pairs_with_rejects(path)
    assert df["prompt_text"].tolist() == ["a", "c"] and df["score_chosen"].tolist() == [1.0, 2.0]
    assert rejects[["row", "field"]].astype(object).values.tolist() == [[1, "score_chosen"]]
    assert rejects["line"].isna().all()


def test_json_array_nan_where_text_is_required(tmp_path):
    path = tmp_path / "rows.json"  # JSON's NaN literal, as Python's json.dumps writes it
    path.write_text('[{"prompt": "a", "chosen": "x", "rejected": "y", "score_chosen": NaN},'
                    ' {"prompt": NaN, "chosen": "x", "rejected": "y"}, 3]')
    df, rejects = read_pairs_with_rejects(path)
    assert len(df) == 1 and pd.isna(df.loc[0, "score_chosen"])  # an unknown score is kept
    assert rejects[["row", "field"]].astype(object).values.tolist() == [[1, "prompt"], [2, None]]  # file order


def test_every_row_rejected_is_an_error(tmp_path, capsys):
    path = tmp_path / "junk.jsonl"
    path.write_text("nope\n[1]\n")
    with pytest.raises(PairDataError) as info:
        read_pairs(path)
    assert info.value.line == 1 and "no row could be read (2 of 2 rejected)" in str(info.value)
    assert main(["convert", "--input", str(path), "--out", str(tmp_path / "o.parquet")]) == 2
    assert "no row could be read" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_map_field_typo_is_an_error_with_a_suggestion(jsonl):
    with pytest.raises(PairDataError) as info:
        read_pairs(jsonl(generic_records()), mapping=["score_chosne=metadata.x"])
    assert "unknown field 'score_chosne'" in str(info.value) and "did you mean score_chosen" in str(info.value)


# ---------------------------------------------------------------- hh-rlhf as published

def _hh_published(tmp_path):
    """hh-rlhf's test file as Anthropic publishes it (full transcripts, .jsonl.gz), rebuilt
    from the shared prompt-split rows, plus one quirky row whose chosen transcript runs two
    turns together without the blank line (the real file has such a row)."""
    rows = [json.loads(x) for x in real_file("hh-rlhf/hh-rlhf_test_prompt-split_1000.jsonl")
            .read_text(encoding="utf-8").splitlines()]
    full = [{"chosen": f"\n\n{r['prompt']}\n\nAssistant: {r['chosen']}",
             "rejected": f"\n\n{r['prompt']}\n\nAssistant: {r['rejected']}"} for r in rows]
    multi = next(i for i, r in enumerate(rows) if "\n\nHuman:" in r["prompt"])
    quirky = dict(full[multi])
    second = quirky["chosen"].index("\n\nHuman:", 2)  # the second human turn
    quirky["chosen"] = quirky["chosen"][:second] + " Human:" + quirky["chosen"][second + 9:]
    full.insert(500, quirky)
    path = tmp_path / "test.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in full)
    return path, len(full)


def test_hh_rlhf_published_gz_accounts_for_every_row(tmp_path, capsys):
    path, n_rows = _hh_published(tmp_path)
    df, rejects = read_pairs_with_rejects(path)
    stats = df.attrs["read_stats"]
    assert stats["layout"] == "hh" and stats["rows"] == n_rows == 1001
    assert stats["records"] + stats["rejected"] == n_rows and len(df) + len(rejects) == n_rows
    assert rejects["line"].tolist() == [501] and rejects.loc[0, "field"] == "rejected"
    assert "differ before their last turn" in rejects.loc[0, "reason"]
    # the transcripts split into the same pairs the publisher's prompt split gives
    split = read_pairs(real_file("hh-rlhf/hh-rlhf_test_prompt-split_1000.jsonl"))
    assert df["prompt"].map(json.dumps).tolist() == split["prompt"].map(json.dumps).tolist()

    assert main(["inspect", "--input", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["input_rows"], summary["rejected"], summary["rows"]) == (1001, 1, 1000)
    assert summary["read"]["rejects"][0]["line"] == 501
    assert "1 of 1001 rows rejected" in captured.err and "line 501" in captured.err
    assert main(["inspect", "--input", str(path)]) == 0
    text = capsys.readouterr().out
    assert "rows         1001: 1000 read + 1 rejected -> 1000 pairs" in text
    assert "line 501, field 'rejected'" in text

    assert main(["inspect", "--input", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "line 501" in err and "field 'rejected'" in err and "differ before" in err


def test_convert_prints_counts_and_writes_the_rejects_table(tmp_path, capsys):
    path, _ = _hh_published(tmp_path)
    out, rejected = tmp_path / "hh.parquet", tmp_path / "rejects.jsonl"
    assert main(["convert", "--input", str(path), "--out", str(out), "--rejects", str(rejected)]) == 0
    printed = capsys.readouterr().out
    assert "1001 rows: 1000 read + 1 rejected" in printed and "wrote 1 rejected rows" in printed
    row = json.loads(rejected.read_text())
    assert row["line"] == 501 and row["row"] is None and "Human:" in json.loads(row["record"])["chosen"]
    assert len(read_pairs(out)) == 1000


# ---------------------------------------------------------------- one --map for every command

@pytest.mark.parametrize("command, dest", [
    (["inspect", "--input", "x"], "input"),
    (["convert", "--input", "x", "--out", "o.parquet"], "input"),
    (["curate", "--input", "x", "--out", "o"], "input"),
    (["evaluate", "--model", "m", "--eval", "x", "--out", "o"], "eval"),
    (["simulate", "--from", "x", "--out", "o"], "from_spec"),
    (["audit", "--run", "r", "--eval", "x", "--out", "o"], "eval"),
])
def test_map_format_split_strict_on_every_single_input_command(command, dest):
    parser = build_parser()
    args = parser.parse_args(command + ["--map", "prompt=question", "--format", "generic",
                                        "--split", "test", "--hub-config", "en", "--strict"])
    assert getattr(args, f"{dest}_map") == ["prompt=question"]
    assert (getattr(args, f"{dest}_format"), getattr(args, f"{dest}_split")) == ("generic", "test")
    assert getattr(args, f"{dest}_hub_config") == "en" and args.strict
    if dest != "input":  # the prefixed forms stay as aliases
        prefix = {"eval": "--eval", "from_spec": "--from"}[dest]
        args = parser.parse_args(command + [f"{prefix}-map", "chosen=a", "--map", "rejected=b"])
        assert getattr(args, f"{dest}_map") == ["chosen=a", "rejected=b"]


def test_curate_keeps_map_for_input_and_eval_from_map_for_eval_from():
    args = build_parser().parse_args(["curate", "--input", "x", "--out", "o", "--map", "prompt=q",
                                      "--eval-from", "y", "--eval-from-map", "prompt=question"])
    assert args.input_map == ["prompt=q"] and args.eval_from_map == ["prompt=question"]


def test_simulate_from_reads_with_plain_map(tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "chosen": f"good {i}",
                                        "rejected": f"bad {i}"}) + "\n" for i in range(20)))
    code = main(["simulate", "--from", str(path), "--map", "prompt=question", "--flip-rate", "0.5",
                 "--flip-by", "uniform", "--out", str(tmp_path / "noisy")])
    assert code == 0, capsys.readouterr().err
    flipped = read_pairs(tmp_path / "noisy" / "pairs.parquet")
    assert sorted(flipped["prompt_text"]) == sorted(f"q{i}" for i in range(20))


def test_cli_bad_rows_never_traceback(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe{\n" + b'{"prompt": 1e999}\n')
    for extra in ([], ["--strict"]):
        proc = subprocess.run([sys.executable, "-m", "pairlab", "inspect", "--input", str(path),
                               *extra], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in proc.stderr
        assert proc.returncode == (2 if extra else 0)
        assert "line 2" in proc.stderr


def test_a_null_completion_is_rejected_like_a_null_prompt(tmp_path):
    """A null chosen or rejected is missing data: the row is rejected naming the field (an empty
    string is data: kept and flagged)."""
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"prompt": ["a", "b", "c", None], "chosen": ["x", None, "", "u"],
                  "rejected": ["z", "y", "w", "v"]}).to_parquet(path)
    df, rejects = read_pairs_with_rejects(path)
    assert df["prompt_text"].tolist() == ["a", "c"] and "empty_chosen" in df["flags"].iloc[1]
    assert rejects[["row", "field"]].astype(object).values.tolist() == [[1, "chosen"], [3, "prompt"]]
    assert rejects["reason"].tolist() == ["chosen is null", "prompt is null"]
