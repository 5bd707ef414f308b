"""`pairlab report DIR`: formats, stdout JSON, and clear errors for directories it cannot report on."""
from __future__ import annotations

import json

import pytest
import report_fixtures as fx

from pairlab import artifacts
from pairlab.cli import main
from pairlab.reports import ReportError, detect_kind, render_report


def test_report_json_for_machines(tmp_path, capsys):
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=50)
    out = tmp_path / "summary.json"
    assert main(["report", str(eval_dir), "--format", "json", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["kind"] == "eval" and summary["metrics"]["n_pairs"] == 50
    assert summary["verdict"].startswith("DPO ")
    assert set(summary["headline"]) >= {"preference accuracy", "reference-free accuracy", "calibration ECE"}
    assert len(summary["best_pairs"]) == 5 and summary["generations"]["mode"] == "greedy"

    capsys.readouterr()
    assert main(["report", str(eval_dir), "--format", "json", "--out", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "eval"


def test_report_html_default_path(tmp_path, capsys):
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=30)
    assert main(["report", str(eval_dir)]) == 0
    assert (eval_dir / "report.html").exists()
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize("stage, message", [("audit", "attribution.parquet"), ("ablate", "comparison.json"),
                                            ("compare", "not supported yet"), ("mystery", "not supported yet")])
def test_unknown_kinds_exit_2(tmp_path, capsys, stage, message):
    artifacts.write_manifest(tmp_path, stage=stage, config={})
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and str(tmp_path) in err


def test_plain_directory_and_missing_directory(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi")
    assert main(["report", str(tmp_path)]) == 2
    assert "cannot tell what kind of directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_kind_detection_without_manifest_and_bad_options(tmp_path):
    run = fx.write_run_dir(tmp_path / "run")
    (run / "manifest.json").unlink()
    assert detect_kind(run).name == "run"
    with pytest.raises(ReportError, match="do not apply to run reports"):
        render_report(run, baseline=tmp_path)
    with pytest.raises(ReportError, match="unknown format"):
        render_report(run, format="pdf")


def test_curation_directory_uses_the_curation_report(tmp_path, monkeypatch):
    import pairlab.curate as curate_mod
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cur"
    curate_mod.curate(fx.pairs(60), ["drop_ties"], curate_mod.CurateConfig(tokenizer="none", eval_fraction=0.0),
                      out_dir=out)
    (out / "curation.html").unlink()
    assert render_report(out) == out / "curation.html"
    assert (out / "curation.html").exists()
    assert json.loads(render_report(out, format="json").read_text())["kind"] == "curation"


def test_baseline_is_verified_like_any_input(tmp_path, capsys):
    """--baseline must be a complete, unchanged evaluation, and not the one reported."""
    base = fx.write_eval_dir(tmp_path / "base", n=20, trained=False)
    aligned = fx.write_eval_dir(tmp_path / "aligned", n=20)
    assert main(["report", str(aligned), "--baseline", str(aligned)]) == 2
    assert "the baseline is the evaluation being reported" in capsys.readouterr().err
    with open(base / "per_pair.parquet", "ab") as f:  # corrupt it after evaluate finished
        f.write(b"junk")
    assert main(["report", str(aligned), "--baseline", str(base)]) == 2
    err = capsys.readouterr().err
    assert "per_pair.parquet" in err and "changed after" in err and "Traceback" not in err
    (base / "manifest.json").unlink()
    assert main(["report", str(aligned), "--baseline", str(base)]) == 2
    assert "incomplete evaluate directory" in capsys.readouterr().err


def test_out_never_lands_on_a_stage_output(tmp_path, capsys):
    """`report --out` writes DIR's own report files or outside any stage directory, never over an output."""
    aligned = fx.write_eval_dir(tmp_path / "aligned", n=20)
    other = fx.write_eval_dir(tmp_path / "other", n=20)
    before = {p.name: p.read_bytes() for p in aligned.iterdir()}
    for out in (aligned / "per_pair.parquet", aligned / "manifest.json", aligned / "sub" / "r.html",
                other / "report.html", aligned):
        assert main(["report", str(aligned), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in aligned.iterdir()} == before
    assert main(["report", str(aligned), "--out", str(aligned / "report.html")]) == 0
    assert main(["report", str(aligned), "--out", str(tmp_path / "elsewhere.html")]) == 0
