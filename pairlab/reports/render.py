"""The shared base of every report: a jinja2 environment and figure helpers.

Reports are single self-contained HTML files: figures are embedded as data URIs, no
scripts, no external assets. Autoescape is on for every template, so any text taken
from the data (prompts, completions, model names) is escaped; templates never use
``|safe`` on data.
"""
from __future__ import annotations

import base64
import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import artifacts

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def environment():
    """The jinja2 environment over ``pairlab/reports/templates`` (autoescape on)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["pct"] = lambda x, total: "" if not total else f"{100.0 * x / total:.1f}%"
    return env


def _num(value: Any, digits: int = 3) -> str:
    """Thousands separators for ints, a few significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int) or (hasattr(value, "is_integer") and float(value).is_integer()
                                  and abs(value) >= 1):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render(template: str, *, scripts: tuple[str, ...] = (), **context: Any) -> str:
    """Render a template from ``pairlab/reports/templates`` to a string.

    Every report page extends ``base.html``, which always emits the Content-Security-Policy
    built here: :func:`content_security_policy` allowing exactly ``scripts`` (the page's
    inline scripts, verbatim). A renderer cannot pass its own policy, so all reports share
    one.
    """
    if "csp" in context:
        raise TypeError("the CSP is built by render(): pass the page's inline scripts as scripts=")
    return environment().get_template(template).render(csp=content_security_policy(*scripts), **context)


def write_report(path: str | os.PathLike, template: str, *, scripts: tuple[str, ...] = (),
                 **context: Any) -> Path:
    """Render (with the shared CSP, see :func:`render`) and write atomically."""
    return artifacts.write_text(path, render(template, scripts=scripts, **context))


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure_to_data_uri(fig, fmt: str = "png", dpi: int = 90) -> str:
    """Serialize a matplotlib figure into a ``data:`` URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    mime = {"png": "image/png", "svg": "image/svg+xml"}[fmt]
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


# ---------------------------------------------------------------- scripts and embedded data
# Reports with an interactive part (the pair explorer) carry one inline script and their
# data as a JSON block. Both are built here so the escaping rules live in one place.

#: Characters that could end a <script> block, open a comment or break a JS string when
#: JSON text is embedded in HTML; all are legal as \\u escapes inside JSON strings.
_SCRIPT_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                        "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_safe(value: Any) -> Any:
    """numpy scalars -> Python, NaN/inf/pd.NA -> None, recursively (JSON has no NaN)."""
    import math

    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def script_json(obj: Any):
    """``obj`` as JSON safe to place inside ``<script type="application/json">``.

    JSON-encode, then escape ``<``, ``>``, ``&`` and U+2028/2029 as ``\\uXXXX``: a
    completion containing ``</script><script>...`` can then neither close the block
    nor start a new one, and ``JSON.parse`` still returns the original text.
    """
    import json

    from markupsafe import Markup

    text = json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in _SCRIPT_JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return Markup(text)


def script_hash(source: str) -> str:
    """CSP source expression (``'sha256-...'``) allowing exactly this inline script."""
    import hashlib

    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(*scripts: str) -> str:
    """A policy for a self-contained report: no network, images only from data: URIs,
    and only the given inline scripts (so even a missed escape could not run code)."""
    allowed = " ".join(script_hash(s) for s in scripts) or "'none'"
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src {allowed}; base-uri 'none'; form-action 'none'")
