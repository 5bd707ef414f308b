"""Every HTML report carries the same Content-Security-Policy, from one place.

One directory per registered report kind (built from the project's own writers; no
model), each rendered through ``render_report``; the policy in the page must be exactly
``content_security_policy(<the page's inline scripts>)``. A kind registered without a
builder here fails the test, so a new report cannot skip the check.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import report_fixtures as fx
import yaml

from pairlab import artifacts
from pairlab.reports import REPORT_KINDS, render_report
from pairlab.reports.render import content_security_policy, render


_SCRIPT_TYPES = ("", "text/javascript", "application/javascript", "module")


class _Page(HTMLParser):
    """CSP metas (and where they sit) and the text of every inline script."""

    def __init__(self):
        super().__init__()
        self.csp: list[tuple[str, bool]] = []  # (content, inside <head>)
        self.scripts: list[str] = []
        self._head = False
        self._script: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "head":
            self._head = True
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp.append((attrs.get("content") or "", self._head))
        # data blocks (application/json, octet-stream) never run; only script types do
        if tag == "script" and attrs.get("type", "text/javascript") in _SCRIPT_TYPES:
            self._script = []

    def handle_endtag(self, tag):
        if tag == "head":
            self._head = False
        if tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._script.append(data)


def _eval(root: Path) -> Path:
    return fx.write_eval_dir(root / "eval", n=40)


def _run(root: Path) -> Path:
    return fx.write_run_dir(root / "run")


def _curation(root: Path) -> Path:
    from pairlab.curate import CurateConfig, curate

    out = root / "curation"
    curate(fx.pairs(60), ["drop_ties"], CurateConfig(tokenizer="none", eval_fraction=0.0, report=False),
           out_dir=out)
    return out


def _audit(root: Path) -> Path:
    """attribution.parquet as `pairlab audit` writes it: the pairs plus every registered score."""
    from pairlab.audit.cartography import REGIONS
    from pairlab.audit.pipeline import SCORES
    from pairlab.dirs import AuditDir

    out = root / "audit"
    out.mkdir()
    pairs = fx.pairs(40)
    rng = np.random.default_rng(0)
    scores = pairs[["pair_id", "source", "prompt_text", "chosen", "rejected", "true_preference_correct"]].copy()
    for name in SCORES:
        scores[name] = rng.normal(size=len(scores))
    scores["confidence"] = rng.uniform(0, 1, len(scores))
    scores["variability"] = rng.uniform(0, 0.5, len(scores))
    scores["region"] = [REGIONS[i % len(REGIONS)] for i in range(len(scores))]
    artifacts.write_parquet(out / AuditDir.ATTRIBUTION, scores)
    AuditDir.finish(out, config={"harmful_score": "tracin_cosine", "top_k": 5})
    return out


def _ablation(root: Path) -> Path:
    """An ablation directory gathered by the real compare_arms from two arms' curate and eval dirs."""
    from pairlab.ablate.compare import compare_arms
    from pairlab.ablate.config import AblationConfig
    from pairlab.ablate.pipeline import Layout
    from pairlab.config import from_dict
    from pairlab.curate import CurateConfig, curate
    from pairlab.dirs import AblationDir

    out = root / "ablation"
    settings = {"name": "csp", "pool": {"input": "pool.jsonl"},
                "arms": [{"name": "all", "filters": []}, {"name": "gap1", "filters": [{"min_rating_gap": 1.0}]}]}
    cfg = from_dict(AblationConfig, settings)
    layout = Layout(out)
    pool = fx.pairs(60)
    table = fx.pairs(40, seed=1)
    for i, arm in enumerate(cfg.arms):
        curate(pool, arm.filters, CurateConfig(tokenizer="none", eval_fraction=0.0, report=False),
               out_dir=layout.curate(arm.name))
        fx.write_eval_dir(layout.arm_eval(arm.name, 0), table=table, seed=i)
    artifacts.write_text(out / AblationDir.CONFIG, yaml.safe_dump(settings))
    artifacts.write_json(out / AblationDir.COMPARISON, compare_arms(cfg, layout, pool))
    AblationDir.finish(out, config=settings)
    return out


BUILDERS = {"eval": _eval, "run": _run, "curation": _curation, "audit": _audit, "ablation": _ablation}


def _policy(html: str) -> tuple[str, list[str]]:
    page = _Page()
    page.feed(html)
    assert len(page.csp) == 1, f"expected one CSP meta, found {len(page.csp)}"
    content, in_head = page.csp[0]
    assert in_head, "the CSP meta must sit in <head>"
    return content, page.scripts


def test_every_registered_kind_has_a_builder():
    assert set(BUILDERS) == set(REPORT_KINDS), "a report kind without a CSP check"


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_report_carries_the_shared_csp(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("PAIRLAB_CACHE", str(tmp_path / "cache"))
    directory = BUILDERS[kind](tmp_path)
    html = render_report(directory).read_text(encoding="utf-8")
    content, scripts = _policy(html)
    # exactly the shared policy, allowing exactly this page's inline scripts
    assert content == content_security_policy(*scripts)
    assert "default-src 'none'" in content and "base-uri 'none'" in content
    assert html.index("Content-Security-Policy") < html.index("<title>")  # before any page content


def test_eval_report_with_a_baseline_comparison_carries_it(tmp_path):
    """The paired comparison (`--baseline`, what `pairlab compare` computes) is in the eval report."""
    trained = fx.write_eval_dir(tmp_path / "trained", n=40)
    base = fx.write_eval_dir(tmp_path / "base", n=40, trained=False)
    html = render_report(trained, tmp_path / "cmp.html", baseline=base).read_text(encoding="utf-8")
    content, scripts = _policy(html)
    assert content == content_security_policy(*scripts)


def test_a_renderer_cannot_bring_its_own_policy():
    with pytest.raises(TypeError, match="scripts="):
        render("run.html", csp="default-src *")


def test_every_page_template_extends_the_base_that_emits_it():
    templates = Path(render.__code__.co_filename).parent / "templates"
    base = (templates / "base.html").read_text(encoding="utf-8")
    meta = '<meta http-equiv="Content-Security-Policy" content="{{ csp }}">'
    assert meta in base and "{% block csp" not in base  # not a block: no page can drop it
    for page in templates.glob("*.html"):
        if page.name.startswith("_") or page.name == "base.html":
            continue
        text = page.read_text(encoding="utf-8")
        parent = re.search(r'{% extends "([^"]+)" %}', text)
        assert parent, f"{page.name} does not extend a base page"
        while parent.group(1) != "base.html":
            text = (templates / parent.group(1)).read_text(encoding="utf-8")
            parent = re.search(r'{% extends "([^"]+)" %}', text)
            assert parent, f"{page.name} does not reach base.html"
        assert "Content-Security-Policy" not in page.read_text(encoding="utf-8")
