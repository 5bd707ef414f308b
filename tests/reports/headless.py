"""Drive Debian's headless Chromium from tests: dump the DOM after scripts ran, screenshot,
and collect console messages (Chromium logs them to stderr as ``...:CONSOLE...`` lines)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
         # Virtual time lets the async text inflation finish before the DOM is dumped.
         "--virtual-time-budget=5000"]

#: Inserted at the top of <head> (before the CSP meta, so it may run): alert() becomes a
#: console line, and after load the page's width and explorer timings land in attributes.
PROBE = """<script>
window.alert = function (m) { console.log("ALERT " + m); };
window.addEventListener("load", function () {
  var d = document.documentElement;
  d.setAttribute("data-load-ms", String(Math.round(performance.now())));
  d.setAttribute("data-scroll-width", String(d.scrollWidth));
  d.setAttribute("data-inner-width", String(window.innerWidth));
  var sort = document.querySelector("#explorer button.ex-sort");
  if (sort) {
    var t = performance.now();
    sort.click();
    d.setAttribute("data-sort-ms", String(Math.round(performance.now() - t)));
  }
});
</script>"""


def need_chromium() -> str:
    """Chromium's path. Missing: skip on a developer machine, but fail in CI (``CI=true``),
    where a skipped browser test would pass the run without checking the reports."""
    if CHROMIUM is None:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail("chromium not installed, and CI is set: the browser tests must run in CI "
                        "(.ci/run installs it)")
        pytest.skip("chromium not installed (.ci/run installs it)")
    return CHROMIUM


def probed_copy(report: Path, out: Path, *, keep_csp: bool = True) -> Path:
    """A copy of ``report`` with :data:`PROBE` (and optionally without its CSP meta)."""
    html = report.read_text(encoding="utf-8")
    if not keep_csp:
        html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    out.write_text(html.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    return out


def chromium(url: str, profile: Path, *args: str, width: int = 1200, height: int = 900,
             timeout: int = 120) -> tuple[str, list[str]]:
    """(stdout, console lines) of one headless Chromium run."""
    cmd = [need_chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console
