"""Self-contained HTML reports (and JSON summaries) for run, eval and curation directories.

* :func:`render_report` - ``DIR`` -> ``DIR/report.html`` (or ``--format json``), by directory kind.
* :func:`report_summary` - the JSON summary as a dict.
* :data:`REPORT_KINDS` / :func:`register` - the kinds known so far (eval, run, curation).
"""
from ..rendering import register_renderer
from .audit_report import render_audit
from .curation import write_curation_report
from .kinds import REPORT_KINDS, ReportError, ReportKind, detect_kind, register, render_report, report_summary

# The stages ask for their reports through pairlab.rendering (they never import this package).
register_renderer("curation")(write_curation_report)
register_renderer("eval")(render_report)
register_renderer("audit")(render_audit)

__all__ = ["REPORT_KINDS", "ReportError", "ReportKind", "detect_kind", "register", "render_report",
           "report_summary"]
