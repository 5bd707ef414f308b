"""A quiet console: library notices a pairlab user cannot act on stay off the terminal.

The CLI calls :func:`quiet_console` once at its entry point. Log records and Python
warnings then reach the terminal through one stderr handler on the root logger, which
drops the notices in :data:`CONSOLE_NOISE`. They are filtered on the *console handler*,
not on their loggers, so a stage that writes a ``log.txt`` (``ablate``'s ``run_log``
attaches its file handler to these loggers) still records them.
"""
from __future__ import annotations

import logging
import sys

#: (logger name prefix, text in the message) of notices kept off the console.
CONSOLE_NOISE: tuple[tuple[str, str], ...] = (
    # bitsandbytes looks for an optional CPU kernel on the hub on AVX512-BF16 CPUs and warns
    # when it cannot get it (always, offline); its built-in kernel is used instead.
    ("bitsandbytes", "Failed to load CPU gemm_4bit_forward"),
    # transformers / TRL deprecation notices about their own internals (logging.captureWarnings
    # routes warnings to the 'py.warnings' logger, formatted as 'file:line: Category: text').
    ("py.warnings", "FutureWarning: "),
)


class LibraryNoticeFilter(logging.Filter):
    """Rejects the records :data:`CONSOLE_NOISE` names."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(record.name.startswith(name) and text in message
                       for name, text in CONSOLE_NOISE)


class _ConsoleHandler(logging.StreamHandler):
    """stderr as it is *now* (pytest's capsys and the like swap sys.stderr per test)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def quiet_console() -> None:
    """Route warnings to logging and show log records on stderr without library noise.

    Idempotent (``pairlab.cli.main`` may run many times in one process). The handler
    formats as Python's last-resort handler does (the bare message, WARNING and up), so
    everything else looks as before.
    """
    logging.captureWarnings(True)
    root = logging.getLogger()
    if any(isinstance(h, _ConsoleHandler) for h in root.handlers):
        return
    handler = _ConsoleHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(LibraryNoticeFilter())
    root.addHandler(handler)
