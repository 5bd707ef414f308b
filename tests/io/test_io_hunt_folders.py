"""Folder inputs, splits and archives as downloads give them (a new user's files, found by probing).

- an output inside an input folder would replace a shard, or be read back as one;
- ``--split`` naming another split than a file's (or saved dataset's) own is refused;
- one empty or all-rejected shard of a folder does not make the folder unreadable;
- a tar or zip archive saved under a data suffix is named as such, not read as rows;
- a pairs table holding the same pair_id twice (two converted files joined) reads with unique ids.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile

import pytest

from pairlab.cli import main
from pairlab.io import read_pairs, read_pairs_with_rejects

ROWS = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_an_output_inside_an_input_folder_is_refused(tmp_path, capsys):
    shards = tmp_path / "shards"
    a = _jsonl(shards / "part-a.jsonl", ROWS[:3])
    b = _jsonl(shards / "part-b.jsonl", ROWS[3:] + [{"prompt": "q", "chosen": None, "rejected": "x"}])
    before = {p.name: p.read_bytes() for p in (a, b)}
    cases = [["--out", str(a), "--overwrite", "--rejects", str(tmp_path / "rej.jsonl")],
             ["--out", str(tmp_path / "out.jsonl"), "--rejects", str(b), "--overwrite"],
             ["--out", str(shards / "pairs.parquet")]]
    for extra in cases:
        assert main(["convert", str(shards), *extra]) == 2
        line = _error_line(capsys)
        assert "is inside the input folder" in line and str(shards) in line
    assert {p.name: p.read_bytes() for p in (a, b)} == before
    assert sorted(p.name for p in shards.iterdir()) == ["part-a.jsonl", "part-b.jsonl"]
    # a stage's --out inside the folder too; beside it is fine
    assert main(["curate", "--input", str(shards), "--out", str(shards / "cur"), "--tokenizer", "none"]) == 2
    assert "is inside the input folder" in _error_line(capsys)
    assert main(["convert", str(shards), "--out", str(tmp_path / "pairs.parquet"),
                 "--rejects", str(tmp_path / "rej.jsonl")]) == 0


def test_a_link_inside_a_snapshot_folder_is_not_written_through(tmp_path, capsys):
    """A hub cache snapshot's data files are links to blobs outside it: still inside the input."""
    blob = _jsonl(tmp_path / "blobs" / "abc", ROWS[:2])
    data = tmp_path / "snap" / "data"
    data.mkdir(parents=True)
    (data / "train-00000-of-00001.jsonl").symlink_to(blob)
    out = data / "train-00000-of-00001.jsonl"
    assert main(["convert", str(tmp_path / "snap"), "--out", str(out), "--overwrite"]) == 2
    assert "is inside the input folder" in _error_line(capsys)
    assert out.is_symlink() and blob.read_text().count("\n") == 2


def test_split_other_than_the_files_own_is_refused(tmp_path, capsys):
    train = _jsonl(tmp_path / "data" / "uf_train.jsonl", ROWS)
    assert main(["convert", str(train), "--split", "test", "--out", str(tmp_path / "t.jsonl")]) == 2
    line = _error_line(capsys)
    assert "field '--split'" in line and "'train', not 'test'" in line
    assert not (tmp_path / "t.jsonl").exists()
    assert len(read_pairs(train, split="train")) == len(ROWS)  # its own split reads
    plain = _jsonl(tmp_path / "plain.jsonl", ROWS)  # a name that gives no split: read as named
    assert len(read_pairs(plain, split="test")) == len(ROWS)
    assert main(["curate", "--input", str(plain), "--eval-from", str(train), "--eval-from-split", "test",
                 "--out", str(tmp_path / "cur"), "--tokenizer", "none"]) == 2
    assert "'train', not 'test'" in _error_line(capsys)


