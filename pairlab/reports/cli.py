"""`pairlab report DIR`: render the report of a run, eval or curation directory."""
from __future__ import annotations

import argparse
import sys

from ..cli import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR",
                        help="a directory written by `pairlab train`, `pairlab evaluate` or `pairlab curate`")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="file to write (default DIR/report.html, DIR/report.json, or DIR/curation.html "
                             "for a curation directory); '-' prints JSON to stdout")
    parser.add_argument("--format", choices=("html", "json"), default="html",
                        help="html: one self-contained page; json: a machine-readable summary")
    parser.add_argument("--baseline", default=None, metavar="EVAL_DIR",
                        help="eval reports only: another evaluation of the same pairs to compare accuracy "
                             "with (paired bootstrap CI and McNemar test)")


def _run(args: argparse.Namespace) -> int:
    from . import render_report, report_summary
    from .kinds import ReportError

    if args.out == "-":
        if args.format != "json":
            raise ReportError("--out - (stdout) needs --format json", field="--out")
        from .. import artifacts

        print(artifacts.to_json(report_summary(args.dir, baseline=args.baseline)))
        return 0
    path = render_report(args.dir, args.out, format=args.format, baseline=args.baseline)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1024:,.0f} KiB)", file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


COMMANDS = [
    Command("report", "render a self-contained HTML report (or JSON summary) of a run/eval/curation dir",
            _arguments, _run,
            description="Render DIR's report: for an eval directory a verdict with CIs, training curves, "
                        "reward and margin histograms, calibration, per-source / rating-gap / length-bias "
                        "tables, best and worst pairs, base | aligned generations and a pair explorer; "
                        "for a run directory its training curves, dynamics and manifest; for a curation "
                        "directory the curation report. One HTML file, no network."),
]
