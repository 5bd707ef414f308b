"""Property-based: whatever the rows hold (any unicode, length, type, NaN/inf, empty
strings, nested junk, lines that are not JSON), every row is read or rejected with a
reason, the counts add up, and the only exception is the documented PairDataError."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairlab.io import read_pairs_with_rejects
from pairlab.schema import PairDataError

# CI runs a fixed set of examples (a reproducible gate); elsewhere each run explores new ones
# (PAIRLAB_PROPERTY_EXAMPLES raises the count for a longer hunt)
SETTINGS = settings(max_examples=int(os.environ.get("PAIRLAB_PROPERTY_EXAMPLES", 60)), deadline=None,
                    derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                           "content": st.text(max_size=20)}), max_size=3)
# mostly well-typed (so most files have a layout and most rows are pairs), sometimes anything
field_value = st.one_of(st.text(), st.text(max_size=5), messages, values)
score = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none(),
                  st.text(max_size=4), values)
record = st.fixed_dictionaries({"chosen": field_value, "rejected": field_value}, optional={
    "prompt": field_value, "score_chosen": score, "score_rejected": score,
    "source": st.one_of(st.text(), values), "metadata": values})
json_line = st.tuples(record, st.booleans()).map(lambda r: json.dumps(r[0], ensure_ascii=r[1]))
# a line that is not what a JSONL file should hold (no line breaks; not blank)
junk_line = st.text(min_size=1, max_size=60).filter(
    lambda s: "\n" not in s and "\r" not in s and s.encode().strip())


def _check(path: Path, n_rows: int, anchored: bool) -> None:
    try:
        df, rejects = read_pairs_with_rejects(path)
    except PairDataError as err:  # documented: a whole-file problem, named
        assert not anchored, err  # one good row is enough for a file to read
        assert str(path) in str(err) and "no row could be read" in str(err)
        return
    stats = df.attrs["read_stats"]
    assert stats["rows"] == n_rows
    assert stats["records"] + stats["rejected"] == n_rows
    assert len(rejects) == stats["rejected"] and len(df) == stats["records"]
    assert rejects["reason"].map(lambda r: isinstance(r, str) and r != "").all()
    positions = rejects["line"].tolist()
    assert len(set(positions)) == len(positions) and all(1 <= p <= n_rows for p in positions)
    assert df["pair_id"].is_unique and df["chosen"].map(type).eq(str).all()
    assert df["prompt"].map(lambda m: all(isinstance(t["content"], str) for t in m)).all()


GOOD = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})


@SETTINGS
@given(st.lists(st.one_of(json_line, json_line, junk_line), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=8), st.booleans())
def test_jsonl_rows_are_read_or_rejected(lines, at, anchored):
    if anchored:  # a known-good row somewhere: the file must read, whatever the rest holds
        lines = lines[:at] + [GOOD] + lines[at:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
        _check(path, len(lines), anchored)


@SETTINGS
@given(st.lists(st.lists(st.text(max_size=30), min_size=5, max_size=5), min_size=1, max_size=8),
       st.sampled_from([",", "\t"]))
def test_csv_rows_are_read_or_rejected(rows, delimiter):
    # every cell is text, scores included: numeric text is a score, other text a reject
    header = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    rows = [r for r in rows if any(r)]  # a row of empty cells can be a blank line
    if not rows:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("data.csv" if delimiter == "," else "data.tsv")
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=delimiter)
            writer.writerow(header)
            writer.writerows(rows)
        try:
            df, rejects = read_pairs_with_rejects(path)
        except PairDataError as err:
            assert "no row could be read" in str(err)
            return
        stats = df.attrs["read_stats"]
        assert stats["rows"] == len(rows) and stats["records"] + stats["rejected"] == len(rows)
        assert set(rejects["field"]) <= {"score_chosen", "score_rejected"}
        assert df["chosen"].tolist() == [r[1] for r in rows if _is_score(r[3]) and _is_score(r[4])]


def _is_score(text: str) -> bool:
    text = text.strip()
    if text.lower() in ("", "n/a", "na", "nan", "none", "null"):
        return True
    try:
        float(text)
        return True
    except ValueError:
        return False
