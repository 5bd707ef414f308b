"""The curation report: written, has its sections, escapes text from the data."""
from __future__ import annotations

from pairlab.curate import CurateConfig, curate
from pairlab.reports.curation import report_from_dir
from pairlab.schema import build_pairs


def _pool():
    rows = [{"prompt": [{"role": "user", "content": f"Explain item {i} <b>bold</b>"}],
             "chosen": "Because. " * (1 + i % 4), "rejected": "No." * (1 + i % 2),
             "score_chosen": float(5 + i % 5), "score_rejected": float(5 - i % 3),
             "source": ["evol_instruct", "truthful_qa"][i % 2]} for i in range(80)]
    rows.insert(0, {"prompt": [{"role": "user", "content": "<script>alert('x')</script> hi"}],
                 "chosen": "<img src=x onerror=alert(1)>", "rejected": "<img src=x onerror=alert(1)>",
                 "score_chosen": 5.0, "score_rejected": 5.0, "source": "evol_instruct"})
    return build_pairs(rows)


def test_report_written_with_sections_and_escaped(tmp_path, monkeypatch):
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cur"
    curate(_pool(), ["drop_ties", "drop_identical", {"min_rating_gap": 1}, "balance_length"],
           CurateConfig(tokenizer="none", eval_fraction=0.0), out_dir=out)
    html = (out / "curation.html").read_text()
    for section in ('id="counts"', 'id="waterfall"', 'id="rating-gap"', 'id="lengths"',
                    'id="sources"', 'id="examples"'):
        assert section in html, section
    assert html.count("data:image/png;base64,") >= 4
    assert "evol_instruct" in html and "truthful_qa" in html
    # the tie row with the <script> prompt is shown as a dropped example, escaped
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    # rebuilt from the directory alone
    again = report_from_dir(out, tmp_path / "again.html")
    assert 'id="waterfall"' in again.read_text()
