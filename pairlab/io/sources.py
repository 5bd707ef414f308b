"""Where records come from: a file, a directory of files, a saved dataset, or a hub dataset.

Each source yields a :class:`RecordBatch`: the records as plain dicts plus, for every
record, where it sits in its file (1-based line for JSONL and CSV/TSV, 0-based row for
Parquet, JSON arrays and datasets), so any later error can point at it.

File types (by suffix): ``.jsonl``, ``.json``, ``.parquet``, ``.csv``, ``.tsv``, each
optionally compressed: ``.gz``, ``.bz2``, ``.xz``, ``.zst`` (``data.jsonl.gz``).
A row that does not parse (malformed JSON, invalid UTF-8, a CSV row with the wrong
number of fields, a JSON value that is not an object) goes to the :class:`RejectLog`;
only a container that cannot be read at all (a corrupt Parquet or archive, a ``.json``
document that does not parse) is an error for the whole file.
"""
from __future__ import annotations

import bz2
import codecs
import collections
import csv
import gzip
import io
import itertools
import json
import lzma
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from ..schema import PairDataError
from .rejects import RejectLog


class _ChunkedStream(io.RawIOBase):
    """A byte stream made chunk by chunk: subclasses give :meth:`_more` (the next output
    bytes, None at the end); this serves them to ``readinto``."""

    _out, _pos, _done = b"", 0, False

    def readable(self) -> bool:
        return True

    def _more(self) -> bytes | None:
        raise NotImplementedError

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._out) and not self._done:
            data = self._more()
            if data is None:
                self._done = True
                break
            self._out, self._pos = data, 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n


class _ZstdFrames(_ChunkedStream):
    """A ``.zst`` file decompressed frame after frame, refusing a stream that is cut short.

    ``zstandard``'s stream reader ends quietly where the input ends, even inside a frame,
    so a truncated download would read as a shorter file. Here the end of the input inside
    a frame is an :class:`EOFError` (the readers' "cut short" error). An empty file reads as
    empty, as ``gzip`` reads one.
    """

    def __init__(self, path: Path, block: int = 1 << 20) -> None:
        import zstandard

        self._fh = open(path, "rb")
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._block = block
        self._in_frame = False  # input of the current frame has been fed, its end not seen

    def _feed(self, data: bytes) -> bytes:
        parts = []
        while data:
            parts.append(self._obj.decompress(data))
            self._in_frame = True
            if not self._obj.eof:
                break
            self._in_frame = False
            data = self._obj.unused_data  # the next frame's first bytes, if any
            self._obj = self._dctx.decompressobj()
        return b"".join(parts)

    def _more(self) -> bytes | None:
        chunk = self._fh.read(self._block)
        if not chunk:
            if self._in_frame:
                raise EOFError("the zstd stream ends inside a frame: the file is cut short")
            return None
        return self._feed(chunk)

    def close(self) -> None:
        self._fh.close()
        super().close()


def _zstd_open(path: Path) -> IO[bytes]:
    # Buffered, so lines can be iterated.
    return io.BufferedReader(_ZstdFrames(path))


#: Inner file types the readers know, by suffix.
FILE_TYPES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")
#: Compression suffix -> how to open the file as a decompressed binary stream.
COMPRESSIONS: dict[str, Callable[[Path], IO[bytes]]] = {
    ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": _zstd_open}
#: Other names of an inner file type.
ALIASES = {".ndjson": ".jsonl"}
SUFFIXES = tuple(t + c for t in (*FILE_TYPES, *ALIASES) for c in ("", *COMPRESSIONS))
SUPPORTED = ".jsonl (.ndjson), .json, .parquet, .csv or .tsv, optionally compressed as .gz, .bz2, .xz or .zst"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# csv's default field limit (128 KiB) is below some real responses; one field may hold a
# whole conversation. sys.maxsize overflows a C long on some platforms, so 2**31 - 1.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
# A CSV cell decoded with errors="surrogateescape" holds these where the bytes were not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")
# A JSON escape of a UTF-16 surrogate: valid in pairs (an emoji), not alone.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """Where in a parsed JSON value a string holds an unpaired UTF-16 surrogate (``"\\ud800"``
    parses, but is not Unicode text: Arrow, Parquet and UTF-8 cannot hold it), else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "value"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and _lone_surrogate(key) is not None:
            return f"{path}.{key!r}" if path else "a field name"
        where = _lone_surrogate(item, f"{path}[{key}]" if isinstance(key, int) else
                                f"{path}.{key}" if path else str(key))
        if where is not None:
            return where
    return None


def _surrogate_error(where: str, **position: Any) -> PairDataError:
    field = re.split(r"[.\[]", where, maxsplit=1)[0]
    detail = "" if where == field else f" (at {where})"
    return PairDataError(f"an unpaired UTF-16 surrogate escape (\\ud800-\\udfff) is not valid text{detail}",
                         field=None if where in ("value", "a field name") else field, **position,
                         hint="the writer split an emoji or wrote broken escapes; fix or drop the row")


