"""Defects a tester's hunt found in reading and writing pairs (the tester's numbers in brackets):
extra columns Parquet cannot hold as they are, reject fields, --map of list elements, inspect's
score ranges, the contamination file's encodings and curate's summary with --eval-from."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pairlab.cli import main
from pairlab.io import read_pairs, read_pairs_with_rejects
from pairlab.schema import PairDataError

BIG = 1180591620717411303424  # 2**70: beyond any 64-bit integer


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test gets its own $PAIRLAB_CACHE: curate's cached scores would skip reading the
    contamination file."""
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pairs(extra: dict[str, list]) -> list[dict]:
    n = len(next(iter(extra.values())))
    return [{"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}",
             **{k: v[i] for k, v in extra.items()}} for i in range(n)]


def _curated_rows(out) -> int:
    """Pairs written by curate (train + eval), after checking the folder is complete."""
    assert (out / "manifest.json").exists()
    return len(pd.read_parquet(out / "pairs.parquet")) + len(pd.read_parquet(out / "eval.parquet"))


# ---------------------------------------------------------------- [2] [3] extra columns Parquet cannot hold

@pytest.mark.parametrize("column, values", [
    ("meta", [{}, {}]),                       # an empty object: a struct of no field
    ("meta", [{"tags": {}}, {"tags": {}}]),   # nested
    ("tools", [[{}], [{}]]),                  # in a list
    ("id", [BIG, 5]),                         # an integer beyond 64 bits
    ("meta", [{"hash": BIG}, {"hash": 1}]),   # nested
])
@pytest.mark.parametrize("chunk_rows", ["0", "1"])  # the whole-file and the part-by-part writer
def test_parquet_writes_extra_columns_arrow_cannot_store_as_json_text(tmp_path, capsys, column, values,
                                                                       chunk_rows):
    src = _jsonl(tmp_path / "in.jsonl", _pairs({column: values}))
    out = tmp_path / "out.parquet"
    assert main(["convert", "--input", str(src), "--out", str(out), "--chunk-rows", chunk_rows]) == 0
    back = read_pairs(out)
    assert back["chosen"].tolist() == ["good answer 0", "good answer 1"]
    assert [json.loads(v) for v in back[column]] == values


@pytest.mark.parametrize("column, values", [("meta", [{}, {}]), ("tools", [[{}], [{}]]),
                                            ("meta", [{"hash": BIG}, {"hash": 1}])])
def test_curate_writes_a_pool_with_such_extra_columns(tmp_path, capsys, column, values):
    src = _jsonl(tmp_path / "in.jsonl", _pairs({column: values}))
    out = tmp_path / "cur"
    assert main(["curate", "--input", str(src), "--out", str(out), "--tokenizer", "none", "--no-report"]) == 0
    assert _curated_rows(out) == 2
    kept = pd.concat([pd.read_parquet(out / "pairs.parquet"), pd.read_parquet(out / "eval.parquet")])
    assert sorted(json.dumps(json.loads(v)) for v in kept[column]) == sorted(map(json.dumps, values))


# ---------------------------------------------------------------- [8] a null side beside a message list

def _conv(prompt, answer):
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


@pytest.mark.parametrize("null_side, other", [("chosen", "rejected"), ("rejected", "chosen")])
@pytest.mark.parametrize("other_kind", ["messages", "text"])
def test_null_side_is_reported_as_null_on_its_own_field(tmp_path, null_side, other, other_kind):
    row = {"prompt": "p", null_side: None, other: _conv("p", "b") if other_kind == "messages" else "b"}
    good = {"prompt": "p2", "chosen": _conv("p2", "a"), "rejected": _conv("p2", "b")} if other_kind == "messages" \
        else {"prompt": "p2", "chosen": "a", "rejected": "b"}
    src = _jsonl(tmp_path / "in.jsonl", [row, good])
    pairs, rejects = read_pairs_with_rejects(str(src))
    assert len(pairs) == 1
    assert rejects[["line", "field", "reason"]].to_dict("records") == \
        [{"line": 1, "field": null_side, "reason": f"{null_side} is null"}]


# ---------------------------------------------------------------- [9] two-answer layouts name their own columns