def test_saved_dataset_of_another_split_is_refused(tmp_path):
    import datasets

    from pairlab.schema import PairDataError

    ds = datasets.Dataset.from_list(ROWS, split=datasets.Split.TRAIN)
    ds.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(PairDataError, match="saved split 'train', not 'test'"):
        read_pairs(tmp_path / "saved", split="test")
    assert len(read_pairs(tmp_path / "saved", split="train")) == len(ROWS)
    assert len(read_pairs(tmp_path / "saved")) == len(ROWS)


def test_one_bad_or_empty_shard_leaves_the_folder_readable(tmp_path, capsys):
    shards = tmp_path / "shards"
    _jsonl(shards / "train-00000-of-00003.jsonl", ROWS)
    _jsonl(shards / "train-00001-of-00003.jsonl", [{"prompt": "q", "chosen": None, "rejected": "x"}])
    (shards / "train-00002-of-00003.jsonl").write_bytes(b"")
    pairs, rejects = read_pairs_with_rejects(shards)
    stats = pairs.attrs["read_stats"]
    assert len(pairs) == len(ROWS) and stats["rows"] == len(ROWS) + 1 and stats["rejected"] == 1
    assert rejects["file"].str.endswith("train-00001-of-00003.jsonl").all() and rejects["field"].tolist() == ["chosen"]
    assert main(["inspect", str(shards)]) == 0
    assert f"{len(ROWS) + 1}: {len(ROWS)} read + 1 rejected" in capsys.readouterr().out
    # the folder as a whole: every row rejected, or no row at all, is still an error
    bad = tmp_path / "bad"
    for i in range(2):
        _jsonl(bad / f"train-0000{i}-of-00002.jsonl", [{"prompt": "q", "chosen": None, "rejected": "x"}])
    assert main(["inspect", str(bad)]) == 2
    assert "no row could be read (2 of 2 rejected)" in _error_line(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    for i in range(2):
        (empty / f"train-0000{i}-of-00002.jsonl").write_bytes(b"")
    assert main(["inspect", str(empty)]) == 2
    assert "no records in any of its files" in _error_line(capsys)


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
def test_an_archive_under_a_data_suffix_is_named(tmp_path, capsys, kind):
    member = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("train.jsonl", member)
    else:
        with tarfile.open(fileobj=buffer, mode="w") as t:
            info = tarfile.TarInfo("train.jsonl")
            info.size = len(member)
            t.addfile(info, io.BytesIO(member))
    raw = buffer.getvalue()
    path = tmp_path / ("train.jsonl.gz" if kind == "tar.gz" else "train.jsonl")
    path.write_bytes(gzip.compress(raw) if kind == "tar.gz" else raw)
    assert main(["inspect", str(path)]) == 2
    line = _error_line(capsys)
    assert f"is a {kind.split('.')[0]} archive" in line and "not a data file" in line
    assert main(["convert", str(path), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_pairs_table_of_joined_files_reads_with_unique_ids(tmp_path, capsys, chunked):
    src = _jsonl(tmp_path / "in.jsonl", ROWS[:3])
    assert main(["convert", str(src), "--out", str(tmp_path / "one.jsonl")]) == 0
    one = (tmp_path / "one.jsonl").read_text()
    joined = tmp_path / "all.jsonl"
    joined.write_text(one + one)
    if chunked:
        from pairlab.io import iter_pairs_chunks

        parts = list(iter_pairs_chunks(joined, chunk_rows=2))
        ids = [i for pairs, _ in parts for i in pairs["pair_id"]]
        stats = parts[-1][0].attrs["read_stats"]
    else:
        pairs = read_pairs(joined)
        ids, stats = pairs["pair_id"].tolist(), pairs.attrs["read_stats"]
    first = [json.loads(x)["pair_id"] for x in one.splitlines()]
    assert ids == first + [f"{i}-1" for i in first] and stats["repeated_pair_ids"] == 3
    assert main(["curate", "--input", str(joined), "--out", str(tmp_path / f"cur{chunked}"),
                 "--tokenizer", "none"]) == 0