@dataclass
class RecordBatch:
    """Records read from one file (or one dataset split), with their positions."""

    name: str
    records: list[dict[str, Any]]
    positions: list[int]
    position_kind: str  # "line" (1-based) or "row" (0-based)
    rows: int = -1      # rows in the source, rejected ones included (-1: len(records))

    def __post_init__(self) -> None:
        if self.rows < 0:
            self.rows = len(self.records)

    def where(self, index: int) -> dict[str, Any]:
        """Keyword arguments locating record ``index`` for :class:`PairDataError`."""
        return {"file": self.name, self.position_kind: self.positions[index]}


def file_type(path: Path) -> tuple[str | None, str | None]:
    """``data.jsonl.gz`` -> ('.jsonl', '.gz'); ('.parquet', None); (None, ...) when unknown."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in COMPRESSIONS else None
    inner = suffixes[-2] if compression and len(suffixes) > 1 else (
        suffixes[-1] if suffixes and not compression else None)
    inner = ALIASES.get(inner, inner)
    return (inner if inner in FILE_TYPES else None), compression


#: Each compression's leading bytes: how a file is opened whatever its name says (bz2: ``BZh``
#: and the block size, a digit 1-9, so a text file opening with "BZh" is text).
_MAGIC = {".gz": b"\x1f\x8b", ".bz2": b"BZh", ".xz": b"\xfd7zXZ\x00", ".zst": b"\x28\xb5\x2f\xfd"}


def compression_of(path: Path) -> str | None:
    """How ``path`` is compressed, read from its first bytes: a gzip file named ``data.jsonl``
    (a download saved without its suffix) is decompressed, and a ``data.jsonl.gz`` a browser
    already decompressed is read as it is. The suffix decides for a file too short to tell
    (empty, or cut inside its compression's magic: reading then fails as the cut-short stream
    it is), and an ``.xz`` file in the older lzma-alone format (no magic; its first byte, the
    usual properties ``0x5D``, is ``]``, which no data file opens with) is read as ``.xz``."""
    suffix = file_type(path)[1]
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError:
        return suffix
    for compression, magic in _MAGIC.items():
        if head.startswith(magic) and (compression != ".bz2" or head[3:4].isdigit() and head[3:4] != b"0"):
            return compression
    if head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:  # a zstd skippable frame first
        return ".zst"
    if suffix is not None and len(head) < len(_MAGIC[suffix]) + (suffix == ".bz2") \
            and _MAGIC[suffix].startswith(head[:len(_MAGIC[suffix])]):
        return suffix
    if suffix == ".xz" and head[:1] == b"\x5d":
        return suffix
    return None


def is_saved_dataset(path: Path) -> bool:
    """A directory ``datasets.Dataset(Dict).save_to_disk`` wrote."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()))


#: A hub-style shard name, ``train_prefs-00000-of-00001`` (older uploads add ``-<hash>``):
#: its split is the part before the shard number.
_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}(?:-[0-9a-zA-Z]+)?$")
#: File names the hub reads as splits, as its data-file patterns do: ``train.jsonl``,
#: ``test_prefs.parquet``, ``train-1.jsonl`` (a numbered part of ``train``).
_SPLIT_WORD = re.compile(r"^(?P<split>(?:train|training|test|testing|valid|validation|dev|eval|evaluation)"
                         r"(?:_[a-z]+)*)(?:[-_.]?\d+\w*)?$", re.IGNORECASE)


def _stem(path: Path) -> str:
    """The name without its file-type and compression suffixes (``a.b.jsonl.gz`` -> ``a.b``)."""
    name = path.name
    if file_type(path)[1]:
        name = name.rsplit(".", 1)[0]
    return name.rsplit(".", 1)[0] if file_type(path)[0] else name


#: A split word inside a longer name, between separators, as the hub's data-file patterns find
#: it (``**[-._ 0-9/]train[-._ 0-9]*``): ``uf_train.jsonl``, ``dpo-eval.parquet``, ``hh_test_1.json``.
_SPLIT_INSIDE = re.compile(r"(?:^|[-._ ])(?P<split>train|training|test|testing|valid|validation|val|dev|eval"
                           r"|evaluation)(?=[-._ 0-9]|$)", re.IGNORECASE)


def split_of(path: Path) -> str | None:
    """The split a data file's name gives, as the hub names its files (``train_prefs`` for
    ``train_prefs-00000-of-00001.parquet``, ``test`` for ``test.jsonl.gz``, ``train`` for
    ``uf_train.jsonl``), else None."""
    stem = _stem(path)
    match = _SHARD.match(stem) or _SPLIT_WORD.match(stem) or _SPLIT_INSIDE.search(stem)
    return match["split"].lower() if match else None


