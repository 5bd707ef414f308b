"""A report that fails to render is never silent: the result carries why, the command's
summary states it (with how to retry), and the evaluation's own files stay complete."""
from __future__ import annotations

import logging

import pytest

from pairlab.evaluate.runner import write_report


def test_write_report_returns_why_it_failed(tmp_path, caplog):
    not_an_eval = tmp_path / "empty"
    not_an_eval.mkdir()
    with caplog.at_level(logging.WARNING, logger="pairlab.evaluate.runner"):
        path, why = write_report(not_an_eval)
    assert path is None
    assert why.startswith("ReportError: ") and str(not_an_eval) in why
    assert any("report not written" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_evaluate_summary_states_a_failed_report(tiny_run, eval_file, work, monkeypatch, capsys):
    """The renderer is made to fail (a stand-in for any rendering bug); the real evaluation runs."""
    import pairlab.reports  # noqa: F401  (registers the renderers first, so the stand-in is not replaced)
    from pairlab import rendering
    from pairlab.cli import main
    from pairlab.errors import ReportError

    def broken(directory, *args, **kwargs):
        raise ReportError("simulated rendering failure", file=str(directory))

    monkeypatch.setitem(rendering.RENDERERS, "eval", broken)  # what `pairlab evaluate` calls
    out = work / "eval_report_fails"
    code = main(["evaluate", "--run", str(tiny_run), "--eval", str(eval_file), "--out", str(out),
                 "--batch-size", "4", "--no-generate"])
    captured = capsys.readouterr()
    assert code == 0  # the evaluation itself is complete and valid
    assert (out / "metrics.json").exists() and (out / "per_pair.parquet").exists()
    assert not (out / "report.html").exists()
    assert "report NOT written (ReportError:" in captured.err and "simulated rendering failure" in captured.err
    assert f"pairlab report {out}" in captured.err
