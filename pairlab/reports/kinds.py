"""`render_report(DIR)`: find out what kind of directory DIR is and render its report.

A kind is registered with :func:`register`: a name, the manifest ``stage`` values that
mean it, the files that identify it when there is no manifest, an HTML renderer and a
JSON summarizer: eval, run, curation, ablation and audit directories are registered below;
stages that have no report yet are named in :data:`UNSUPPORTED_STAGES` so the error
says "not supported yet" instead of "unknown".
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import artifacts
from ..dirs import GENERIC_REPORTS, STAGE_DIRS, AblationDir, AuditDir, CurateDir, EvalDir, RunDir, is_unfinished, verify
from ..errors import ReportError  # noqa: F401  (the reports import it from here)

FORMATS = ("html", "json")
#: Stages pairlab writes whose reports are not built yet.
UNSUPPORTED_STAGES = ("compare",)


@dataclass
class ReportKind:
    name: str
    stages: tuple[str, ...]
    #: Files whose presence identifies the kind when the manifest is missing or says nothing.
    marker_files: tuple[str, ...]
    render_html: Callable[..., Path]  # (dir, out, **options) -> written path
    summarize: Callable[..., dict[str, Any]]  # (dir, **options) -> JSON-able dict
    html_name: str = GENERIC_REPORTS[0]  # report.html
    options: tuple[str, ...] = field(default_factory=tuple)  # keyword options it accepts


REPORT_KINDS: dict[str, ReportKind] = {}


def register(kind: ReportKind) -> ReportKind:
    REPORT_KINDS[kind.name] = kind
    return kind


def detect_kind(directory: str | os.PathLike) -> ReportKind:
    """The registered kind of ``directory``: by manifest ``stage``, else by marker files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError("not a directory", file=str(directory),
                          hint="pass a run, eval or curation directory written by pairlab")
    stage = None
    if (directory / artifacts.MANIFEST).exists():
        try:
            stage = artifacts.read_manifest(directory).get("stage")
        except ValueError as err:
            raise ReportError(f"unreadable manifest: {err}", file=str(directory / artifacts.MANIFEST)) from None
    if stage is not None:
        for kind in REPORT_KINDS.values():
            if stage in kind.stages:
                return kind
        if stage in UNSUPPORTED_STAGES:
            raise ReportError(f"reports for '{stage}' directories are not supported yet",
                              file=str(directory), hint=f"supported kinds: {', '.join(REPORT_KINDS)}")
    for kind in REPORT_KINDS.values():
        if kind.marker_files and all((directory / f).exists() for f in kind.marker_files):
            return kind
    if stage is None and is_unfinished(directory):  # a stage killed while writing: say so
        verify(directory)  # raises: incomplete, and how to redo it
    what = f"manifest stage '{stage}'" if stage is not None else "no manifest.json and no known files"
    raise ReportError(f"cannot tell what kind of directory this is ({what}); report kind not supported yet",
                      file=str(directory),
                      hint="supported: " + "; ".join(f"{k.name} (stage {'/'.join(k.stages)})"
                                                     for k in REPORT_KINDS.values()))


def render_report(directory: str | os.PathLike, out: str | os.PathLike | None = None,
                  format: str = "html", **options: Any) -> Path:
    """Render the report of a run, eval or curation directory; returns the written file.

    Parameters
    ----------
    directory : a directory written by `pairlab train`, `evaluate` or `curate`.
    out : output file; default ``DIR/report.html`` (``DIR/curation.html`` for curation)
        or ``DIR/report.json``.
    format : ``html`` (self-contained page) or ``json`` (machine-readable summary).
    options : kind-specific, e.g. ``baseline=OTHER_EVAL_DIR`` for eval reports.
    """
    if format not in FORMATS:
        raise ReportError(f"unknown format '{format}'", field="format", hint=f"use one of {FORMATS}")
    kind = detect_kind(directory)
    missing = [f for f in kind.marker_files if not (Path(directory) / f).exists()]
    if missing:
        raise ReportError(f"a {kind.name} directory without {', '.join(missing)}: its stage has not "
                          "finished (or wrote elsewhere)", file=str(directory),
                          hint="re-run the stage into this directory, then report")
    options = _options(kind, directory, options)
    verify_dir(directory, kind)
    if format == "json":
        path = Path(out) if out is not None else Path(directory) / "report.json"
        return artifacts.write_json(path, report_summary(directory, kind=kind, **options))
    path = Path(out) if out is not None else Path(directory) / kind.html_name
    return kind.render_html(directory, path, **options)