def list_files(spec: str | Path, split: str | None = None) -> list[Path]:
    """The files a local spec names (a file, or a directory's data files sorted by name).

    A directory laid out as a hub dataset is published (``data/`` under the repository
    root; files named ``SPLIT-00000-of-00001.parquet``) is read one split at a time: ``split``
    picks the files whose names give that split, and several splits without ``split`` are an
    error rather than a merge (test rows must not leak into training).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        files = _data_files(path)
        if not files and _data_files(path / "data"):  # a hub dataset repository's root
            path, files = path / "data", _data_files(path / "data")
        if not files:
            subfolders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise PairDataError("directory holds no data files and is not a datasets "
                                "save_to_disk directory", file=str(path),
                                hint=(f"its subfolders are not read: name one, e.g. {path / subfolders[0]} "
                                      f"({len(subfolders)} subfolders: {', '.join(subfolders[:5])}"
                                      f"{', ...' if len(subfolders) > 5 else ''})") if subfolders
                                else f"put {SUPPORTED} files in it")
        splits = sorted({s for s in map(split_of, files) if s is not None})
        if split is not None:
            chosen = [f for f in files if split_of(f) == split.lower()]
            if not chosen and not splits:  # JSON objects of splits inside: each gives its own
                chosen = [f for f in files if file_type(f)[0] == ".json"
                          or file_type(f)[0] == ".jsonl" and _is_json_document(f)]
            if not chosen:
                raise PairDataError(f"no file of split '{split}' (file names give "
                                    + (f"the splits {', '.join(splits)})" if splits else "no split)"),
                                    file=str(path), field="--split",
                                    hint="pass one of those to --split, or name a file")
            return chosen
        unnamed = [f.name for f in files if split_of(f) is None]
        if len(splits) == 1 and unnamed and not splits[0].startswith("train"):
            raise PairDataError(f"holds the files of split '{splits[0]}' beside files whose names give no split "
                                f"({', '.join(unnamed[:3])}{', ...' if len(unnamed) > 3 else ''}); reading them "
                                "together could mix held-out rows into the rest", file=str(path), field="--split",
                                hint=f"pass --split {splits[0]} to read that split alone, or name a file")
        if len(splits) > 1:
            raise PairDataError(f"holds the files of {len(splits)} splits ({', '.join(splits)}); "
                                "reading them together would mix them", file=str(path), field="--split",
                                hint=f"pass --split {next((x for x in splits if x.lower().startswith('train')), splits[0])}"
                                     " (or another), or name a file")
        return files
    if path.exists():
        if file_type(path)[0] is None:
            suffix = "".join(path.suffixes[-2:]) or path.name
            raise PairDataError(f"unsupported file type '{suffix}'", file=str(path),
                                hint=f"use {SUPPORTED} (a compressed file names its type "
                                     "too, e.g. test.jsonl.gz)")
        named = split_of(path)
        if split is not None and named is not None and named != split.lower():
            raise PairDataError(f"its name gives the split '{named}', not '{split}'", file=str(path),
                                field="--split", hint=f"name the file of split '{split}', or pass --split {named}")
        return [path]
    raise PairDataError("no such file or directory", file=str(path))


#: Files a dataset folder carries beside its data (``datasets``' and the hub's metadata): never rows.
METADATA_FILES = frozenset({"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"})


def _data_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and file_type(p)[0]
                  and p.name.lower() not in METADATA_FILES)


def is_hub_id(spec: str) -> bool:
    """'org/name' or 'name' that is not a local path and has no data-file suffix."""
    return (not Path(spec).expanduser().exists() and not spec.lower().endswith(SUFFIXES)
            and not spec.startswith((".", "/", "~")) and bool(_HUB_ID.match(spec)))


# ---------------------------------------------------------------- files

#: A tar member header's "ustar" magic, at byte 257 of the archive (POSIX and GNU tar).
_TAR_MAGIC, _TAR_MAGIC_AT = b"ustar", 257


def _open(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed; a UTF-16 text file (a byte-order mark first: Excel's
    "Unicode text", PowerShell's default) is transcoded to UTF-8 as it is read."""
    compression = compression_of(path)
    fh = COMPRESSIONS[compression](path) if compression else open(path, "rb")
    try:
        first = fh.peek(_TAR_MAGIC_AT + len(_TAR_MAGIC))
    except (OSError, EOFError, ValueError, lzma.LZMAError):  # a broken container: read afresh, so
        fh.close()                                           # its reader meets (and names) the error
        return COMPRESSIONS[compression](path) if compression else open(path, "rb")
    archive = "tar" if first[_TAR_MAGIC_AT:_TAR_MAGIC_AT + len(_TAR_MAGIC)] == _TAR_MAGIC else \
        "zip" if first.startswith(b"PK\x03\x04") else None
    if archive:
        fh.close()
        raise PairDataError(f"is a {archive} archive{f' ({compression[1:]}-compressed)' if compression else ''}, "
                            "not a data file", file=str(path),
                            hint=f"extract it ({'tar -xf' if archive == 'tar' else 'unzip'}) and pass the "
                                 "data file or folder inside")
    head = first[:2]
    if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return io.BufferedReader(_Utf16AsUtf8(fh))
    return fh


