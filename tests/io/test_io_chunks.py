"""iter_pairs_chunks(): a JSONL/CSV file read chunk by chunk gives exactly the whole-file read
(pairs, pair ids, rejects, read_stats), and whole-file errors keep their meaning."""
from __future__ import annotations

import copy
import gzip
import json

import pandas as pd
import pytest

from io_fixtures import raw_completion, aspects, raw_records, real_file, write_jsonl
from pairlab.io import iter_pairs_chunks, read_pairs_with_rejects
from pairlab.schema import PairDataError

CHUNK = 7  # the first chunk holds the first 50 records (layout detection), then 7 rows each


def generic(i: int, **extra) -> dict:
    return {"prompt": f"question {i}: say something about topic {i % 13}",
            "chosen": f"a good answer {i} " + "word " * (i % 5), "rejected": f"a worse answer {i}",
            "score_chosen": 1 + i % 9, "score_rejected": 1 + (i * 3) % 9, **extra}


def chunked(path, chunk_rows: int = CHUNK, **kwargs):
    """The chunks concatenated: (pairs, rejects, last read_stats, number of chunks)."""
    chunks = list(iter_pairs_chunks(path, chunk_rows=chunk_rows, **kwargs))
    frames = [p for p, _ in chunks if len(p)]
    pairs = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    rejects = pd.concat([r for _, r in chunks], ignore_index=True)
    return pairs, rejects, chunks[-1][0].attrs["read_stats"], len(chunks)