def report_summary(directory: str | os.PathLike, kind: ReportKind | None = None, **options: Any) -> dict[str, Any]:
    """The JSON summary as a dict (what ``--format json`` writes)."""
    from .render import json_safe

    kind = kind or detect_kind(directory)
    verify_dir(directory, kind)
    return json_safe(kind.summarize(directory, **_options(kind, directory, options)))


def verify_dir(directory: str | os.PathLike, kind: ReportKind) -> None:
    """Refuse an incomplete or changed directory (reports show only what a stage finished)."""
    for stage in kind.stages:
        if stage in STAGE_DIRS:
            STAGE_DIRS[stage].verify(directory)
            return


def _options(kind: ReportKind, directory: str | os.PathLike, options: dict[str, Any]) -> dict[str, Any]:
    """The options that were given (not None), after checking that ``kind`` takes them."""
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(kind.options))
    if unknown:
        raise ReportError(f"option(s) {unknown} do not apply to {kind.name} reports", file=str(directory))
    if given.get("baseline") is not None:  # read like any stage input: complete and unchanged
        if Path(given["baseline"]).resolve() == Path(directory).resolve():
            raise ReportError("the baseline is the evaluation being reported", file=str(given["baseline"]),
                              field="--baseline", hint="pass another evaluation of the same pairs")
        STAGE_DIRS["evaluate"].verify(given["baseline"])
    return given


# ---------------------------------------------------------------- the kinds built so far

def _eval_html(directory, out, **options):
    from .eval_report import render_eval_report

    return render_eval_report(directory, out, **options)


def _eval_json(directory, **options):
    from .eval_report import eval_summary

    return eval_summary(directory, **options)


def _run_html(directory, out, **options):
    from .run_report import render_run_report

    return render_run_report(directory, out)


def _run_json(directory, **options):
    from .run_report import run_summary

    return run_summary(directory)


def _curation_html(directory, out, **options):
    from .curation import report_from_dir

    return report_from_dir(directory, out)


def _curation_json(directory, **options):
    directory = Path(directory)
    manifest = artifacts.read_manifest(directory) if (directory / artifacts.MANIFEST).exists() else {}
    return {"kind": "curation", "dir": str(directory),
            "html": str(directory / CurateDir.REPORT) if (directory / CurateDir.REPORT).exists() else None,
            "outputs": manifest.get("outputs"), "manifest": manifest}


register(ReportKind("eval", ("evaluate", "eval", "evaluation"), (EvalDir.PER_PAIR, EvalDir.METRICS),
                    _eval_html, _eval_json, options=("baseline",)))
register(ReportKind("run", ("train",), (RunDir.TRAIN_LOG,), _run_html, _run_json))
register(ReportKind("curation", ("curate", "curation"), (CurateDir.PAIRS, CurateDir.DROPPED),
                    _curation_html, _curation_json, html_name=CurateDir.REPORT))


def _ablation_html(directory, out, **options):
    from .ablation_report import write_ablation_report

    return write_ablation_report(directory, out)


def _ablation_json(directory, **options):
    from .ablation_report import ablation_summary

    return ablation_summary(directory)


register(ReportKind("ablation", ("ablate",), (AblationDir.COMPARISON, AblationDir.CONFIG),
                    _ablation_html, _ablation_json))


def _audit_html(directory, out, **options):
    from .audit_report import render_audit

    return render_audit(directory, out)


def _audit_json(directory, **options):
    from .audit_report import audit_summary

    return audit_summary(directory)


register(ReportKind("audit", ("audit",), (AuditDir.ATTRIBUTION,), _audit_html, _audit_json,
                    html_name=AuditDir.REPORT))
