"""Inputs an independent probe of ~200 real-file variants found mishandled, each fixed here.

Every case goes through the CLI (what a user runs): a clear one-line error with exit 2 and
no traceback, or the rows read, with every row read or rejected.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from pairlab.cli import main
from pairlab.io import read_pairs, read_pairs_with_rejects


def _rows(tag: str, n: int) -> list[dict]:
    return [{"prompt": f"{tag} question {i}?", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]


def _jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_lone_surrogate_escapes_are_rejected_rows_not_a_traceback(tmp_path):
    """``"\\ud800"`` parses as JSON but is not text (Arrow and UTF-8 refuse it); a valid pair
    of escapes (an emoji) and an escaped backslash are read as they are."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"prompt":"q","chosen":"x","rejected":"y"}\n'
                    '{"prompt":"a\\ud800","chosen":"b","rejected":"c"}\n'
                    '{"prompt":"ok \\ud83d\\ude00","chosen":"b","rejected":"c","note":"\\\\ud800 literal"}\n'
                    '{"prompt":"p","chosen":[{"role":"user","content":"u"},'
                    '{"role":"assistant","content":"x\\udfff"}],"rejected":"c"}\n')
    pairs, rejects = read_pairs_with_rejects(path)
    assert sorted(pairs["prompt_text"]) == ["ok \U0001F600", "q"]
    assert rejects[["line", "field"]].values.tolist() == [[2, "prompt"], [4, "chosen"]]
    assert "surrogate" in rejects["reason"].iloc[0] and "chosen[1].content" in rejects["reason"].iloc[1]
    array = tmp_path / "s.json"
    array.write_text('[{"prompt":"q","chosen":"x","rejected":"y","note":"\\udfff"},'
                     '{"prompt":"q2","chosen":"x","rejected":"y"}]')
    pairs, rejects = read_pairs_with_rejects(array)
    assert pairs["prompt_text"].tolist() == ["q2"] and rejects[["row", "field"]].values.tolist() == [[0, "note"]]
    # the CLI writes the good pairs and the rejects (their raw text is valid UTF-8)
    proc = subprocess.run([sys.executable, "-m", "pairlab", "convert", "--input", str(path), "--out",
                           str(tmp_path / "o.parquet"), "--rejects", str(tmp_path / "r.parquet")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(pd.read_parquet(tmp_path / "r.parquet")) == 2


def _zst_stream(records: list[dict], cut_after: int | None = None) -> bytes:
    import zstandard

    buffer = io.BytesIO()
    writer = zstandard.ZstdCompressor().stream_writer(buffer, closefd=False)
    cut = None
    for i, record in enumerate(records):
        writer.write((json.dumps(record) + "\n").encode())
        writer.flush(zstandard.FLUSH_BLOCK)
        if i == cut_after:
            cut = buffer.tell()
    writer.flush(zstandard.FLUSH_FRAME)
    data = buffer.getvalue()
    return data if cut is None else data[:cut]


@pytest.mark.parametrize("trim", [0, 5])
def test_a_cut_short_zst_is_an_error_not_a_shorter_file(tmp_path, capsys, trim):
    """zstandard's stream reader ends quietly inside a frame: 60 of 100 rows once read
    "successfully". Cut at a block boundary (trim 0) or inside a block (trim 5)."""
    records = _rows("z", 100)
    whole = tmp_path / "whole.jsonl.zst"
    whole.write_bytes(_zst_stream(records))
    cut = tmp_path / "cut.jsonl.zst"
    at_block = _zst_stream(records, cut_after=59)
    cut.write_bytes(_zst_stream(records)[:len(at_block) + trim])
    assert main(["convert", "--input", str(whole), "--out", str(tmp_path / "w.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "w.parquet")) == 100
    capsys.readouterr()
    assert main(["convert", "--input", str(cut), "--out", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err
    assert "cut short" in err and str(cut) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.parquet").exists()
    for command in (["inspect", "--input", str(cut)],
                    ["curate", "--input", str(cut), "--tokenizer", "none", "--no-report",
                     "--out", str(tmp_path / "cur")]):
        assert main(command) == 2 and "cut short" in capsys.readouterr().err


def test_multi_frame_and_empty_zst(tmp_path, capsys):
    import zstandard

    c = zstandard.ZstdCompressor()
    frames = b"".join(c.compress("".join(json.dumps(r) + "\n" for r in _rows(f"f{j}", 10)).encode())
                      for j in range(3))
    (tmp_path / "m.jsonl.zst").write_bytes(frames)
    pairs, rejects = read_pairs_with_rejects(tmp_path / "m.jsonl.zst")
    assert len(pairs) == 30 and len(rejects) == 0
    (tmp_path / "mc.jsonl.zst").write_bytes(frames[:-3])
    assert main(["convert", "--input", str(tmp_path / "mc.jsonl.zst"), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "cut short" in capsys.readouterr().err
    (tmp_path / "e.jsonl.zst").write_bytes(b"")
    assert main(["convert", "--input", str(tmp_path / "e.jsonl.zst"), "--out", str(tmp_path / "y.parquet")]) == 2
    assert "empty file" in capsys.readouterr().err


def test_rejects_may_not_be_the_output_nor_an_unknown_type(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt":"a","chosen":"b","rejected":"c"}\n{"prompt":"d","chosen":"e"\n')
    out = tmp_path / "o.parquet"
    for rejects in (str(out), str(tmp_path / "." / "o.parquet")):
        assert main(["convert", "--input", str(path), "--out", str(out), "--rejects", rejects]) == 2
        assert "same file as --out" in capsys.readouterr().err and not out.exists()
    assert main(["convert", "--input", str(path), "--out", str(out), "--rejects", str(tmp_path / "r.txt")]) == 2
    assert "unsupported output type '.txt'" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def _hub_snapshot(root) -> None:
    data = root / "data"
    data.mkdir(parents=True)
    pd.DataFrame(_rows("train", 3)).to_parquet(data / "train_prefs-00000-of-00001.parquet")
    pd.DataFrame(_rows("test", 2)).to_parquet(data / "test_prefs-00000-of-00001.parquet")
    pd.DataFrame({"messages": [[{"role": "user", "content": "x"}]]}).to_parquet(
        data / "train_sft-00000-of-00001.parquet")
    (root / "README.md").write_text("# dataset card")


def test_a_hub_snapshot_folder_is_read_one_split_at_a_time(tmp_path, capsys):
    """A dataset downloaded as the hub publishes it: test rows must never leak into the
    training pairs; ``--split`` picks the files, and the repository root finds ``data/``."""
    root = tmp_path / "snap"
    _hub_snapshot(root)
    for spec, split, tag, n in ((root / "data", "train_prefs", "train", 3), (root, "test_prefs", "test", 2)):
        out = tmp_path / f"{split}.parquet"
        assert main(["convert", "--input", str(spec), "--split", split, "--out", str(out)]) == 0
        got = pd.read_parquet(out)
        assert len(got) == n and got["prompt_text"].str.startswith(tag).all()
    capsys.readouterr()
    assert main(["convert", "--input", str(root), "--out", str(tmp_path / "all.parquet")]) == 2
    err = capsys.readouterr().err
    assert "3 splits (test_prefs, train_prefs, train_sft)" in err and "--split train_prefs" in err
    assert main(["convert", "--input", str(root), "--split", "nope", "--out", str(tmp_path / "n.parquet")]) == 2
    assert "no file of split 'nope'" in capsys.readouterr().err
    # plain shards of one split (or files named by no split) are still read together
    plain = tmp_path / "plain"
    plain.mkdir()
    _jsonl(plain / "part-0.jsonl", _rows("a", 2))
    _jsonl(plain / "part-1.jsonl", _rows("b", 2))
    pairs, _ = read_pairs_with_rejects(plain)
    assert len(pairs) == 4
    # train.jsonl + test.jsonl are splits by name
    _jsonl(plain / "train.jsonl", _rows("t", 1))
    _jsonl(plain / "test.jsonl", _rows("u", 1))
    assert main(["convert", "--input", str(plain), "--out", str(tmp_path / "p.parquet")]) == 2
    assert "2 splits (test, train)" in capsys.readouterr().err


def test_ndjson_and_text_content_parts_are_read(tmp_path):
    nd = tmp_path / "x.ndjson"
    _jsonl(nd, _rows("n", 4))
    assert len(read_pairs_with_rejects(nd)[0]) == 4
    parts = tmp_path / "parts.jsonl"
    _jsonl(parts, [
        {"prompt": [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}],
         "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}],
         "rejected": [{"role": "assistant", "content": "Go away"}]},
        {"prompt": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
         "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}])
    pairs, rejects = read_pairs_with_rejects(parts)
    assert pairs[["prompt_text", "chosen", "rejected"]].values.tolist() == [["Hi\nthere", "Hello", "Go away"]]
    assert rejects["line"].tolist() == [2] and "type 'image_url'" in rejects["reason"].iloc[0]


def test_curate_counts_eval_from_rows_as_its_own(tmp_path, capsys):
    pool, ev = tmp_path / "pool.jsonl", tmp_path / "ev.jsonl"
    _jsonl(pool, _rows("p", 4))
    ev.write_text(json.dumps(_rows("e", 1)[0]) + "\n[1, 2]\n42\n" + json.dumps(_rows("f", 1)[0]) + "\n")
    out = tmp_path / "cur"
    assert main(["curate", "--input", str(pool), "--eval-from", str(ev), "--tokenizer", "none",
                 "--no-report", "--out", str(out)]) == 0
    assert "(0 of the pool, 2 of --eval-from)" in capsys.readouterr().out
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert inputs["pool"]["unreadable"] == 0 and inputs["pool"]["rows_in_input"] == 4
    assert {k: inputs["eval_from"][k] for k in ("rows", "rows_in_input", "rejected", "unreadable")} == \
        {"rows": 2, "rows_in_input": 4, "rejected": 2, "unreadable": 2}
    dropped = pd.read_parquet(out / "dropped.parquet")
    assert (dropped["dropped_by"] == "unreadable").sum() == 2


def test_curate_refuses_a_contamination_file_it_cannot_fully_read(tmp_path, capsys):
    """A contamination row that does not parse is a prompt the check would silently miss."""
    pool, contam, filters = tmp_path / "pool.jsonl", tmp_path / "contam.jsonl", tmp_path / "f.yaml"
    _jsonl(pool, [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}, *_rows("p", 2)])
    contam.write_text('{"prompt":"Unrelated","chosen":"a","rejected":"b"}\n'
                      '{"prompt":"What is 2+2?","chosen":5,"rejected":"x"}\n')
    filters.write_text("- drop_contaminated\n")
    args = ["curate", "--input", str(pool), "--filters", str(filters), "--tokenizer", "none", "--no-report"]
    assert main([*args, "--contamination-file", str(contam), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 rows cannot be read" in err and "contamination_file" in err and "line 2" in err
    assert not (tmp_path / "a" / "manifest.json").exists()
    txt = tmp_path / "contam.txt"
    txt.write_text("Unrelated\nWhat is 2+2?\n")
    assert main([*args, "--contamination-file", str(txt), "--out", str(tmp_path / "b")]) == 0
    dropped = pd.read_parquet(tmp_path / "b" / "dropped.parquet")
    assert dropped["prompt_text"].tolist() == ["What is 2+2?"]


def test_a_pairs_parquet_repeating_a_pair_id_reads_and_curates(tmp_path, capsys):
    """A pairs table with a row appended twice (tables joined by hand): the repeat's id is
    made unique as it is read, so curate takes it (it once refused the file)."""
    src = tmp_path / "x.jsonl"
    _jsonl(src, _rows("d", 3))
    assert main(["convert", "--input", str(src), "--out", str(tmp_path / "p.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "p.parquet")
    dup = tmp_path / "dup.parquet"
    pd.concat([table, table.head(1)], ignore_index=True).to_parquet(dup)
    back = read_pairs(dup)
    assert back["pair_id"].tolist() == table["pair_id"].tolist() + [table["pair_id"].iloc[0] + "-1"]
    assert back.attrs["read_stats"]["repeated_pair_ids"] == 1
    capsys.readouterr()
    assert main(["curate", "--input", str(dup), "--tokenizer", "none", "--no-report",
                 "--out", str(tmp_path / "c")]) == 0


def test_an_inputs_own_pair_id_is_kept_as_input_pair_id(tmp_path):
    src = tmp_path / "ids.jsonl"
    _jsonl(src, [{**r, "pair_id": f"mine-{i}"} for i, r in enumerate(_rows("i", 3))])
    pairs, _ = read_pairs_with_rejects(src)
    assert pairs["input_pair_id"].tolist() == ["mine-0", "mine-1", "mine-2"]
    assert not pairs["pair_id"].str.startswith("mine").any()
    # pairlab's own JSONL read back: its ids are pairlab's, no extra column
    assert main(["convert", "--input", str(src), "--out", str(tmp_path / "o.jsonl")]) == 0
    back, _ = read_pairs_with_rejects(tmp_path / "o.jsonl")
    assert back["pair_id"].tolist() == pairs["pair_id"].tolist()
    assert back["input_pair_id"].tolist() == ["mine-0", "mine-1", "mine-2"]


def test_message_lists_in_csv_cells_are_read_as_messages(tmp_path):
    """A conversational dataset saved with pandas ``to_csv`` (Python repr) or with JSON
    cells keeps its turns instead of becoming the repr's text."""
    records = [{"prompt": "Say hi", "chosen": [{"role": "user", "content": "Say hi"},
                                               {"role": "assistant", "content": "Hi, there!"}],
                "rejected": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "No."}]}]
    frame = pd.DataFrame(records)
    frame.to_csv(tmp_path / "repr.csv", index=False)
    frame.assign(chosen=[json.dumps(records[0]["chosen"])], rejected=[json.dumps(records[0]["rejected"])]) \
        .to_csv(tmp_path / "json.csv", index=False)
    for name in ("repr.csv", "json.csv"):
        pairs, rejects = read_pairs_with_rejects(tmp_path / name)
        assert len(rejects) == 0, name
        assert pairs[["prompt_text", "chosen", "rejected"]].values.tolist() == [["Say hi", "Hi, there!", "No."]], name
    # text that only looks like a list stays text
    pd.DataFrame({"prompt": ["q"], "chosen": ["[{not a list}]"], "rejected": ["[1, 2]"]}).to_csv(
        tmp_path / "text.csv", index=False)
    pairs, _ = read_pairs_with_rejects(tmp_path / "text.csv")
    assert pairs[["chosen", "rejected"]].values.tolist() == [["[{not a list}]", "[1, 2]"]]


def test_a_semicolon_separated_csv_is_read(tmp_path):
    """A spreadsheet's CSV export where the decimal separator is a comma uses ';'."""
    (tmp_path / "semi.csv").write_text('prompt;chosen;rejected;score_chosen;score_rejected\n'
                                       'q1;"a; with semicolon";b;4,5;2\nq2;c;d;3;1\n')
    pairs, rejects = read_pairs_with_rejects(tmp_path / "semi.csv")
    assert pairs[["prompt_text", "chosen", "rejected", "score_chosen"]].values.tolist() == [["q2", "c", "d", 3.0]]
    # a decimal comma in a score is not read as a number: rejected with its line and field
    assert rejects[["line", "field"]].values.tolist() == [[2, "score_chosen"]]
    (tmp_path / "semi2.csv").write_text('prompt;chosen;rejected\nq1;"a; with semicolon";b\n')
    pairs, rejects = read_pairs_with_rejects(tmp_path / "semi2.csv")
    assert len(rejects) == 0 and pairs["chosen"].tolist() == ["a; with semicolon"]
    # a comma CSV whose header has no ';' stays a comma CSV, quoted ';' in cells and all
    (tmp_path / "comma.csv").write_text('prompt,chosen,rejected\n"x;y",c,d\n')
    pairs, _ = read_pairs_with_rejects(tmp_path / "comma.csv")
    assert pairs["prompt_text"].tolist() == ["x;y"]


@pytest.mark.parametrize("name, split", [
    ("train_prefs-00000-of-00001.parquet", "train_prefs"), ("train-00000-of-00003-abc123.parquet", "train"),
    ("train.jsonl", "train"), ("test.jsonl.gz", "test"), ("train-1.jsonl", "train"), ("train_0001.csv", "train"),
    ("validation.parquet", "validation"), ("test_gen-00000-of-00001.parquet", "test_gen"),
    ("part-0.jsonl", None), ("data.jsonl", None), ("trainer.jsonl", None)])
def test_split_of_a_file_name(name, split):
    from pathlib import Path

    from pairlab.io.sources import split_of

    assert split_of(Path(name)) == split


def test_shards_of_one_split_are_read_together(tmp_path):
    for i in range(3):
        pd.DataFrame(_rows(f"s{i}", 2)).to_parquet(tmp_path / f"train-{i:05d}-of-00003-ab12.parquet")
    pairs, _ = read_pairs_with_rejects(tmp_path)
    assert len(pairs) == 6


# ---------------------------------------------------------------- the third probe (session 12)

def test_non_finite_scores_never_reach_json_output(tmp_path, capsys):
    """JSON has no NaN or Infinity: a JSONL written by convert and `inspect --json` stay valid
    JSON (an infinite score is written as null; its row keeps the `nonfinite_score` flag), and
    inspect's score ranges are those of the finite scores, with no numpy warning on stderr."""
    src = tmp_path / "nan.jsonl"
    src.write_text('{"prompt":"q","chosen":"c","rejected":"r","score_chosen":NaN,"score_rejected":Infinity}\n'
                   '{"prompt":"q2","chosen":"c2","rejected":"r2","score_chosen":5,"score_rejected":-Infinity}\n'
                   '{"prompt":"q3","chosen":"c3","rejected":"r3","score_chosen":"1e400","score_rejected":2}\n')
    out = tmp_path / "o.jsonl"
    assert main(["convert", "--input", str(src), "--out", str(out)]) == 0
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSONL")) for line in
            out.read_text().splitlines()]
    assert [r["score_rejected"] for r in rows] == [None, None, 2.0]
    assert [r["score_chosen"] for r in rows] == [None, 5.0, None]
    assert all("nonfinite_score" in r["flags"] for r in rows)
    capsys.readouterr()
    assert main(["inspect", "--input", str(src), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out, parse_constant=lambda c: pytest.fail(f"{c} in inspect --json"))
    assert summary["scores"]["score_chosen"] == {"min": 5.0, "max": 5.0, "mean": 5.0, "missing": 1, "nonfinite": 1}
    assert summary["scores"]["score_rejected"]["nonfinite"] == 2
    assert "RuntimeWarning" not in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("out_name", ["o.parquet", "o.jsonl"])  # the chunked and the whole-file path
def test_rejects_file_is_written_even_when_no_row_could_be_read(tmp_path, capsys, out_name):
    """Every row rejected is an error (exit 2, nothing written to --out), but --rejects still
    holds every row with its reason: the first alone says too little."""
    src = tmp_path / "bad.jsonl"
    src.write_text('{"prompt": "q"}\nnot json\n{"prompt":"q2","chosen":1,"rejected":"r"}\n')
    rejects = tmp_path / "r.jsonl"
    assert main(["convert", "--input", str(src), "--out", str(tmp_path / out_name), "--rejects", str(rejects)]) == 2
    err = capsys.readouterr().err
    assert "no row could be read (3 of 3 rejected)" in err and f"are in {rejects}" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    got = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in got] == [1, 2, 3] and all(r["reason"] for r in got)
    assert not (tmp_path / out_name).exists()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be-bom"])
def test_utf16_files_with_a_byte_order_mark_are_read(tmp_path, encoding):
    """Excel's "Unicode text" (UTF-16 LE, BOM, CRLF, tabs) and PowerShell's default output are
    UTF-16: transcoded as read, whatever the container."""
    import gzip

    from pairlab.io import read_pairs

    def encode(text: str) -> bytes:
        return text.encode("utf-16") if encoding == "utf-16" else b"\xfe\xff" + text.encode("utf-16-be")

    tsv = tmp_path / "excel.tsv"
    tsv.write_bytes(encode("prompt\tchosen\trejected\r\nq1 ü\tc1\tr1\r\nq2 😀\tc2\tr2\r\n"))
    assert read_pairs(tsv)[["prompt_text", "chosen"]].values.tolist() == [["q1 ü", "c1"], ["q2 😀", "c2"]]
    jsonl = tmp_path / "ps.jsonl.gz"
    with gzip.open(jsonl, "wb") as fh:
        fh.write(encode("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows("é", 3))))
    pairs, rejects = read_pairs_with_rejects(jsonl)
    assert len(pairs) == 3 and len(rejects) == 0 and pairs["prompt_text"].iloc[0] == "é question 0?"


def test_a_json_object_of_splits_reads_the_split_asked_for(tmp_path, capsys):
    """``{"train": [...], "test": [...]}``: --split picks one; without it, an error naming the
    splits (merging them would leak test rows); a name it lacks is named too."""
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": _rows("tr", 3), "test": _rows("te", 2)}))
    out = tmp_path / "o.parquet"
    assert main(["convert", "--input", str(path), "--split", "test", "--out", str(out)]) == 0
    assert sorted(pd.read_parquet(out)["prompt_text"]) == ["te question 0?", "te question 1?"]
    for extra, expected in (([], "holds 2 lists of records (train, test)"), (["--split", "dev"], "no split 'dev'")):
        capsys.readouterr()
        assert main(["convert", "--input", str(path), *extra, "--out", str(tmp_path / "x.parquet")]) == 2
        err = capsys.readouterr().err
        assert expected in err and "--split" in err and len(err.strip().splitlines()) == 1
    # one record whose chosen / rejected are message lists stays one record
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                  "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}))
    assert read_pairs_with_rejects(single)[0][["chosen", "rejected"]].values.tolist() == [["a", "b"]]


@pytest.mark.parametrize("indent", [2, None])
@pytest.mark.parametrize("chunk_rows", ["0", "2"])  # the whole-file and the chunked reader
def test_a_json_array_saved_as_jsonl_is_read_as_one_document(tmp_path, indent, chunk_rows):
    path = tmp_path / "pretty.jsonl"
    path.write_text(json.dumps(_rows("p", 3), indent=indent))
    out = tmp_path / "o.parquet"
    assert main(["convert", "--input", str(path), "--out", str(out), "--chunk-rows", chunk_rows]) == 0
    assert len(pd.read_parquet(out)) == 3


def test_an_hh_transcript_without_turn_markers_says_so(tmp_path):
    path = tmp_path / "hh.jsonl"
    good = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    _jsonl(path, [good, good, {"chosen": "no markers here", "rejected": "none either"}])
    pairs, rejects = read_pairs_with_rejects(path)
    assert len(pairs) == 2 and rejects[["line", "field"]].values.tolist() == [[3, "chosen"]]
    assert "no 'Assistant:' turn" in rejects["reason"].iloc[0]


@pytest.mark.parametrize("chunk_rows", ["0", "2"])
def test_split_reaches_json_documents_everywhere(tmp_path, capsys, chunk_rows):
    """--split picks a list of a JSON object of splits named .jsonl (both readers), inside a
    folder whose file names give no split, and a split the object lacks is an error even when
    the object holds one split only (never silently another split's rows)."""
    splits = {"train": _rows("tr", 3), "test": _rows("te", 2)}
    pretty = tmp_path / "splits.jsonl"
    pretty.write_text(json.dumps(splits, indent=2))
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "data.json").write_text(json.dumps(splits))
    for spec, split, n in ((pretty, "test", 2), (folder, "train", 3)):
        out = tmp_path / f"o-{spec.name}.parquet"
        assert main(["convert", "--input", str(spec), "--split", split, "--out", str(out),
                     "--chunk-rows", chunk_rows]) == 0
        assert len(pd.read_parquet(out)) == n
    only = tmp_path / "only.json"
    only.write_text(json.dumps({"train": _rows("tr", 2)}))
    capsys.readouterr()
    assert main(["convert", "--input", str(only), "--split", "test", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "no split 'test'" in capsys.readouterr().err
    # chat messages in another convention (ShareGPT's from/value) are one record's fields, not
    # splits: read as turns, and this record's answers end on the user's turn
    sharegpt = tmp_path / "sg.json"
    sharegpt.write_text(json.dumps({"chosen": [{"from": "human", "value": "q"}], "rejected": [{"from": "human", "value": "r"}]}))
    assert main(["convert", "--input", str(sharegpt), "--out", str(tmp_path / "y.parquet")]) == 2
    err = capsys.readouterr().err
    assert "--split" not in err and "last message is 'user', expected 'assistant'" in err


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_a_small_file_cut_short_is_named_cut_short_not_empty(tmp_path, capsys, suffix):
    import gzip

    import zstandard

    data = b"".join(json.dumps(r).encode() + b"\n" for r in _rows("c", 3))
    packed = gzip.compress(data) if suffix == ".gz" else zstandard.ZstdCompressor().compress(data)
    for cut in (packed[:5], packed[:-3]):
        path = tmp_path / f"cut.jsonl{suffix}"
        path.write_bytes(cut)
        assert main(["convert", "--input", str(path), "--out", str(tmp_path / "o.parquet")]) == 2
        err = capsys.readouterr().err
        assert "cannot decompress" in err and "empty file" not in err and "Traceback" not in err, err