def read_text_file(path: Path, field: str) -> str:
    """A whole text file as one string: decompressed, UTF-8 (a byte-order mark skipped) or
    UTF-16 with its byte-order mark. Anything else (missing, a folder, broken compression,
    bytes that are not UTF-8, a NUL byte) is a one-line :class:`PairDataError` naming the
    file, the line where it can, and ``field`` (the option that named the file)."""
    path = Path(path)
    if not path.exists():
        raise PairDataError("file not found", file=str(path), field=field)
    if path.is_dir():
        raise PairDataError("is a directory, not a text file", file=str(path), field=field)
    import zlib

    hint = "save it as UTF-8, or UTF-16 with its byte-order mark"
    try:
        with _open(path) as fh:
            data = fh.read()
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as err:
        raise PairDataError(f"cannot be read ({err})", file=str(path), field=field) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PairDataError(f"not valid UTF-8 ({err.reason})", file=str(path),
                            line=data[:err.start].count(b"\n") + 1, field=field, hint=hint) from None
    if "\x00" in text:  # valid UTF-8, but no text line holds a NUL: binary, or UTF-16 without its mark
        raise PairDataError("holds a NUL byte: not text", file=str(path),
                            line=text[:text.index("\x00")].count("\n") + 1, field=field, hint=hint)
    return text


class _Utf16AsUtf8(_ChunkedStream):
    """A UTF-16 byte stream (BOM first) read as UTF-8 bytes; an unpaired surrogate reads as U+FFFD."""

    def __init__(self, raw: IO[bytes], block: int = 1 << 16) -> None:
        self._raw, self._block = raw, block
        self._decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
        self._ended = False

    def _more(self) -> bytes | None:
        if self._ended:
            return None
        chunk = self._raw.read(self._block)
        self._ended = not chunk
        return self._decoder.decode(chunk, final=self._ended).encode("utf-8")

    def close(self) -> None:
        self._raw.close()
        super().close()


def _container_error(path: Path, err: BaseException) -> PairDataError:
    compression = compression_of(path)
    what = f"cannot decompress {compression}" if compression else "cannot read the file"
    return PairDataError(f"{what} ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})",
                         file=str(path), hint="the file is corrupt or cut short; download it again")


def read_file(path: Path, log: RejectLog, split: str | None = None) -> RecordBatch:
    """One local file -> its records (no layout logic here); unparseable rows go to ``log``.
    ``split`` picks one list of a JSON object of splits (``{"train": [...], "test": [...]}``)."""
    kind = file_type(path)[0]
    if kind in (".json", ".jsonl"):
        with _container_errors(path):
            return (_read_json if kind == ".json" else _read_jsonl)(path, log, split=split)
    readers = {".parquet": _read_parquet, ".jsonl": _read_jsonl, ".csv": _read_delimited, ".tsv": _read_delimited}
    with _container_errors(path):
        return readers[kind](path, log)


@contextmanager
def _container_errors(path: Path) -> Iterator[None]:
    """A broken archive or unreadable file is an error for the whole file, not a row."""
    try:
        yield
    except PairDataError:
        raise
    except (OSError, EOFError, lzma.LZMAError) as err:  # a broken archive or unreadable file
        raise _container_error(path, err) from None
    except Exception as err:  # zstandard.ZstdError and kin: still the container, not a row
        if type(err).__module__.startswith("zstandard"):
            raise _container_error(path, err) from None
        raise


#: Inner file types read line by line (so they can be read in chunks): the others
#: (Parquet, a JSON document) are containers read whole.
LINE_TYPES = (".jsonl", ".csv", ".tsv")


def is_line_file(spec: str | Path) -> bool:
    """A single local JSONL/CSV/TSV file (any compression): readable chunk by chunk."""
    path = Path(spec).expanduser()
    return path.is_file() and file_type(path)[0] in LINE_TYPES


def iter_record_batches(path: Path, log: RejectLog, chunk_rows: int, *, min_records: int = 0,
                        split: str | None = None) -> Iterator[tuple[RecordBatch, bool]]:
    """A JSONL/CSV/TSV file as batches of ``chunk_rows`` rows each: ``(batch, is_last)``.

    Rows are what the whole-file readers count (blank lines are not rows); a row that does
    not parse goes to ``log`` as it is met, so the caller can take each chunk's rejects
    from ``log`` before asking for the next. The first batch is extended until it holds
    ``min_records`` parsed records (or the file ends): the sample layout detection and field
    plans look at. ``is_last`` comes from reading one row ahead. A file without rows gives
    one empty batch.
    """
    rows_of = _jsonl_rows if file_type(path)[0] == ".jsonl" else _delimited_rows
    with _container_errors(path):
        if rows_of is _jsonl_rows and _is_json_document(path):  # a JSON array saved as .jsonl
            if _parses_as_json(path):  # else JSON lines after all, read in chunks below
                yield _read_json(path, log, split), True
                return
        rows = rows_of(path, log)
        ahead = next(rows, None)
        first = True
        while True:
            records, positions, n = [], [], 0
            while ahead is not None and (n < chunk_rows or (first and len(records) < min_records)):
                position, record = ahead
                n += 1
                if record is not None:
                    records.append(record)
                    positions.append(position)
                ahead = next(rows, None)
            yield RecordBatch(str(path), records, positions, "line", rows=n), ahead is None
            first = False
            if ahead is None:
                return


