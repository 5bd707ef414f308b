"""Self-contained HTML reports (and JSON summaries) for run, eval and curation directories.

* :func:`render_report` - ``DIR`` -> ``DIR/report.html`` (or ``--format json``), by directory kind.
* :func:`report_summary` - the JSON summary as a dict.
* :data:`REPORT_KINDS` / :func:`register` - the kinds known so far (eval, run, curation).
"""
from .kinds import REPORT_KINDS, ReportError, ReportKind, detect_kind, register, render_report, report_summary

__all__ = ["REPORT_KINDS", "ReportError", "ReportKind", "detect_kind", "register", "render_report",
           "report_summary"]