@pytest.mark.parametrize("label, null_column", [(0, "response_1"), (1, "response_1"), (1, "response_0")])
def test_sides_layout_reject_names_the_input_column(tmp_path, capsys, label, null_column):
    """Whether the null answer would have been chosen or rejected, the reject names its column."""
    row = {"prompt": "q0", "response_0": "a", "response_1": "b", "better_response_id": label}
    row[null_column] = None
    src = _jsonl(tmp_path / "pku.jsonl", [row, {"prompt": "q1", "response_0": "a", "response_1": "b",
                                                "better_response_id": 1}])
    pairs, rejects = read_pairs_with_rejects(str(src))
    assert pairs.attrs["read_stats"]["layout"] == "pku-saferlhf" and len(pairs) == 1
    assert rejects[["line", "field", "reason"]].to_dict("records") == \
        [{"line": 1, "field": null_column, "reason": f"{null_column} is null"}]
    assert main(["inspect", "--input", str(src), "--strict"]) == 2
    assert f"line 1, field '{null_column}': {null_column} is null" in capsys.readouterr().err


def test_sides_layout_reject_names_the_prompt_and_score_columns(tmp_path):
    src = _jsonl(tmp_path / "shp.jsonl", [
        {"history": None, "human_ref_A": "a", "human_ref_B": "b", "labels": 1, "score_A": 3, "score_B": 2},
        {"history": "q", "human_ref_A": "a", "human_ref_B": "b", "labels": 0, "score_A": "many", "score_B": 2},
        {"history": "q", "human_ref_A": "a", "human_ref_B": "b", "labels": 0, "score_A": 3, "score_B": 2}])
    pairs, rejects = read_pairs_with_rejects(str(src))
    assert len(pairs) == 1
    assert rejects["field"].tolist() == ["history", "score_A"]
    assert rejects["reason"].iloc[0] == "history is null"


# ---------------------------------------------------------------- [10] --map of list elements

