"""Real-file quirks a fourth probe left open, each read as its writer meant it.

* quotes in delimited files that do not quote cells (a TSV cell opening with ``"``),
* assistant turns that are tool calls,
* rows whose prompt is empty, or whose string prompt disagrees with its conversation.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pairlab.cli import main
from pairlab.io import read_pairs_with_rejects
from pairlab.schema import FLAGS


def _convert(tmp_path, path, chunk_rows: str = "0", extra=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    out, rejects = tmp_path / f"o{chunk_rows}.parquet", tmp_path / f"r{chunk_rows}.jsonl"
    assert main(["convert", "--input", str(path), "--out", str(out), "--rejects", str(rejects),
                 "--chunk-rows", chunk_rows, *extra]) == 0
    rej = pd.read_json(rejects, lines=True) if rejects.exists() and rejects.stat().st_size else pd.DataFrame()
    return pd.read_parquet(out), rej


# ---------------------------------------------------------------- quotes in TSV / CSV

UNQUOTED_TSV = ('prompt\tchosen\trejected\n'
                '"Quoted" at the start\tyes\tno\n'                # quotes as text, closed mid-cell
                'q2\ta\tb\n'
                '"an open quote that never closes\tc\td\n'        # swallowed every line after it
                'q4\te\tf\n'
                'q5\t"a proper\nmulti-line cell"\tg\n'            # real CSV quoting still works
                'only two\tcells\n'                               # a genuinely bad row
                '"q7"\t"it""s"\th\n')


@pytest.mark.parametrize("chunk_rows", ["0", "2"])  # the whole-file and the chunked reader
def test_a_tsv_that_does_not_quote_keeps_every_row_and_its_quotes(tmp_path, chunk_rows):
    path = tmp_path / "unquoted.tsv"
    path.write_text(UNQUOTED_TSV)
    pairs, rejects = _convert(tmp_path, path, chunk_rows)
    assert pairs[["prompt_text", "chosen", "rejected"]].values.tolist() == [
        ['"Quoted" at the start', "yes", "no"],
        ["q2", "a", "b"],
        ['"an open quote that never closes', "c", "d"],
        ["q4", "e", "f"],
        ["q5", "a proper\nmulti-line cell", "g"],
        ["q7", 'it"s', "h"],
    ]
    # the one bad row is rejected on its own line (header 1, the multi-line cell on 6-7)
    assert rejects[["line"]].values.ravel().tolist() == [8]
    assert "expected 3 fields" in rejects["reason"].iloc[0]


def test_a_csv_with_an_unclosed_quote_loses_only_that_row(tmp_path):
    """A comma CSV: the line with the stray quote is read as text when its cells still
    count right; when they do not, it alone is rejected and the lines after it are read."""
    path = tmp_path / "stray.csv"
    rows = ['prompt,chosen,rejected', 'q1,a,b', '"stray,c,d', 'q3,e,f', '"stray and short,x', 'q5,g,h',
            '"a, quoted and\nmulti-line cell",i,j', '"multi\nline" then text,k,l']
    path.write_text("\n".join(rows) + "\n")
    pairs, rejects = read_pairs_with_rejects(path)
    assert pairs["prompt_text"].tolist() == ["q1", '"stray', "q3", "q5", "a, quoted and\nmulti-line cell",
                                             "multi\nline then text"]  # the csv module's reading of the last
    assert rejects["line"].tolist() == [5]
    assert "got 2; a quote opened on line 5 never closes" in rejects["reason"].iloc[0]


# ---------------------------------------------------------------- tool calls

USER = {"role": "user", "content": "What is the weather in Paris?"}


def _openai_call(city: str) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}


def _call_text(city: str) -> str:
    return '<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}\n</tool_call>' % city


def test_tool_call_turns_are_read_as_their_calls_in_every_convention(tmp_path):
    hf_style = {"role": "assistant", "tool_calls": [  # no content key, arguments as an object
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    legacy = {"role": "assistant", "content": "Checking.",  # OpenAI's older single call, after text
              "function_call": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    rows = [{"chosen": [USER, _openai_call("Paris")], "rejected": [USER, _openai_call("London")]},
            {"chosen": [USER, hf_style], "rejected": [USER, {"role": "assistant", "content": "I cannot."}]},
            {"chosen": [USER, legacy], "rejected": [USER, _openai_call("Oslo")]},
            {"chosen": [USER, {"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}],
             "rejected": [USER, _openai_call("Oslo")]}]
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, rejects = read_pairs_with_rejects(path)
    assert pairs[["chosen", "rejected"]].values.tolist() == [
        [_call_text("Paris"), _call_text("London")],
        [_call_text("Paris"), "I cannot."],
        ["Checking.\n" + _call_text("Rome"), _call_text("Oslo")],
    ]
    assert not pairs["flags"].str.contains("empty_|chosen_equals").any()
    assert rejects[["line", "field"]].values.tolist() == [[4, "chosen"]]
    assert "tool call without a function name" in rejects["reason"].iloc[0]


def test_tool_calls_read_from_parquet_structs(tmp_path):
    """Arrow gives every message every key (None where absent) and arrays for lists."""
    rows = [{"chosen": [USER, _openai_call("Paris")], "rejected": [USER, _openai_call("Lyon")]},
            {"chosen": [USER, _openai_call("Nice")], "rejected": [USER, {"role": "assistant", "content": "no"}]}]
    path = tmp_path / "tools.parquet"
    pd.DataFrame(rows).to_parquet(path)
    pairs, rejects = read_pairs_with_rejects(path)
    assert len(rejects) == 0
    assert pairs[["chosen", "rejected"]].values.tolist() == [
        [_call_text("Paris"), _call_text("Lyon")], [_call_text("Nice"), "no"]]


def test_a_malformed_tool_call_is_a_one_line_error_under_strict(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    bad = {"role": "assistant", "content": None, "tool_calls": "get_weather(Paris)"}
    path.write_text(json.dumps({"chosen": [USER, bad], "rejected": [USER, _openai_call("Oslo")]}) + "\n")
    assert main(["convert", "--input", str(path), "--out", str(tmp_path / "o.parquet"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "bad.jsonl" in err and "line 1" in err and "chosen" in err and "tool_calls of type str" in err


# ---------------------------------------------------------------- prompt flags

def test_empty_and_mismatched_prompts_are_flagged_not_dropped(tmp_path, capsys):
    conv = lambda q, a: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]  # noqa: E731
    rows = [{"prompt": "", "chosen": "a", "rejected": "b"},                                  # empty string prompt
            {"prompt": "   ", "chosen": "c", "rejected": "d"},
            {"prompt": "What is 2+2?", "chosen": conv("What is 2+2?", "4"), "rejected": conv("What is 2+2?", "5")},
            {"prompt": " What is 2+2? ", "chosen": conv("What is 2+2?", "four"), "rejected": conv("What is 2+2?", "5")},
            {"prompt": "Name a colour.", "chosen": conv("What is 2+2?", "4"), "rejected": conv("What is 2+2?", "3")},
            {"prompt": "q", "chosen": "e", "rejected": "f"}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, rejects = _convert(tmp_path, path)
    assert len(rejects) == 0 and len(pairs) == 6
    flags = [set(f.split(";")) - {"missing_score", ""} for f in pairs["flags"]]
    assert flags == [{"empty_prompt"}, {"empty_prompt"}, set(), set(), {"prompt_mismatch"}, set()]
    # the conversation's turn is the prompt the answers follow; the reader column is gone
    assert pairs["prompt_text"].iloc[4] == "What is 2+2?" and "_read_flags" not in pairs.columns
    assert {"empty_prompt", "prompt_mismatch"} <= FLAGS.keys()
    capsys.readouterr()
    assert main(["inspect", "--input", str(path)]) == 0
    out = capsys.readouterr().out
    assert "empty_prompt 2" in out and "prompt_mismatch 1" in out


# ---------------------------------------------------------------- a fourth probe's findings

def _pair_lines(tag: str, n: int) -> str:
    return "".join(json.dumps({"prompt": f"{tag}{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(n))


def test_split_words_inside_file_names_are_splits_never_merged(tmp_path, capsys):
    """``uf_train.jsonl`` / ``uf_test.jsonl`` (or ``dpo-eval``): the hub's patterns read the word
    between separators as the split, so the folder is refused without --split."""
    from pairlab.io.sources import split_of

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "uf_train.jsonl").write_text(_pair_lines("train", 3))
    (folder / "uf_test.jsonl.gz").write_bytes(__import__("gzip").compress(_pair_lines("test", 2).encode()))
    assert main(["convert", "--input", str(folder), "--out", str(tmp_path / "all.jsonl")]) == 2
    assert "2 splits (test, train)" in capsys.readouterr().err
    out = tmp_path / "t.jsonl"
    assert main(["convert", "--input", str(folder), "--split", "test", "--out", str(out)]) == 0
    assert [json.loads(x)["prompt_text"] for x in out.read_text().splitlines()] == ["test0", "test1"]
    names = {"dpo-eval.parquet": "eval", "hh_test_1.json": "test", "my data val.csv": "val",
             "train_prefs.jsonl": "train_prefs", "trainer_output.jsonl": None, "contest.jsonl": None,
             "ultrafeedback.jsonl": None, "interval.csv": None}
    assert {n: split_of(tmp_path / n) for n in names} == names


def test_user_assistant_transcripts_keep_their_turns(tmp_path):
    path = tmp_path / "user.jsonl"
    path.write_text(json.dumps({"prompt": "User: Hi\n\nAssistant: Hello\n\nUser: Bye?", "chosen": "Bye",
                                "rejected": "No"}) + "\n"
                    + json.dumps({"prompt": "\n\nHuman: Say 'User: x'\n\nAssistant: ok\n\nUser: x\n\nHuman: again",
                                  "chosen": "c", "rejected": "d"}) + "\n")
    pairs, _ = read_pairs_with_rejects(path)
    assert [[m["role"] for m in p] for p in pairs["prompt"]] == [["user", "assistant", "user"],
                                                              ["user", "assistant", "user"]]
    assert pairs["prompt"].iloc[0][-1]["content"] == "Bye?"
    # a Human: transcript whose answer quotes 'User:' keeps that answer whole
    assert pairs["prompt"].iloc[1][1]["content"] == "ok\n\nUser: x"


def test_parquet_decimals_dates_and_bytes_are_read_and_written_as_json(tmp_path):
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "prompt": ["q", "r"], "chosen": ["a", "c"], "rejected": ["b", "d"],
        "score_chosen": pa.array([decimal.Decimal("8.50"), None], pa.decimal128(4, 2)),
        "score_rejected": [3.0, 1.0],
        "created_at": [datetime.datetime(2024, 1, 1, 12, 30), None],
        "day": [datetime.date(2024, 1, 2)] * 2,
        "blob": [b"text", b"\xff\x00"],
        "took": pa.array([datetime.timedelta(seconds=3), None])}), path)
    pairs, rejects = _convert(tmp_path, path)
    assert len(rejects) == 0 and pairs["score_chosen"].tolist()[0] == 8.5
    out = tmp_path / "typed.jsonl"
    assert main(["convert", "--input", str(path), "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["score_chosen"], r["created_at"], r["day"], r["blob"], r["took"]) for r in rows] == [
        (8.5, "2024-01-01T12:30:00", "2024-01-02", "text", 3.0), (None, None, "2024-01-02", "/wA=", None)]


def test_dataset_metadata_files_in_a_folder_are_not_rows(tmp_path):
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "train.jsonl").write_text(_pair_lines("q", 2))
    for name in ("dataset_info.json", "dataset_infos.json"):  # a hub snapshot's metadata
        (folder / name).write_text(json.dumps({"default": {"description": "", "features": {}}}))
    pairs, rejects = _convert(tmp_path, folder)
    assert len(pairs) == 2 and len(rejects) == 0


def test_csv_index_column_and_trailing_delimiter_are_unnamed_columns(tmp_path):
    frame = pd.DataFrame({"prompt": ["q1", "q2"], "chosen": ["a", "c"], "rejected": ["b", "d"]})
    indexed = tmp_path / "idx.csv"
    frame.to_csv(indexed)  # pandas' default: a first column with an empty name
    trailing = tmp_path / "trail.csv"
    trailing.write_bytes(b"prompt,chosen,rejected,\r\nq1,a,b,\r\nq2,c,d,\r\n")  # a spreadsheet's export
    for path, extra in ((indexed, "Unnamed: 0"), (trailing, "Unnamed: 3")):
        pairs, rejects = read_pairs_with_rejects(path)
        assert pairs[["prompt_text", "chosen", "rejected"]].values.tolist() == [["q1", "a", "b"], ["q2", "c", "d"]]
        assert extra in pairs.columns and len(rejects) == 0


@pytest.mark.parametrize("chunk_rows", ["0", "1"])
def test_a_lone_carriage_return_inside_a_cell_is_text(tmp_path, chunk_rows):
    """A lone CR in a cell is a character (the csv module would end the row there and count
    two rows); a file whose every line ends with a lone CR (old Mac exports) still has rows."""
    path = tmp_path / "cr.tsv"
    path.write_bytes(b"prompt\tchosen\trejected\nq\ta\rb\tc\n\"q2\r\"\td\te\r\nq3\tf\tg\n")
    pairs, rejects = _convert(tmp_path, path, chunk_rows)
    assert pairs[["prompt_text", "chosen"]].values.tolist() == [["q", "a\rb"], ["q2\r", "d"], ["q3", "f"]]
    assert len(rejects) == 0
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b"prompt,chosen,rejected\rq,a,b\rq2,c,d\r")
    assert read_pairs_with_rejects(mac)[0]["prompt_text"].tolist() == ["q", "q2"]


def test_a_folder_of_subfolders_and_a_list_valued_field_say_what_to_do(tmp_path, capsys):
    root = tmp_path / "shp"
    for domain in ("askscience", "askhistory"):
        (root / domain).mkdir(parents=True)
        (root / domain / "train.json").write_text(_pair_lines(domain, 1))
    assert main(["convert", "--input", str(root), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "its subfolders are not read" in err and "2 subfolders: askhistory, askscience" in err
    path = tmp_path / "nectar.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "source": ["sharegpt", "evol"]}) + "\n")
    assert main(["convert", "--input", str(path), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "map one element of it, e.g. --map source=source.0" in capsys.readouterr().err
    assert main(["convert", "--input", str(path), "--map", "source=source.0", "--out", str(tmp_path / "o.jsonl")]) == 0


@pytest.mark.parametrize("chunk_rows", ["0", "1"])
def test_a_jsonl_whose_first_line_is_a_lone_brace_is_still_json_lines(tmp_path, chunk_rows):
    """A lone '{' first looks like a pretty-printed JSON document; one that does not parse as
    one is JSON lines after all: that line is rejected and the others are read (found by the
    property test)."""
    path = tmp_path / "brace.jsonl"
    path.write_bytes(b"{\n" + _pair_lines("q", 2).encode() + b"\xff\n")
    pairs, rejects = _convert(tmp_path, path, chunk_rows)
    assert pairs["prompt_text"].tolist() == ["q0", "q1"] and rejects["line"].tolist() == [1, 4]


@pytest.mark.parametrize("chunk_rows", ["0", "7"])
def test_stray_quotes_across_chunk_boundaries(tmp_path, chunk_rows):
    """The chunked reader's first chunk holds the first 50 records: the stray quotes, the
    inch mark that closes one, and the bad row sit just past it, in later chunks."""
    rows = ["prompt\tchosen\trejected"] + [f"q{i}\ta{i}\tb{i}" for i in range(50)]
    rows += ['"stray one\tx\ty', "q51\ta51\tb51", '"Hello\tc\td', "q53\ta53\tb53",
             "how tall is 6' 2\"\tyes\tno", "only\ttwo"] + [f"q{i}\ta{i}\tb{i}" for i in range(56, 70)]
    path = tmp_path / "long.tsv"
    path.write_text("\n".join(rows) + "\n")
    pairs, rejects = _convert(tmp_path, path, chunk_rows)
    assert len(pairs) == 69 and rejects["line"].tolist() == [57]
    prompts = pairs["prompt_text"].tolist()
    assert prompts[50:55] == ['"stray one', "q51", '"Hello', "q53", "how tall is 6' 2\""]
    assert rejects["reason"].str.contains("expected 3 fields").all()


def test_a_sloppy_multi_line_cell_stays_one_cell_and_a_csv_is_read_as_csv(tmp_path):
    """A closing quote followed by text (not CSV, but no row swallowed): the csv module's
    reading stands, in any column. A CSV's well-quoted multi-line cell whose lines hold commas
    is one cell (only a TSV reads a well-quoted span that holds whole rows as rows)."""
    path = tmp_path / "sloppy.csv"
    path.write_text('prompt,chosen,rejected\nq,r,"start of cell\nmore" tail\n"a, b\nc, d, e\nf",g,h\nq2,d,e\n')
    pairs, rejects = read_pairs_with_rejects(path)
    assert pairs[["prompt_text", "rejected"]].values.tolist() == [["q", "start of cell\nmore tail"],
                                                                  ["a, b\nc, d, e\nf", "h"], ["q2", "e"]]
    assert len(rejects) == 0


def test_folders_mixing_a_held_out_split_with_unnamed_files_are_refused(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "uf.jsonl").write_text(_pair_lines("pool", 2))
    (folder / "uf_Test.jsonl").write_text(_pair_lines("test", 2))
    assert main(["convert", "--input", str(folder), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "split 'test' beside files whose names give no split (uf.jsonl)" in capsys.readouterr().err
    out = tmp_path / "t.jsonl"
    assert main(["convert", "--input", str(folder), "--split", "TEST", "--out", str(out)]) == 0  # any case
    assert len(out.read_text().splitlines()) == 2
    train = tmp_path / "train-and-more"
    train.mkdir()
    (train / "train.jsonl").write_text(_pair_lines("a", 2))
    (train / "extra.jsonl").write_text(_pair_lines("b", 2))  # training data beside training data
    assert main(["convert", "--input", str(train), "--out", str(tmp_path / "o2.jsonl")]) == 0


def test_the_conversion_cache_is_keyed_on_this_reader():
    """Cached conversions made by an older reader are redone (what today's reader reads
    differs: stray quotes, lone CRs, tool calls, flags, the sides layouts)."""
    from pairlab.io.convert import CONVERSION_VERSION

    assert CONVERSION_VERSION >= 2


@pytest.mark.parametrize("sep", [",", "\t"])
def test_pandas_written_files_round_trip_whatever_their_cells_hold(tmp_path, sep):
    """What pandas writes (quoting cells with quotes, delimiters, CR, LF) reads back exactly:
    the stray-quote rules never split a well-quoted cell, tab-indented code included."""
    import random

    rng = random.Random(7)
    pieces = ['"', "'", "\t", ",", "\n", "\r", "\r\n", " ", "x", "6' 2\"", "\tif x {", "\t\treturn 1", "q\tw"]
    # (a cell ending in a CR that pandas leaves unquoted, beside its newline, is a CRLF line end to
    # any reader: pandas' own ambiguity, left out)
    cells = lambda: "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))).rstrip("\r") or "t"  # noqa: E731
    frame = pd.DataFrame({"prompt": [f"q{i}" for i in range(120)], "chosen": [cells() for _ in range(120)],
                          "rejected": [cells() for _ in range(120)]})
    code = "```go\nfunc f(x bool) int {\n\tif x {\n\t\treturn 1\n\t}\n\treturn 0\n}\n```"
    frame.loc[::7, "rejected"] = code
    path = tmp_path / ("p.tsv" if sep == "\t" else "p.csv")
    frame.to_csv(path, sep=sep, index=False)
    pairs, rejects = read_pairs_with_rejects(path)
    assert len(rejects) == 0
    assert pairs[["prompt_text", "chosen", "rejected"]].values.tolist() == frame.values.tolist()