def assert_same_as_whole(path, min_chunks: int = 3, chunk_rows: int = CHUNK,
                         **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    whole, whole_rejects = read_pairs_with_rejects(path, **kwargs)
    pairs, rejects, stats, n = chunked(path, chunk_rows, **kwargs)
    assert n >= min_chunks
    pairs.attrs = whole.attrs = {**whole.attrs}  # compared below, apart
    pd.testing.assert_frame_equal(pairs, whole)
    pd.testing.assert_frame_equal(rejects, whole_rejects)
    assert stats == whole.attrs["read_stats"]
    assert stats["rows"] == stats["records"] + stats["rejected"]
    return whole, whole_rejects


def messy_lines() -> list[bytes]:
    """100 generic records; chunk 2 (rows 58-64) holds a malformed line, a non-object line
    and a bad-UTF-8 line; exact repeats of a pair straddle chunks; an extra column and a
    bad score appear late."""
    lines = [json.dumps(generic(i)).encode() for i in range(100)]
    lines[58] = b'{"prompt": "cut short", "chosen": '
    lines[60] = b"[1, 2, 3]"
    lines[62] = json.dumps(generic(62)).encode().replace(b"a good", b"a \xff good")
    for at in (56, 57, 70, 90):  # repeats of record 3 (in chunk 1): ids -1 ... -4
        lines[at] = json.dumps(generic(3)).encode()
    lines[75] = json.dumps(generic(75, note="only here")).encode()
    lines[80] = json.dumps(generic(80, score_chosen="high")).encode()
    return lines[:40] + [b"", b"   "] + lines[40:]  # blank lines are not rows


def test_jsonl_chunks_equal_the_whole_file(tmp_path):
    path = tmp_path / "messy.jsonl"
    path.write_bytes(b"\n".join(messy_lines()) + b"\n")
    whole, rejects = assert_same_as_whole(path, min_chunks=8)
    assert rejects[["line", "field"]].astype(object).values.tolist() == [
        [61, None], [63, None], [65, None], [83, "score_chosen"]]
    repeats = whole["pair_id"][whole["prompt_text"] == generic(3)["prompt"]].tolist()
    assert [p.partition("-")[2] for p in repeats] == ["", "1", "2", "3", "4"]
    assert whole["note"].notna().sum() == 1


@pytest.mark.parametrize("suffix,opener", [(".jsonl.gz", gzip.open), (".jsonl.xz", None)])
def test_compressed_jsonl_chunks(tmp_path, suffix, opener):
    import lzma

    path = tmp_path / f"messy{suffix}"
    with (opener or lzma.open)(path, "wb") as fh:
        fh.write(b"\n".join(messy_lines()) + b"\n")
    assert_same_as_whole(path, min_chunks=8)


def test_csv_with_map_chunks(tmp_path):
    rows = ["question,good,bad,rating_good,rating_bad,origin"]
    for i in range(90):
        rows.append(f'"q {i}, please",good {i},bad {i},{1 + i % 9},{1 + (i * 5) % 9},src{i % 3}')
    rows[60] = "q60,too,few"                               # wrong number of fields
    rows[64] = '"multi\nline q",good x,bad x,3,1,src0'       # a quoted cell over two lines
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    mapping = ["prompt=question", "chosen=good", "rejected=bad", "score_chosen=rating_good",
               "score_rejected=rating_bad", "source=origin"]
    whole, rejects = assert_same_as_whole(path, mapping=mapping, min_chunks=5)
    assert rejects["line"].tolist() == [61]
    assert whole.attrs["read_stats"]["mapping"]["source"] == "origin"


def test_raw_ultrafeedback_chunks(tmp_path):
    """Raw records are binarized per prompt, seeded by the prompt: order and chunks do not matter."""
    records = []
    for i in range(70):
        record = copy.deepcopy(raw_records()[i % 2])
        record["instruction"] += f" (variant {i})"
        if i % 2 == 0:
            record["completions"].append(raw_completion(f"Extra {i}.", "model-e", aspects(3, 2, 4, 3), 5.0))
        records.append(record)
    records[55]["completions"] = "not a list"  # a reject in a later chunk
    path = write_jsonl(tmp_path / "raw.jsonl", records)
    whole, rejects = assert_same_as_whole(path, min_chunks=3)
    assert whole.attrs["read_stats"]["layout"] == "raw" and whole.attrs["read_stats"]["ties_dropped"] == 34
    assert rejects["line"].tolist() == [56]
    # best-vs-random is seeded per prompt: a shuffled file pairs each prompt the same way
    shuffled = write_jsonl(tmp_path / "shuffled.jsonl", records[::-1])
    again = read_pairs_with_rejects(shuffled)[0]
    assert set(again["pair_id"]) == set(whole["pair_id"])


def test_real_rows_gzipped_chunks(tmp_path):
    """Real trl-lib UltraFeedback rows (scores nested in metadata: auto-mapped), gzipped."""
    source = real_file("ultrafeedback/trl-lib-binarized_train_slice1000.jsonl")
    path = tmp_path / "real.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(source.read_bytes())
    whole, _ = assert_same_as_whole(path, chunk_rows=97)
    stats = whole.attrs["read_stats"]
    assert stats["rows"] == 1000 and stats["auto_mapped"]["score_chosen"] == "metadata.score_chosen"
    assert stats["flagged"] > 0  # the real quirks (ties, empty answers) are flagged


def test_whole_file_errors_keep_their_meaning(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    junk = tmp_path / "junk.jsonl"
    junk.write_text("".join("nope\n" if i % 2 else "[1]\n" for i in range(80)))
    late = write_jsonl(tmp_path / "late.jsonl", [generic(i) for i in range(60)]
                       + [generic(i, extra={"rating": 2}) for i in range(60, 70)])
    for path, kwargs, message in [
            (empty, {}, "empty file"), (junk, {}, "no row could be read (80 of 80 rejected)"),
            (late, {"mapping": ["score_chosen=nowhere.rating"]}, "no record has 'nowhere.rating'"),
            (late, {"mapping": ["prompt_id=nowhere"]}, "no record has 'nowhere'")]:
        with pytest.raises(PairDataError, match=message.replace("(", r"\(").replace(")", r"\)")) as whole:
            read_pairs_with_rejects(path, **kwargs)
        with pytest.raises(PairDataError) as streamed:
            chunked(path, **kwargs)
        assert str(streamed.value) == str(whole.value)
    # a path only the last chunk has is found: no error, the same pairs
    assert_same_as_whole(late, mapping=["source=extra.rating"], min_chunks=3)


def test_later_chunks_are_read_with_the_first_chunks_layout(tmp_path):
    """A pairs-layout JSONL whose later records lack a schema column (checked on the first
    chunk only): those rows read as the whole file reads them; later records no flat
    layout fits (no `chosen`) are rejected with the reason, not a crash."""
    from pairlab.io import write_pairs

    good = tmp_path / "pairs.jsonl"
    write_pairs(read_pairs_with_rejects(write_jsonl(tmp_path / "g.jsonl", [generic(i) for i in range(70)]))[0], good)
    lines = good.read_text().splitlines()
    cut = [json.dumps({k: v for k, v in json.loads(line).items() if k != "flags"}) for line in lines[58:]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines[:58] + cut) + "\n")
    assert_same_as_whole(path)
    other = write_jsonl(tmp_path / "other.jsonl", [generic(i) for i in range(60)]
                        + [{"question": f"q{i}", "answer": "a"} for i in range(10)])
    _, rejects = assert_same_as_whole(other)
    assert rejects["line"].tolist() == list(range(61, 71))
    assert (rejects["reason"] == "missing required field").all()


def test_strict_stops_at_a_bad_row_in_a_later_chunk(tmp_path):
    path = tmp_path / "messy.jsonl"
    path.write_bytes(b"\n".join(messy_lines()) + b"\n")
    with pytest.raises(PairDataError, match="malformed JSON") as err:
        chunked(path, strict=True)
    assert err.value.line == 61


def test_other_inputs_come_whole(tmp_path):
    from pairlab.io import write_pairs

    parquet = tmp_path / "pool.parquet"
    write_pairs(read_pairs_with_rejects(write_jsonl(tmp_path / "g.jsonl", [generic(i) for i in range(30)]))[0],
                parquet)
    chunks = list(iter_pairs_chunks(parquet, chunk_rows=5))
    assert len(chunks) == 1 and len(chunks[0][0]) == 30


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".csv"])
def test_convert_in_chunks_writes_the_whole_file_parquet(tmp_path, suffix, capsys):
    """`pairlab convert` of a JSONL/CSV file writes its Parquet chunk by chunk: read back, the
    same table (and read_stats) as the whole-file convert; rejects still exit 2 unless kept."""
    from pairlab.cli import main

    if suffix == ".csv":
        path = tmp_path / "pool.csv"
        rows = ["prompt,chosen,rejected,score_chosen,score_rejected"]
        rows += [f"q {i},good {i},bad {i},{1 + i % 9},{1 + (i * 5) % 9}" for i in range(80)]
        rows[66] = "q,too,few"
        rows[70] = rows[20]  # an exact repeat, in another chunk
        path.write_text("\n".join(rows) + "\n")
    else:
        path = tmp_path / "pool.jsonl.gz"
        with gzip.open(path, "wb") as fh:
            fh.write(b"\n".join(messy_lines()) + b"\n")
    whole, streamed = tmp_path / "whole.parquet", tmp_path / "streamed.parquet"
    assert main(["convert", "--input", str(path), "--out", str(whole), "--chunk-rows", "0"]) == 2
    assert main(["convert", "--input", str(path), "--out", str(streamed), "--chunk-rows", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == err[1] and "rows rejected (first:" in err[0]
    a, b = pd.read_parquet(whole), pd.read_parquet(streamed)
    pd.testing.assert_frame_equal(b, a)
    assert b.attrs == a.attrs and b.attrs["read_stats"]["rejected"] >= 1
    assert not list(tmp_path.glob(".*parts*"))  # the parts are gone
    kept = tmp_path / "kept.parquet"
    assert main(["convert", "--input", str(path), "--out", str(kept), "--chunk-rows", "7",
                 "--rejects", str(tmp_path / "rejects.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "rejects.csv")) == a.attrs["read_stats"]["rejected"]
    assert main(["convert", "--input", str(path), "--out", str(tmp_path / "kept0.parquet"), "--chunk-rows",
                 "0", "--rejects", str(tmp_path / "rejects0.csv")]) == 0
    notes = capsys.readouterr().err.strip().splitlines()  # the note on both paths, the same
    assert len(notes) == 2 and notes[0] == notes[1] and ": note: " in notes[0]


def test_convert_in_chunks_strict_or_failing_leaves_no_output(tmp_path, capsys):
    from pairlab.cli import main

    path = tmp_path / "messy.jsonl"
    path.write_bytes(b"\n".join(messy_lines()) + b"\n")
    out = tmp_path / "out.parquet"
    assert main(["convert", "--input", str(path), "--out", str(out), "--chunk-rows", "7", "--strict"]) == 2
    assert "line 61" in capsys.readouterr().err
    late = write_jsonl(tmp_path / "late.jsonl", [generic(i) for i in range(70)])
    assert main(["convert", "--input", str(late), "--out", str(out), "--chunk-rows", "7",
                 "--map", "source=nowhere"]) == 2  # known only after the last chunk
    assert "no record has 'nowhere'" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*"))


@pytest.fixture
def picky_layout():
    """A registered layout that refuses a whole table whose `kind` varies (a whole-table check)."""
    from pairlab.io import LAYOUT_REGISTRY, register_layout
    from pairlab.io.layouts import flat_rows
    from pairlab.schema import finalize_pairs

    def rows(ctx):
        if len({r.get("kind") for r in ctx.records}) > 1:
            raise PairDataError("mixed kinds in one table", field="kind", file=ctx.batch.name)
        return finalize_pairs(flat_rows(ctx.batch, ctx.records, "generic", ctx.log))

    register_layout("picky", lambda record, plan: "kind" in record, rows)
    yield
    LAYOUT_REGISTRY.pop("picky")


def test_a_later_chunk_its_layout_refuses_whole_is_rejected_row_by_row(tmp_path, picky_layout):
    records = [generic(i, kind="a") for i in range(64)] + [generic(i, kind="a" if i % 2 else "b")
                                                           for i in range(64, 71)]
    path = write_jsonl(tmp_path / "picky.jsonl", records)
    pairs, rejects, stats, n = chunked(path)  # chunks: lines 1-50, 51-57, 58-64, 65-71
    assert n == 4 and stats["layout"] == "picky" and len(pairs) == 64
    assert rejects["line"].tolist() == list(range(65, 72))
    assert set(rejects["reason"]) == {"mixed kinds in one table"} and set(rejects["field"]) == {"kind"}
    assert stats["rows"] == 71 and stats["rejected"] == 7
    with pytest.raises(PairDataError, match="mixed kinds"):  # the whole file: an error, as before
        read_pairs_with_rejects(path)