def test_map_of_every_list_element_drops_the_list(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", [
        {"q": "q1", "answers": ["good", "bad"], "meta": {"s": [5, 1], "src": "x"}},
        {"q": "q2", "answers": ["good2", "bad2"], "meta": {"s": [4, 2], "src": "y"}}])
    out = tmp_path / "out.jsonl"
    assert main(["convert", "--input", str(src), "--map", "prompt=q", "--map", "chosen=answers.0",
                 "--map", "rejected=answers.-1", "--map", "score_chosen=meta.s.0",
                 "--map", "score_rejected=meta.s.1", "--map", "source=meta.src", "--out", str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert (row["chosen"], row["rejected"], row["score_chosen"], row["score_rejected"], row["source"]) == \
        ("good", "bad", 5.0, 1.0, "x")
    assert "answers" not in row and "meta" not in row  # not carried twice


def test_map_of_some_list_elements_keeps_the_list_whole(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", [{"q": "q1", "answers": ["good", "bad", "meh"]}])
    out = tmp_path / "out.jsonl"
    assert main(["convert", "--input", str(src), "--map", "prompt=q", "--map", "chosen=answers.0",
                 "--map", "rejected=answers.1", "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert (row["chosen"], row["rejected"], row["answers"]) == ("good", "bad", ["good", "bad", "meh"])


# ---------------------------------------------------------------- [11] inspect's score ranges

@pytest.mark.parametrize("value", ["1e30", "Infinity", "-2e6"])
def test_inspect_score_range_leaves_out_every_score_flagged_nonfinite(tmp_path, capsys, value):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt":"q1","chosen":"a","rejected":"b","score_chosen":%s,"score_rejected":1}\n'
                   '{"prompt":"q2","chosen":"a","rejected":"b","score_chosen":8,"score_rejected":2}\n' % value)
    assert main(["inspect", "--input", str(src), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["flags"] == {"nonfinite_score": 1}
    assert summary["scores"]["score_chosen"] == {"min": 8.0, "max": 8.0, "mean": 8.0, "missing": 0, "nonfinite": 1}
    assert main(["inspect", "--input", str(src)]) == 0
    assert "score_chosen   8 .. 8  (mean 8), 1 infinite or beyond ±1e+06" in capsys.readouterr().out


# ---------------------------------------------------------------- [12] the contamination file's encodings

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom"])
def test_curate_reads_a_contamination_txt_in_utf8_or_utf16_with_bom(tmp_path, capsys, encoding):
    pool, filters = tmp_path / "pool.jsonl", tmp_path / "f.yaml"
    _jsonl(pool, [{"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Rome."},
                  {"prompt": "Name a prime above ten", "chosen": "Eleven.", "rejected": "Nine."}])
    filters.write_text("- drop_contaminated\n")
    text = "Unrelated prompt\nWhat is the capital of France?\n"
    txt = tmp_path / "contam.txt"
    if encoding.endswith("-bom"):
        import codecs
        bom, codec = ((codecs.BOM_UTF16_LE, "utf-16-le") if "le" in encoding else (codecs.BOM_UTF16_BE, "utf-16-be"))
        txt.write_bytes(bom + text.encode(codec))
    else:
        txt.write_bytes(text.encode(encoding))
    out = tmp_path / "cur"
    assert main(["curate", "--input", str(pool), "--filters", str(filters), "--tokenizer", "none", "--no-report",
                 "--set", "eval_fraction=0", "--contamination-file", str(txt), "--out", str(out)]) == 0
    dropped = pd.read_parquet(out / "dropped.parquet")
    assert dropped["prompt_text"].tolist() == ["What is the capital of France?"]


def test_curate_contamination_txt_not_utf8_names_its_line(tmp_path, capsys):
    pool, txt = tmp_path / "pool.jsonl", tmp_path / "contam.txt"
    _jsonl(pool, [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    txt.write_bytes(b"fine\n\xff not text\n")
    assert main(["curate", "--input", str(pool), "--tokenizer", "none", "--no-report",
                 "--contamination-file", str(txt), "--out", str(tmp_path / "cur")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{txt}, line 2, field 'contamination_file': not valid UTF-8" in err


# ---------------------------------------------------------------- [13] curate's summary with --eval-from

def test_curate_summary_says_eval_came_from_eval_from(tmp_path, capsys):
    pool, ev = tmp_path / "pool.jsonl", tmp_path / "ev.jsonl"
    _jsonl(pool, _pairs({"n": [0, 1, 2]}))
    _jsonl(ev, [{"prompt": f"held out {i}", "chosen": "a", "rejected": "b"} for i in range(2)])
    out = tmp_path / "cur"
    assert main(["curate", "--input", str(pool), "--eval-from", str(ev), "--tokenizer", "none", "--no-report",
                 "--out", str(out)]) == 0
    assert "-> train 3, eval 2 (from --eval-from), dropped 0" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["eval"] == 0 and manifest["inputs"]["eval_from"]["rows"] == 2  # pool counts
    assert len(pd.read_parquet(out / "eval.parquet")) == 2


# ---------------------------------------------------------------- the shared text-file reader

def test_read_text_file_decodes_compressed_utf16_and_names_what_it_refuses(tmp_path):
    """One reader for every text file an option names (--prompts, --contamination-file):
    compressed UTF-16 with its byte-order mark reads; a NUL byte, bytes that are not UTF-8, a
    folder and a missing file are one-line errors naming the file, the line and the option."""
    import codecs
    import gzip

    from pairlab.io.sources import read_text_file

    gz = tmp_path / "p.txt.gz"
    gz.write_bytes(gzip.compress(codecs.BOM_UTF16_LE + "Café\nsecond\n".encode("utf-16-le")))
    assert read_text_file(gz, "prompts_file") == "Café\nsecond\n"
    from pairlab.curate.scores import read_prompts  # a compressed contamination .txt is text too

    assert read_prompts(gz).tolist() == ["Café", "second"]
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"fine\nalso fine\nbad\x00line\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\n")
    cases = [(nul, "line 3", "NUL"), (bad, "line 2", "not valid UTF-8"), (tmp_path, "", "directory"),
             (tmp_path / "absent.txt", "", "not found")]
    for path, line, what in cases:
        with pytest.raises(PairDataError) as err:
            read_text_file(path, "contamination_file")
        message = str(err.value)
        assert str(path) in message and line in message and what in message and "\n" not in message
        assert "contamination_file" in message