def count_lines(path: Path, stop_above: int | None = None, block: int = 1 << 22) -> int:
    """Newlines in a (decompressed) file, counted in 4 MiB blocks; stops once past ``stop_above``.

    A cheap upper bound of a line file's rows (blank lines and, in CSV, quoted cells that
    span lines count too) where no footer holds a row count.
    """
    n = 0
    with _container_errors(path), _open(path) as fh:
        while data := fh.read(block):
            n += data.count(b"\n")
            if stop_above is not None and n > stop_above:
                break
    return n


def _read_jsonl(path: Path, log: RejectLog, sniff: bool = True, split: str | None = None) -> RecordBatch:
    if sniff and _is_json_document(path):  # a (pretty-printed) JSON array or object named .jsonl
        return _read_json(path, log, split, lines_if_malformed=True)
    return _collect(str(path), _jsonl_rows(path, log))


def _is_json_document(path: Path) -> bool:
    """Whether a ``.jsonl`` file is one JSON document instead: its first non-blank line is
    ``[`` or ``{`` alone, or opens an array of objects (a JSON-lines row is an object on one line)."""
    with _open(path) as fh:
        for raw in fh:
            line = raw.removeprefix(codecs.BOM_UTF8).strip()
            if line:
                return line in (b"[", b"{") or re.match(rb"\[\s*\{", line) is not None
    return False


def _parses_as_json(path: Path) -> bool:
    with _open(path) as fh:
        data = fh.read()
    try:
        json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    return True


def _collect(name: str, rows: Iterator[tuple[int, dict[str, Any] | None]]) -> RecordBatch:
    """A whole file's rows (from a ``_*_rows`` generator) as one batch."""
    records, lines, n = [], [], 0
    for lineno, record in rows:
        n += 1
        if record is not None:
            records.append(record)
            lines.append(lineno)
    return RecordBatch(name, records, lines, "line", rows=n)


