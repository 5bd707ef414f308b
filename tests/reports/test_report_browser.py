"""A real browser: the report loads in headless Chromium without console errors, shows its
sections at phone width, the explorer stays fast with 2,000 pairs, and injected text never runs."""
from __future__ import annotations

import re

import pandas as pd
import report_fixtures as fx
from headless import chromium, need_chromium, probed_copy

from pairlab.reports import render_report

SECTIONS = ("headline", "training", "rewards", "calibration", "breakdowns", "extremes", "generations",
            "pairs", "config")


def _attr(dom: str, name: str) -> str:
    return re.search(rf'{name}="([^"]*)"', dom).group(1)


def test_report_in_chromium_at_phone_width(tmp_path):
    need_chromium()
    run = fx.write_run_dir(tmp_path / "run")
    report = render_report(fx.write_eval_dir(tmp_path / "eval", n=300, run_dir=run))
    page = probed_copy(report, tmp_path / "probed.html")  # CSP kept: a blocked script would log

    dom, console = chromium(page.as_uri(), tmp_path / "profile", "--dump-dom", width=390, height=844)
    assert console == []
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, section
    assert _attr(dom, "data-ready") == "300" and _attr(dom, "data-text") == "ready"
    assert dom.count('class="ex-row') == 50
    # Nothing widens the page past the viewport (--dump-dom's viewport is at least 500 px wide;
    # the screenshot below is the true 390 px one).
    inner = int(_attr(dom, "data-inner-width"))
    assert inner <= 500 and int(_attr(dom, "data-scroll-width")) <= inner

    shot = tmp_path / "phone.png"
    _, console = chromium(report.as_uri(), tmp_path / "profile", f"--screenshot={shot}", width=390, height=844)
    assert console == []
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (390, 844)
        colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colors is None or len(colors) > 50  # text and figures, not a blank page


def test_explorer_with_two_thousand_pairs(tmp_path):
    need_chromium()
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=2000, length="realistic")
    page = probed_copy(render_report(eval_dir), tmp_path / "probed.html")
    dom, console = chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")
    assert console == []
    n = len(pd.read_parquet(eval_dir / "per_pair.parquet"))
    assert _attr(dom, "data-ready") == str(n) and _attr(dom, "data-text") == "ready"
    assert int(_attr(dom, "data-sort-ms")) < 1000
    # The probe clicked the first header: rows are now sorted by pair id, ascending.
    first = re.search(r'<tr class="ex-row[^"]*"[^>]*><td>([^<]+)</td>', dom).group(1)
    assert first == min(pd.read_parquet(eval_dir / "per_pair.parquet")["pair_id"])


def test_injected_text_never_runs_in_chromium(tmp_path):
    need_chromium()
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=40, inject=True)
    # Without the CSP, so only the escaping stands between the text and the page.
    page = probed_copy(render_report(eval_dir), tmp_path / "probed.html", keep_csp=False)
    first = pd.read_parquet(eval_dir / "per_pair.parquet")["pair_id"][0]
    dom, console = chromium(page.as_uri() + f"#pair={first}", tmp_path / "profile", "--dump-dom")
    assert console == []  # no ALERT line, no error
    detail = re.search(r'<tr class="ex-detail">(.*?)</tr>', dom, re.S).group(1)
    assert "Summarise this: &lt;script&gt;alert(1)&lt;/script&gt; &lt;/script&gt;&lt;script&gt;alert(2)" in detail
    assert "&lt;img src=x onerror=alert(3)&gt;" in detail
    assert len(re.findall(r"<script\b", dom)) == 4  # probe + the report's three
    assert not re.search(r"<img[^>]*onerror", dom)
