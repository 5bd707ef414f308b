"""Regression tests: streamed curation of pools whose chunks type an extra column differently;
`evaluate --prompts` files in UTF-8 (BOM) / UTF-16 and bytes that are not text; an unknown
key in a filters file's `config:` block named with the file."""
from __future__ import annotations

import codecs
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate_checks import FILES, same_outputs
from pairlab.cli import main
from pairlab.errors import PairlabError
from pairlab.evaluate.generate import read_prompts_file
from pairlab.io import read_pairs, write_pairs

ROWS = 24


def _row(i: int) -> dict:
    sc, sr = (5.0, 5.0) if i % 5 == 0 else (float(3 + i % 6), float(1 + i % 2))  # ties: drop_ties drops them
    return {"prompt": f"question {i}: explain topic {i * 31 % 97} in some detail please",
            "chosen": "word " * (4 + i % 9) + f"answer {i}", "rejected": f"a shorter reply {i}",
            "score_chosen": sc, "score_rejected": sr}


def _meta(case: str, i: int):
    """The extra column `meta` of row i (chunks of 4 rows); ... = key absent."""
    late = i >= 8  # the first two chunks are typed one way, later ones another
    if case == "null_then_int":
        return {"a": i} if late else {"a": None}
    if case == "empty_object_later":
        return {} if late and i % 2 else ... if not late else {"a": i}
    raise AssertionError(case)


def _curate(tmp_path: Path, pool: Path, out: str, chunk_rows: int, *extra: str) -> dict:
    spec = tmp_path / "filters.yaml"
    spec.write_text("- drop_ties\n")
    assert main(["curate", "--input", str(pool), "--filters", str(spec), "--out", str(tmp_path / out),
                 "--tokenizer", "none", "--no-report", "--set", f"chunk_rows={chunk_rows}", *extra]) == 0
    return json.loads((tmp_path / out / "manifest.json").read_text())


@pytest.mark.parametrize("case", ["null_then_int", "empty_object_later"])
def test_streamed_jsonl_pool_with_differently_typed_extra_column(tmp_path, case):
    """A JSONL pool whose extra column `meta` is typed differently in later chunks (`{"a": null}`
    then `{"a": 1}`; absent, then a `{}` first appearing later, stored as text) curates streamed
    (it crashed: `Unsupported cast from int64 to null`) into what the whole-file curation writes,
    an unreadable line included."""
    lines = []
    for i in range(ROWS):
        row, meta = _row(i), _meta(case, i)
        if meta is not ...:
            row["meta"] = meta
        lines.append(json.dumps(row))
    lines.insert(13, '{"prompt": "cut')
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(lines) + "\n")
    whole, streamed = _curate(tmp_path, pool, "whole", 0), _curate(tmp_path, pool, "streamed", 4)
    assert streamed["streamed"]["chunk_rows"] == 4 and "streamed" not in whole
    same_outputs(tmp_path / "whole", tmp_path / "streamed")
    counts = streamed["counts"]
    assert counts["unreadable"] == 1 and counts["dropped"] >= 5
    assert counts["train"] + counts["eval"] + counts["dropped"] == counts["input"] == ROWS
    kept = pd.concat([pd.read_parquet(tmp_path / "streamed" / n) for n in FILES[:3]], ignore_index=True)
    assert len(kept) == ROWS + 1  # every row, the unreadable one too
    assert "meta" in kept.columns


@pytest.mark.parametrize("case", ["null_then_int", "struct_then_text_by_big_int"])
def test_streamed_parquet_pool_with_differently_typed_extra_column(tmp_path, case):
    """A pairs Parquet pool streams as it is: `meta` struct<a: uint64> null in the first chunks
    (typed null there), or holding an integer beyond int64 in a later chunk (that chunk's
    `meta` is stored as JSON text, the earlier chunks' nested): each output one file under one
    schema, the whole curation's (it crashed: no cast from null, nor from text to a struct)."""
    pairs = read_pairs(str(_write_jsonl(tmp_path, [_row(i) for i in range(ROWS)])))
    table = pa.Table.from_pandas(pd.read_parquet(_parquet(tmp_path, pairs)), preserve_index=False)
    if case == "null_then_int":
        values = [{"a": None} if i < 8 else {"a": i} for i in range(ROWS)]
    else:
        values = [{"a": 2 ** 64 - 1 if i == 17 else i} for i in range(ROWS)]
    table = table.append_column("meta", pa.array(values, pa.struct([("a", pa.uint64())])))
    pool = tmp_path / "pool.parquet"
    pq.write_table(table, pool)
    _curate(tmp_path, pool, "whole", 0)
    streamed = _curate(tmp_path, pool, "streamed", 4)
    assert streamed["streamed"]["chunk_rows"] == 4
    same_outputs(tmp_path / "whole", tmp_path / "streamed")
    out = pd.concat([pd.read_parquet(tmp_path / "streamed" / n) for n in FILES[:3]], ignore_index=True)
    assert len(out) == ROWS
    if case == "struct_then_text_by_big_int":  # text in every output file holding the big one
        assert str(2 ** 64 - 1) in set(out["meta"].map(str).str.extract(r"(\d{20})")[0].dropna())


