"""The run report and the run half of the JSON summary."""
from __future__ import annotations

import json

import report_fixtures as fx

from pairlab.reports import render_report


def test_run_report_sections(tmp_path):
    run = fx.write_run_dir(tmp_path / "run")
    html = render_report(run).read_text(encoding="utf-8")
    assert '<section id="training">' in html and '<section id="headline">' in html
    assert html.count("data:image/png;base64,") == 2  # curves, margin shift
    for text in ("Per-pair dynamics", "reward accuracy", "learning rate", "smollm2-135m-instruct",
                 "train manifest", "script-src &#39;none&#39;"):
        assert text in html, text
    assert "<script" not in html


def test_run_report_json(tmp_path):
    run = fx.write_run_dir(tmp_path / "run", steps=8)
    path = render_report(run, format="json")
    summary = json.loads(path.read_text())
    assert path == run / "report.json"
    assert summary["kind"] == "run" and summary["n_logged_steps"] == 8
    assert summary["settings"]["beta"] == 0.1
    assert summary["dynamics"]["moves"]["pairs"] == 64
    assert summary["final_step"]["step"] == 8
