"""Model and data text cannot become markup or script: escaped HTML, escaped JSON, a CSP."""
from __future__ import annotations

import json
from html.parser import HTMLParser

import pandas as pd
import report_fixtures as fx

from pairlab.reports import render_report
from pairlab.reports.explorer import EXPLORER_JS, decode_texts
from pairlab.reports.render import content_security_policy, script_hash, script_json


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data):
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def test_script_json_cannot_close_its_block():
    text = 'a </script><script>alert(2)</script> & <!-- \u2028\u2029 "q"'
    out = str(script_json({"t": text, "n": float("nan")}))
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in out
    assert json.loads(out) == {"t": text, "n": None}


def test_csp_allows_exactly_the_given_script():
    policy = content_security_policy("console.log(1)")
    assert "default-src 'none'" in policy and "img-src data:" in policy
    assert script_hash("console.log(1)") in policy
    assert "script-src 'none'" in content_security_policy()


def test_injected_prompt_and_completion_stay_text(tmp_path):
    eval_dir = fx.write_eval_dir(tmp_path / "eval", n=40, inject=True)
    html = render_report(eval_dir).read_text(encoding="utf-8")
    parser = _Elements()
    parser.feed(html)

    # Only the report's own three scripts: the data block, the text block, the explorer.
    kinds = [(attrs.get("type"), attrs.get("id")) for attrs, _ in parser.scripts]
    assert kinds == [("application/json", "explorer-data"), ("application/octet-stream", "explorer-text"),
                     (None, None)]
    assert parser.scripts[2][1] == EXPLORER_JS
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/"), attrs
    for raw in fx.INJECTIONS:
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text in the static sections

    # The CSP names the explorer script's hash; the data blocks give back the exact text.
    assert f"script-src {script_hash(EXPLORER_JS)}".replace("'", "&#39;") in html
    data = json.loads(parser.scripts[0][1])
    assert "</script><b>src</b>" in {row[1] for row in data["rows"]}
    texts = decode_texts(parser.scripts[1][1])
    per_pair = pd.read_parquet(eval_dir / "per_pair.parquet")
    assert texts[0] == [per_pair.prompt_text[0], per_pair.chosen[0], per_pair.rejected[0]]
    assert fx.INJECTED in texts[1][2]
