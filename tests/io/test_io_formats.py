"""Every file type and compression reads to the same pairs table; CSV/TSV with --map;
saved datasets and directories of shards. Fixture files are built in tmp from records
(and from the real rows in ../shared/data when present)."""
from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import shutil

import pandas as pd
import pytest
import zstandard

from io_fixtures import generic_records, h4_records, raw_records, real_file, write_jsonl
from pairlab.cli import main
from pairlab.io import read_pairs, read_pairs_with_rejects
from pairlab.schema import PairDataError

COMPRESS = {"": lambda b: b, ".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """A table without read_stats (which name the file) and with hashable prompts."""
    df = df.copy()
    df.attrs = {}
    df["prompt"] = df["prompt"].map(json.dumps)
    return df


def _write(path, records, kind):
    if kind == ".jsonl":
        write_jsonl(path, records)
    elif kind == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        pd.DataFrame(records).to_parquet(path)
    return path


def _compressed(path, compression):
    out = path.with_name(path.name + compression)
    out.write_bytes(COMPRESS[compression](path.read_bytes()))
    return out


@pytest.mark.parametrize("compression", sorted(COMPRESS))
@pytest.mark.parametrize("kind", [".jsonl", ".json", ".parquet"])
@pytest.mark.parametrize("records", [generic_records, h4_records, raw_records],
                         ids=["generic", "h4", "raw"])
def test_every_type_and_compression_reads_the_same_table(tmp_path, kind, compression, records):
    expected = read_pairs(_write(tmp_path / "plain.jsonl", records(), ".jsonl"))
    src = _write(tmp_path / f"data{kind}", records(), kind)
    path = _compressed(src, compression) if compression else src
    df = read_pairs(path)
    pd.testing.assert_frame_equal(_plain(df), _plain(expected))
    stats = df.attrs["read_stats"]
    assert stats["rows"] == len(records()) and stats["rejected"] == 0
    assert stats["records"] + stats["rejected"] == stats["rows"]


@pytest.mark.parametrize("compression", [".gz", ".bz2", ".xz", ".zst"])
@pytest.mark.parametrize("kind", [".jsonl", ".parquet"])
def test_the_bytes_decide_the_compression_not_the_name(tmp_path, kind, compression):
    """A compressed download saved without its suffix, and a ``.gz`` a browser already
    decompressed, read like the plain file (the first bytes name the compression)."""
    expected = _plain(read_pairs(_write(tmp_path / "plain.jsonl", generic_records(), ".jsonl")))
    src = _write(tmp_path / f"src{kind}", generic_records(), kind)
    hidden = tmp_path / f"hidden{kind}"  # compressed bytes, plain name
    hidden.write_bytes(COMPRESS[compression](src.read_bytes()))
    pd.testing.assert_frame_equal(_plain(read_pairs(hidden)), expected)
    named = tmp_path / f"named{kind}{compression}"  # plain bytes, compressed name
    named.write_bytes(src.read_bytes())
    pd.testing.assert_frame_equal(_plain(read_pairs(named)), expected)


@pytest.mark.parametrize("compression", [".gz", ".bz2", ".xz", ".zst"])
def test_a_download_cut_inside_its_magic_is_a_cut_short_stream(tmp_path, compression):
    """1-5 bytes of a compressed file: too short for the bytes to tell, so the suffix does,
    and the error is the decompressor's (a cut-short download), not malformed JSON or UTF-8."""
    full = COMPRESS[compression](b"".join(json.dumps(r).encode() + b"\n" for r in generic_records()))
    for size in range(1, 6):
        path = tmp_path / f"cut{size}.jsonl{compression}"
        path.write_bytes(full[:size])
        with pytest.raises(PairDataError, match=f"cannot decompress \\{compression}"):
            read_pairs(path)


def test_text_opening_like_a_magic_and_lzma_alone_xz(tmp_path):
    # "BZh" without bz2's block-size digit is text: a CSV whose first column is BZh_id
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("BZh_id,prompt,chosen,rejected\n1,Hi?,Hello!,Go away.\n")
    assert read_pairs(csv_path)["chosen"].tolist() == ["Hello!"]
    # an .xz in the older lzma-alone format (no magic) still decompresses
    src = b"".join(json.dumps(r).encode() + b"\n" for r in generic_records())
    alone = tmp_path / "pairs.jsonl.xz"
    alone.write_bytes(lzma.compress(src, format=lzma.FORMAT_ALONE))
    plain = tmp_path / "pairs.jsonl"
    plain.write_bytes(src)
    pd.testing.assert_frame_equal(_plain(read_pairs(alone)), _plain(read_pairs(plain)))


@pytest.mark.parametrize("compression", [".gz", ".bz2", ".xz", ".zst"])
def test_real_file_compressed_reads_like_the_original(tmp_path, compression):
    src = real_file("ultrafeedback/trl-lib-binarized_train_slice1000.jsonl")
    local = tmp_path / "trl-lib.jsonl"
    shutil.copyfile(src, local)
    path = _compressed(local, compression)
    pd.testing.assert_frame_equal(_plain(read_pairs(path)), _plain(read_pairs(src)))


def test_corrupt_archive_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "cut.jsonl.gz"
    full = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in generic_records() * 50))
    path.write_bytes(full[: len(full) // 2])  # a download cut short
    with pytest.raises(PairDataError, match="cannot decompress .gz"):
        read_pairs(path)
    assert main(["inspect", "--input", str(path)]) == 2
    assert "cannot decompress .gz" in capsys.readouterr().err


# ---------------------------------------------------------------- CSV / TSV

ORCA = [  # Intel/orca_dpo_pairs columns; cells with commas, quotes, newlines and unicode
    {"system": "You are an AI assistant.", "question": "Translate 'chat' to English, please.",
     "chosen": "It means \"cat\".\nIn French, chat = cat.", "rejected": "Dog, I think."},
    {"system": "", "question": "2+2?", "chosen": "4", "rejected": "5 — très sûr"},
    {"system": "Be brief.", "question": "Capital of France?", "chosen": "Paris.", "rejected": ""},
]


def _write_delimited(path, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t"), (".csv.gz", ",")])
def test_csv_and_tsv_read_with_map(tmp_path, suffix, delimiter):
    plain = _write_delimited(tmp_path / ("orca" + suffix.split(".gz")[0]), ORCA, delimiter)
    path = _compressed(plain, ".gz") if suffix.endswith(".gz") else plain
    df = read_pairs(path, mapping=["prompt=question"])
    assert df["prompt"].tolist() == [[{"role": "user", "content": r["question"]}] for r in ORCA]
    assert df["chosen"].tolist() == [r["chosen"] for r in ORCA]
    assert df["rejected"].tolist() == [r["rejected"] for r in ORCA]
    assert df["system"].tolist() == [r["system"] for r in ORCA]  # carried as an extra column
    assert df["flags"].tolist()[2] == "empty_rejected;missing_score"
    assert df.attrs["read_stats"]["layout"] == "generic"


def test_csv_system_column_becomes_a_system_message_when_mapped(tmp_path):
    path = _write_delimited(tmp_path / "orca.csv", ORCA)
    df = read_pairs(path, mapping={"prompt": "question", "system": "system"})
    assert df.loc[0, "prompt"] == [{"role": "system", "content": "You are an AI assistant."},
                                   {"role": "user", "content": ORCA[0]["question"]}]
    assert df.loc[1, "prompt"] == [{"role": "user", "content": "2+2?"}]  # empty: no system turn
    assert "system" not in df.columns


def test_csv_scores_rejects_and_lines(tmp_path):
    path = tmp_path / "scored.csv"
    path.write_bytes(
        b"prompt,chosen,rejected,score_chosen,score_rejected\n"
        b'"multi\nline prompt",a,b,8.5,2\n'          # lines 2-3
        b"p2,a,b,high,1\n"                            # line 4: a word where a score goes
        b"p3,a,b,1\n"                                 # line 5: too few fields
        b"p4,\xff\xfe,b,1,2\n"                        # line 6: invalid UTF-8
        b"\n"
        b"p5,a,b,N/A,3\n")                            # line 8
    df, rejects = read_pairs_with_rejects(path)
    assert df["prompt_text"].tolist() == ["multi\nline prompt", "p5"]
    assert df["score_chosen"].tolist()[0] == 8.5 and pd.isna(df["score_chosen"].tolist()[1])
    # in file order (the chunked reader gives the same table)
    assert rejects[["line", "field"]].astype(object).values.tolist() == [
        [4, "score_chosen"], [5, None], [6, "chosen"]]
    stats = df.attrs["read_stats"]
    assert (stats["rows"], stats["records"], stats["rejected"]) == (5, 2, 3)


def test_cli_inspects_a_csv_with_map(tmp_path, capsys):
    path = _write_delimited(tmp_path / "orca.csv", ORCA)
    assert main(["inspect", "--input", str(path), "--map", "prompt=question", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 3 and summary["input_rows"] == 3 and summary["rejected"] == 0
    assert summary["extra_columns"] == ["system"]


def test_csv_header_problems_are_clear_errors(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("prompt,chosen,chosen\np,a,b\n")
    with pytest.raises(PairDataError, match="column 'chosen' twice"):
        read_pairs(path)


# ---------------------------------------------------------------- datasets and directories

def test_save_to_disk_directory(tmp_path):
    import datasets

    expected = read_pairs(_write(tmp_path / "h4.jsonl", h4_records(), ".jsonl"))
    datasets.Dataset.from_list(h4_records()).save_to_disk(str(tmp_path / "saved"))
    pd.testing.assert_frame_equal(_plain(read_pairs(tmp_path / "saved")), _plain(expected))

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(h4_records()),
                               "test": datasets.Dataset.from_list(h4_records()[:1])})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert len(read_pairs(tmp_path / "dict", split="test")) == 1
    with pytest.raises(PairDataError, match="available: train, test"):
        read_pairs(tmp_path / "dict")


def test_directory_of_parquet_shards_and_mixed_files(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}",
             "score_chosen": float(i % 5 + 2), "score_rejected": 1.0} for i in range(30)]
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(3):  # the hub's data/train-0000k-of-00003.parquet naming
        pd.DataFrame(rows[k::3]).to_parquet(shards / f"train-{k:05d}-of-00003.parquet")
    (shards / ".hidden.parquet").write_bytes(b"not parquet")  # ignored: a hidden file
    df = read_pairs(shards)
    assert len(df) == 30 and sorted(df["prompt_text"]) == sorted(r["prompt"] for r in rows)
    assert len(df.attrs["read_stats"]["files"]) == 3

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _compressed(write_jsonl(mixed / "a.jsonl", rows[:10]), ".zst")
    (mixed / "a.jsonl").unlink()  # only a.jsonl.zst and b.csv remain
    pd.DataFrame(rows[10:]).to_csv(mixed / "b.csv", index=False)
    df = read_pairs(mixed)
    assert len(df) == 30 and df["score_chosen"].dtype == float


# ---------------------------------------------------------------- encodings

def test_invalid_utf8_line_is_rejected_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(generic_records()[0]).encode()
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + '{"prompt": "caf\xe9"}'.encode("latin-1")
                     + b"\n" + good + b"\n")
    df, rejects = read_pairs_with_rejects(path)
    assert len(df) == 2 and rejects["line"].tolist() == [2]
    assert "invalid UTF-8 (byte 0xe9" in rejects.loc[0, "reason"]
    assert main(["inspect", "--input", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "invalid UTF-8" in err and "Traceback" not in err


def test_invalid_utf8_json_document_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'[\n{"prompt": "ok"},\n{"prompt": "caf\xe9"}\n]')
    with pytest.raises(PairDataError) as info:
        read_pairs(path)
    assert info.value.line == 3 and "invalid UTF-8" in str(info.value)
