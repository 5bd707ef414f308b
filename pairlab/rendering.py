"""The report hook: how a stage gets its HTML report without importing ``pairlab.reports``.

Stages sit below ``reports`` (see docs/architecture.md), yet `pairlab curate`, `pairlab evaluate`
and `pairlab audit` end by writing their report. They call :func:`render` with a renderer name;
``pairlab.reports`` registers its renderers when imported, and :func:`render` imports it (by
name, as a plugin) the first time a renderer is missing. So the stages depend only on this
floor module, and a different rendering package could register the same names.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .errors import ReportError

#: renderer name -> function. ``curation``: (CurateResult, path) -> path; ``eval`` and
#: ``audit``: (stage directory) -> report path.
RENDERERS: dict[str, Callable[..., Any]] = {}
#: The package whose import registers the renderers.
PROVIDER = "pairlab.reports"


def register_renderer(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make ``fn`` the renderer called by ``render(name, ...)``."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        RENDERERS[name] = fn
        return fn
    return decorate


def render(name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the renderer registered as ``name`` (loading :data:`PROVIDER` first if needed)."""
    if name not in RENDERERS:
        importlib.import_module(PROVIDER)
    if name not in RENDERERS:
        raise ReportError(f"no report renderer named {name!r}", hint=f"known: {sorted(RENDERERS)}")
    return RENDERERS[name](*args, **kwargs)
