"""The audit report reads the attribution-score registry: a score registered there is shown
(its column, its help text, its row in the correlation matrix) with no edit to the report."""
from __future__ import annotations

import html

import numpy as np
import report_fixtures as fx

from pairlab import artifacts
from pairlab.audit.registry import ATTRIBUTION_SCORES, register_attribution_score
from pairlab.dirs import AuditDir


def test_a_registered_toy_score_appears_in_the_audit_report(tmp_path):
    from pairlab.reports.audit_report import audit_context, render_audit

    name, text = "toy_length_score", "minus the chosen completion length <b>(a toy)</b>"
    register_attribution_score(name, text, "baseline")
    try:
        pairs = fx.pairs(30)
        scores = pairs[["pair_id", "source", "prompt_text", "chosen", "rejected"]].copy()
        rng = np.random.default_rng(0)
        scores["tracin_cosine"] = rng.normal(size=len(scores))
        scores[name] = -scores["chosen"].str.len().astype(float)
        artifacts.write_parquet(tmp_path / AuditDir.ATTRIBUTION, scores)
        AuditDir.finish(tmp_path, config={"harmful_score": name, "top_k": 3})
        context = audit_context(tmp_path)
        assert context["correlation"]["columns"] == ["tracin_cosine", name]  # registry order, present only
        assert {"name": name, "help": text, "kind": "baseline"} in context["score_help"]
        worst = scores.nsmallest(3, name)["pair_id"].tolist()
        assert [r["pair_id"] for r in context["harmful"]] == worst
        page = render_audit(tmp_path).read_text(encoding="utf-8")
        assert f"<code>{name}</code>" in page and html.escape(text) in page and text not in page
        # a registered score that the table lacks is not shown
        assert "self_influence" not in [s["name"] for s in context["score_help"]]
    finally:
        del ATTRIBUTION_SCORES[name]