def _write_jsonl(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _parquet(tmp_path: Path, pairs: pd.DataFrame) -> Path:
    path = tmp_path / "plain.parquet"
    write_pairs(pairs, path)
    return path


# ---------------------------------------------------------------- evaluate --prompts

@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom"])
def test_prompts_file_in_utf8_bom_or_utf16(tmp_path, encoding):
    text = "Say hi.\n\nCafé au lait?\n"
    data = (codecs.BOM_UTF16_LE + text.encode("utf-16-le") if encoding == "utf-16-le-bom" else
            codecs.BOM_UTF16_BE + text.encode("utf-16-be") if encoding == "utf-16-be-bom" else
            text.encode(encoding))
    txt = tmp_path / "prompts.txt"
    txt.write_bytes(data)
    assert list(read_prompts_file(txt)["prompt_text"]) == ["Say hi.", "Café au lait?"]
    jl = tmp_path / "prompts.jsonl"
    jl.write_bytes(codecs.BOM_UTF16_LE + '{"prompt": "Café?"}\n'.encode("utf-16-le")
                   if encoding != "utf-8-sig" else codecs.BOM_UTF8 + '{"prompt": "Café?"}\n'.encode())
    assert list(read_prompts_file(jl)["prompt_text"]) == ["Café?"]


def test_prompts_file_bytes_not_text_name_file_and_line(tmp_path):
    """UTF-16 without its byte-order mark reads as "valid" UTF-8 full of NULs: not text, refused
    naming the file and the line (it gave prompts like 'S\\x00a\\x00y\\x00')."""
    txt = tmp_path / "prompts.txt"
    txt.write_bytes("one\ntwo\n".encode("utf-16-le"))
    with pytest.raises(PairlabError) as err:
        read_prompts_file(txt)
    message = str(err.value)
    assert str(txt) in message and "line 1" in message and "prompts_file" in message and "\n" not in message


def test_evaluate_cli_refuses_utf16_prompts_without_bom_before_loading(tmp_path):
    """A UTF-16 prompts file without its byte-order mark decodes as "valid" UTF-8 full of NULs:
    refused (exit 2, one line naming file and line) before any model loads."""
    good = tmp_path / "eval.jsonl"
    good.write_text("".join(json.dumps({"prompt": f"q{i}?", "chosen": "a", "rejected": "b"}) + "\n"
                            for i in range(4)))
    txt = tmp_path / "prompts.txt"
    txt.write_bytes("Say hi.\n".encode("utf-16-le"))
    done = subprocess.run([sys.executable, "-m", "pairlab", "evaluate", "--model", "tiny-random-llama", "--eval",
                           str(good), "--out", str(tmp_path / "ev"), "--prompts", str(txt)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(txt) in lines[0] and "line 1" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- curate filters file config:

def test_unknown_config_key_in_filters_file_names_the_file(tmp_path):
    pool = _write_jsonl(tmp_path, [_row(i) for i in range(4)])
    spec = tmp_path / "fbad3.yaml"
    spec.write_text("config:\n  max_lenght: 5\nfilters: [drop_empty]\n")
    done = subprocess.run([sys.executable, "-m", "pairlab", "curate", "--input", str(pool), "--filters", str(spec),
                           "--out", str(tmp_path / "cur"), "--tokenizer", "none"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith(f"pairlab curate: error: {spec}, field 'config.max_lenght': unknown key"), lines[0]
    assert "max_length" in lines[0] and not (tmp_path / "cur").exists()


@pytest.mark.parametrize("extra,blamed", [((), "file"), (("--set", "eval_fraction=2"), "set"),
                                          (("--max-length", "0"), "flag"), (("--set", "max_length=0"), "flag")])
def test_bad_value_in_filters_file_config_names_the_file(tmp_path, capsys, extra, blamed):
    """A value the filters file's `config:` block sets wrongly is that file's error; one a
    `--set` gives wrongly names no file."""
    pool = _write_jsonl(tmp_path, [_row(i) for i in range(4)])
    spec = tmp_path / "fbad4.yaml"
    spec.write_text("config:\n  max_length: -5\nfilters: [drop_empty]\n" if blamed == "file" else
                    "config:\n  max_length: 64\nfilters: [drop_empty]\n")
    assert main(["curate", "--input", str(pool), "--filters", str(spec), "--out", str(tmp_path / "cur"),
                 "--tokenizer", "none", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    if blamed == "file":
        assert f"{spec}, field 'config.max_length': must be >= 1, got -5" in err, err
    elif blamed == "flag":  # the file sets max_length too, but the command line's value is the bad one
        assert str(spec) not in err and "field 'max_length': must be >= 1, got 0" in err, err
    else:
        assert str(spec) not in err and "field 'eval_fraction'" in err, err
    assert not (tmp_path / "cur").exists()