def _jsonl_rows(path: Path, log: RejectLog) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(line, record)`` per non-blank line; a line that is not a JSON object goes to
    ``log`` and gives ``(line, None)``."""
    with _open(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            if not raw.strip():
                continue
            where = {"file": str(path), "line": lineno}
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                log.add(PairDataError(f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                                      f"{err.start + 1})", **where,
                                      hint="re-encode the file as UTF-8"),
                        raw.decode("utf-8", "replace").rstrip("\r\n"))
                yield lineno, None
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                log.add(PairDataError(f"malformed JSON ({err.msg.removesuffix(' at')} at column {err.colno})", **where,
                                      hint="each line must be one complete JSON object"),
                        text.rstrip("\r\n"))
                yield lineno, None
                continue
            except (ValueError, RecursionError) as err:  # too deep, or an over-long integer
                log.add(PairDataError(f"malformed JSON ({type(err).__name__}: "
                                      f"{str(err)[:120] or 'nested too deeply'})", **where),
                        text.rstrip("\r\n"))
                yield lineno, None
                continue
            if not isinstance(record, dict):
                log.add(PairDataError(f"expected a JSON object, got {type(record).__name__}",
                                      **where), text.rstrip("\r\n"))
                yield lineno, None
                continue
            if _SURROGATE_ESCAPE.search(text) and (bad := _lone_surrogate(record)) is not None:
                log.add(_surrogate_error(bad, **where), text.rstrip("\r\n"))
                yield lineno, None
                continue
            yield lineno, record


#: Keys of a chat message (OpenAI, ShareGPT, content parts): a list of such dicts is one field.
_MESSAGE_KEYS = frozenset({"role", "from", "content", "value", "type"})


def _records_of_object(data: dict, path: Path, split: str | None) -> Any:
    """A top-level JSON object: ``{"data": [...]}`` style wrappers give their list; an object
    of splits (``{"train": [...], "test": [...]}``) gives the ``split`` asked for, and is an
    error without one (reading them together would mix them); any other object is one record.
    """
    lists = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)
             and not _MESSAGE_KEYS & set(v[0])}  # chat messages are a field of one record, not records
    named_splits = [k for k in lists if _SPLIT_WORD.match(str(k))]
    if split is not None and (len(lists) > 1 or split in lists or named_splits):
        if split not in lists:
            raise PairDataError(f"no split '{split}' in this JSON object (its lists of records: "
                                f"{', '.join(lists)})", file=str(path), field="--split",
                                hint="pass one of those to --split")
        return lists[split]
    if len(lists) > 1:
        names = list(lists)
        raise PairDataError(f"holds {len(lists)} lists of records ({', '.join(names)}); reading them "
                            "together would mix them", file=str(path), field="--split",
                            hint=f"pass --split {next((n for n in names if n.lower().startswith('train')), names[0])}"
                                 " (or another)")
    if len(lists) == 1 and len(data) <= 2:
        return next(iter(lists.values()))
    return [data]


def _read_json(path: Path, log: RejectLog, split: str | None = None, *, lines_if_malformed: bool = False
               ) -> RecordBatch:
    """A JSON document. ``lines_if_malformed``: a ``.jsonl`` file that only looked like one (its
    first line a lone ``{``) and does not parse as one is read as JSON lines, each line read
    or rejected."""
    with _open(path) as fh:
        data_bytes = fh.read()
    try:
        text = data_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if lines_if_malformed:
            return _read_jsonl(path, log, sniff=False)
        raise PairDataError("invalid UTF-8", file=str(path),
                            line=data_bytes[:err.start].count(b"\n") + 1,
                            hint="re-encode the file as UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" or lines_if_malformed:  # a .json file that is really JSON lines
            return _read_jsonl(path, log, sniff=False)
        raise PairDataError(f"malformed JSON ({err.msg.removesuffix(' at')} at column {err.colno})",
                            file=str(path), line=err.lineno) from None
    except (ValueError, RecursionError) as err:
        raise PairDataError(f"malformed JSON ({type(err).__name__})", file=str(path)) from None
    if isinstance(data, dict):
        data = _records_of_object(data, path, split)
    if not isinstance(data, list):
        raise PairDataError(f"expected a JSON list of objects, got {type(data).__name__}",
                            file=str(path))
    records, rows = [], []
    check = bool(_SURROGATE_ESCAPE.search(text))
    for i, record in enumerate(data):
        if check and isinstance(record, dict) and (bad := _lone_surrogate(record)) is not None:
            log.add(_surrogate_error(bad, file=str(path), row=i), json.dumps(record))
        elif isinstance(record, dict):
            records.append(record)
            rows.append(i)
        else:
            log.add(PairDataError(f"expected a JSON object, got {type(record).__name__}",
                                  file=str(path), row=i), record)
    return RecordBatch(str(path), records, rows, "row", rows=len(data))


def _read_parquet(path: Path, log: RejectLog) -> RecordBatch:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if compression_of(path):  # Parquet needs random access: decompress into memory
            with _open(path) as fh:
                table = pq.read_table(pa.BufferReader(fh.read()))
        else:
            table = pq.read_table(path)
    except (OSError, EOFError, lzma.LZMAError):
        raise
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise PairDataError(f"cannot read Parquet: {err}", file=str(path)) from None
    records = table.to_pylist()
    return RecordBatch(str(path), records, list(range(len(records))), "row")


def _read_delimited(path: Path, log: RejectLog) -> RecordBatch:
    return _collect(str(path), _delimited_rows(path, log))


def _delimited_rows(path: Path, log: RejectLog) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """CSV (``,``) or TSV (tab), with a header row; every value is read as text.

    A cell holding a message list (``[{"role": ..., "content": ...}]``, in JSON or in the
    Python repr ``pandas.to_csv`` writes) is read as that list, so a conversational dataset
    saved as CSV keeps its turns. ``(line, record)`` per row, ``(line, None)`` for a row that goes to ``log``. The csv
    module rather than ``pandas.read_csv``: it reports the line each row starts on (quoted
    cells may span lines) and hands over a malformed row instead of skipping it, so every
    row is read or rejected with its line. Numbers in score columns are parsed later, like
    numeric strings in JSON.
    """
    delimiter = "\t" if file_type(path)[0] == ".tsv" else ","
    with _open(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig",
                                              errors="surrogateescape", newline="") as fh:
        first = fh.readline()
        if delimiter == "," and _semicolon_header(first):
            delimiter = ";"  # a spreadsheet's CSV export in locales with a decimal comma
        lines = _Lines(first, fh)
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                return
            _check_header(header, path)
            lines.take()
            start = lines.line + 1
            for values in reader:
                used = lines.take()
                lineno, start = start, lines.line + 1
                if not values:
                    continue  # a blank line is not a row
                stray = False
                if '"' in used[0]:
                    values, used, stray = _stray_quotes(values, used, header, delimiter, lines)
                    start = lines.line + 1
                if any(_CR in v for v in values):
                    values = [v.replace(_CR, "\r") for v in values]
                where = {"file": str(path), "line": lineno}
                text = delimiter.join(values)
                if len(values) != len(header):
                    spans = len(used) - 1  # physical lines this record took
                    quote = (f"; it runs over {spans + 1} lines, so a quote opened on line {lineno} may "
                             "never close" if spans > 0 and len(values) < len(header) else
                             f"; a quote opened on line {lineno} never closes" if stray else "")
                    log.add(PairDataError(f"expected {len(header)} fields (as the header), got "
                                          f"{len(values)}{quote}", **where,
                                          hint="close every quote, and quote cells that contain the delimiter"),
                            _UNDECODED.sub("\ufffd", text))
                    yield lineno, None
                    continue
                bad = next((h for h, v in zip(header, values) if _UNDECODED.search(v)), None)
                if bad is not None:
                    log.add(PairDataError("invalid UTF-8", field=bad, **where,
                                          hint="re-encode the file as UTF-8"),
                            _UNDECODED.sub("\ufffd", text))
                    yield lineno, None
                    continue
                yield lineno, {h: _message_cell(v) for h, v in zip(header, values)}
        except csv.Error as err:  # e.g. a NUL byte: the reader cannot go on past it
            raise PairDataError(f"malformed {file_type(path)[0][1:].upper()} ({err})",
                                file=str(path), line=lines.line) from None


#: Stands for a lone CR inside a cell while the csv module splits a record: a lone surrogate
#: no decoded text holds (undecodable bytes escape to U+DC80-U+DCFF only).
_CR = "\ud800"


def _stray_quotes(values: list[str], used: list[str], header: list[str], delimiter: str,
                  lines: "_Lines") -> tuple[list[str], list[str], bool]:
    """A record whose first line holds a quote: (values, its lines, whether a stray quote
    swallowed lines, now handed back to be read again).

    A quote can be text, not CSV quoting: a cell such as '"Quoted" text', or a cell opening
    with '"' in a file that does not quote (as many TSV writers do). Read as quoting it drops
    quotes or swallows the lines after it into one cell. The record's first line is then read
    alone, its quotes as text, and the swallowed lines as the rows they are, when:

    * one line, not quoted as CSV quotes: read literally when that gives the header's count;
    * several lines, not quoted as CSV quotes: when the csv module's reading has the wrong
      count, or when the first line alone has the header's count and a swallowed line does
      too (it is a row); else the csv module's reading stands (one sloppy multi-line cell);
    * several lines quoted well, in a TSV only: when the first line alone has the header's
      count and so does every swallowed line, at least two, each with a first cell (a quote that
      a later '"', an inch mark, happened to close); a multi-line cell of tab-indented text stays
      one. (A well-quoted TSV cell of two or more lines that each hold the header's count of
      tab-separated text, a first one included, would be read as rows: no reader can tell.)
    """
    n = len(header)
    if len(used) == 1:
        if not _quotes_well_formed(used, delimiter):
            literal = _literal_quotes(used[0], delimiter)
            if len(literal) == n:
                return literal, used, False
        return values, used, False
    formed = _quotes_well_formed(used, delimiter)
    if formed and delimiter != "\t":
        return values, used, False
    literal = _literal_quotes(used[0], delimiter)
    if len(literal) == n:
        inside = [_literal_quotes(line, delimiter) for line in used[1:]]
        looks_like_row = [len(cells) == n and cells[0].strip() != "" for cells in inside]
        # quoting that breaks: one swallowed row is evidence enough; well-formed TSV quoting (a
        # pandas TSV's multi-line cell, tab-indented code) only when every swallowed line is a row
        rows_inside = (len(inside) >= 2 and all(looks_like_row)) if formed else any(looks_like_row)
    else:
        rows_inside = False
    if rows_inside or (not formed and len(values) != n):
        lines.push_back(used[1:])
        return literal, used[:1], True
    return values, used, False


class _Lines:
    """A delimited file's physical lines for ``csv.reader``: it keeps the lines each record
    took (:meth:`take`) and can hand lines back to be read again (:meth:`push_back`); ``line``
    counts the lines consumed, net of those handed back (the reader's own ``line_num`` would
    count them twice)."""

    def __init__(self, first: str, rest: Iterator[str]):
        self._lines = itertools.chain([first], rest)
        self._pending: collections.deque[str] = collections.deque()
        self._taken: list[str] = []
        self.line = 0
        # A lone CR ends a line only in a file whose lines all end so (old Mac exports): the
        # header says which. Elsewhere it is a character inside a cell, held as _CR until
        # the reader has split the record (the csv module would end the record at it).
        self._cr_ends_lines = first.endswith("\r")

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self._pending.popleft() if self._pending else next(self._lines)
        while not self._cr_ends_lines and line.endswith("\r"):
            more = next(self._lines, None)
            if more is None:
                break
            line = line[:-1] + _CR + more
        self._taken.append(line)
        self.line += 1
        return line

    def take(self) -> list[str]:
        taken, self._taken = self._taken, []
        return taken

    def push_back(self, lines: list[str]) -> None:
        self._pending.extendleft(reversed(lines))
        self.line -= len(lines)


def _quotes_well_formed(lines: list[str], delimiter: str) -> bool:
    """Whether one record's lines quote their cells as CSV does: a quoted cell is the whole
    cell, its inner quotes doubled, and the quote closes."""
    try:
        return len(list(csv.reader(lines, delimiter=delimiter, strict=True))) == 1
    except csv.Error:
        return False


def _literal_quotes(line: str, delimiter: str) -> list[str]:
    """One physical line split on the delimiter with quotes read as text."""
    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])


def _semicolon_header(line: str) -> bool:
    """A header row separated by ``;`` and holding no ``,`` (Excel's CSV where the decimal
    separator is a comma): read with ``;``."""
    try:
        names = next(csv.reader([line], delimiter=";"))
    except (csv.Error, StopIteration):
        return False
    return len(names) > 1 and "," not in line and all(n.strip() for n in names)


def _message_cell(value: str) -> Any:
    """A CSV cell holding a message list, as ``to_csv`` writes one (JSON, or the Python
    repr pandas writes for a list of dicts), parsed into that list; any other cell as is.
    ShareGPT's ``{"from", "value"}`` messages count as messages too."""
    text = value.strip()
    if not (text.startswith("[{") and text.endswith("}]")
            and (("role" in text and "content" in text) or ("from" in text and "value" in text))):
        return value
    import ast

    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(parsed, list) and parsed and all(
                isinstance(m, dict) and (("role" in m and "content" in m) or ("from" in m and "value" in m))
                for m in parsed):
            return parsed
    return value


def _check_header(header: list[str], path: Path) -> None:
    """Strip the names; an empty one is named ``Unnamed: I`` as pandas names it (the index
    column ``DataFrame.to_csv`` writes first, a trailing delimiter on every line as spreadsheets
    export it): an extra column, carried like any other."""
    names = [h.strip() or f"Unnamed: {i}" for i, h in enumerate(header)]
    problem = ("invalid UTF-8" if any(_UNDECODED.search(h) for h in names) else
               f"column '{next(h for h in names if names.count(h) > 1)}' twice"
               if len(set(names)) != len(names) else None)
    if problem:
        raise PairDataError(f"header row has {problem}", file=str(path), line=1,
                            hint="the first line must name every column once")
    header[:] = names


# ---------------------------------------------------------------- datasets (disk and hub)

def read_saved(path: Path, split: str | None) -> RecordBatch:
    """A ``datasets`` ``save_to_disk`` directory (a Dataset, or a DatasetDict with ``split``)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # a partial or foreign directory
        raise PairDataError(f"cannot load saved dataset ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200] if str(err) else ''})",
                            file=str(path)) from None
    return _dataset_batch(loaded, str(path), split)


def read_hub(dataset_id: str, split: str | None, config: str | None = None,
             revision: str | None = None) -> RecordBatch:
    """A hub dataset split via ``datasets.load_dataset`` (needs network or a warm cache)."""
    # Not a local path, no network and not in the hub cache: most likely a mistyped path.
    # Say so at once (datasets would retry the network for ~25 s). In HF offline mode
    # datasets itself only looks in the cache, which is quick.
    if not (_offline_mode() or _env_offline()) and not _in_hub_cache(dataset_id) and not _hub_reachable():
        raise PairDataError(
            "cannot load hub dataset: no such local file or directory, and the hub is unreachable "
            "(no network)", file=dataset_id,
            hint="check the path; download a hub dataset where there is network and pass the local "
                 ".parquet/.jsonl file")
    try:
        import datasets

        named = {k: v for k, v in (("name", config), ("revision", revision)) if v is not None}
        loaded = datasets.load_dataset(dataset_id, split=split, **named)
    except Exception as err:  # offline, unknown id, bad split: all end the same way for a user
        offline = _offline_mode()
        raise PairDataError(
            f"cannot load hub dataset ({type(err).__name__}: {str(err).splitlines()[0][:300]})",
            file=dataset_id,
            hint=("not a local file or directory, HF offline mode is on and the dataset is not cached; "
                  if offline else
                  "no network, a wrong id, --hub-config, --hub-revision or --split? ")
            + "download it where there is network and pass the local .parquet/.jsonl file",
        ) from None
    name = dataset_id + (f":{config}" if config else "") + (f"@{revision}" if revision else "")
    return _dataset_batch(loaded, name, split)


def _dataset_batch(loaded: Any, name: str, split: str | None) -> RecordBatch:
    if hasattr(loaded, "keys") and not hasattr(loaded, "features"):  # a DatasetDict
        splits = list(loaded)
        if split in splits:
            loaded = loaded[split]
        elif len(splits) == 1 and split is None:
            split, loaded = splits[0], loaded[splits[0]]
        else:
            raise PairDataError(f"name a split with --split (available: {', '.join(splits)})",
                                file=name, field="split")
    else:  # one Dataset: a split it names must be the one asked for
        own = getattr(loaded, "split", None)
        if split is not None and own is not None and str(own).lower() != split.lower():
            raise PairDataError(f"is the saved split '{own}', not '{split}'", file=name, field="--split",
                                hint=f"pass --split {own}, or name the dataset of split '{split}'")
    records = loaded.to_list()
    return RecordBatch(f"{name}[{split}]" if split else name, records,
                       list(range(len(records))), "row")


def _env_offline() -> bool:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE as set now (huggingface_hub reads them at import)."""
    import os

    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _in_hub_cache(dataset_id: str) -> bool:
    """Whether ``datasets`` may find the dataset without network (hub or datasets cache)."""
    import os

    try:
        from huggingface_hub import constants
    except Exception:  # pragma: no cover - huggingface_hub always ships with datasets
        return False
    datasets_cache = os.environ.get("HF_DATASETS_CACHE") or os.path.join(constants.HF_HOME, "datasets")
    return (Path(constants.HF_HUB_CACHE, "datasets--" + dataset_id.replace("/", "--")).exists()
            or Path(datasets_cache, dataset_id.replace("/", "___")).exists())


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub endpoint (seconds at most, once per process)."""
    global _REACHABLE
    if _REACHABLE is None:
        import socket
        from urllib.parse import urlparse

        try:
            from huggingface_hub import constants

            url = urlparse(constants.ENDPOINT)
        except Exception:  # pragma: no cover
            url = urlparse("https://huggingface.co")
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
            _REACHABLE = True
        except OSError:
            _REACHABLE = False
    return _REACHABLE


_REACHABLE: bool | None = None


def _offline_mode() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with datasets
        return False
