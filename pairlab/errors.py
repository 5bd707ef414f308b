"""pairlab's one error hierarchy: every error a user can cause and fix.

::

    PairlabError            exit code 2; message names the file, line/row and field
    ├── DataError           bad preference data (alias: pairlab.schema.PairDataError)
    ├── ConfigError         a config file, an override or a flag is wrong
    ├── ModelError          a model spec cannot be resolved or loaded
    └── ReportError         a directory cannot be reported on

The CLI prints ``str(err)`` on one line and exits with :data:`EXIT_USER_ERROR`, no
traceback. Anything else that escapes a command is a bug in pairlab: the CLI shows
its traceback and asks for a report (:data:`EXIT_INTERNAL_ERROR`).

The base derives from ``ValueError`` because callers (and pandas/argparse habits)
catch bad values as ``ValueError``; the classes predate this module and kept that.
"""
from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


class PairlabError(ValueError):
    """A user-fixable error: names the file, the line/row and the field, and says how to fix it."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, hint: str | None = None, row: int | None = None):
        # ``line`` is a 1-based text line (JSONL, YAML); ``row`` a 0-based record index
        # (Parquet, JSON arrays, hub datasets: what ``df.iloc[row]`` / ``ds[row]`` shows).
        self.file, self.line, self.field, self.hint, self.row = file, line, field, hint, row
        self.message = message
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        text = (": ".join([", ".join(where), message]) if where else message)
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class DataError(PairlabError):
    """Bad preference data (a row, a column, a file that is not what it claims)."""


class ConfigError(PairlabError):
    """A config file, a ``--set`` override or a flag is wrong (unknown key, bad value, out of range)."""


class ModelError(PairlabError):
    """A model spec cannot be resolved or loaded."""


class ReportError(PairlabError):
    """A directory that cannot be reported on."""


def os_error_message(err: OSError) -> str:
    """One line for an OSError on a user's path: ``PATH: reason``, naming both paths of a rename.

    ``--out a_file/sub`` fails in ``mkdir`` with "File exists" or "Not a directory"; the
    message then says which part of the path is a file.
    """
    from pathlib import Path

    reason = err.strerror or type(err).__name__
    paths = [p for p in (err.filename, getattr(err, "filename2", None)) if p is not None]
    if isinstance(err, (FileExistsError, NotADirectoryError)) and paths:
        for part in [Path(paths[0]), *Path(paths[0]).parents]:
            if part.is_file():
                which = "" if part == Path(paths[0]) else f"{part} "
                return f"{paths[0]}: {which}is a file, not a directory"
    return f"{' -> '.join(map(str, paths))}: {reason}" if paths else str(err) or reason
