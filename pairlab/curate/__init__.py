"""Curate preference pairs: vectorised scores, declarative filters, a prompt-disjoint split.

* :func:`curate` - score (cached) -> split -> filter -> audit trail (pairs, eval, dropped,
  scores, manifest, curation.html).
* :func:`curate_stream` - the same, for a pairs Parquet pool larger than memory (chunk by chunk).
* :func:`compute_scores` - every score column for a pairs table (:data:`SCORES`).
* :func:`parse_filters` - validate a filter spec; :data:`FILTERS` is the registry.
"""
from __future__ import annotations

from .config import CurateConfig
from .filters import FILTERS, Filter, FilterContext, parse_filters, register
from .pipeline import CurateResult, cached_scores, curate, load_filter_file, pool_hash, write_result
from .scores import NUMERIC_SCORES, REFUSAL_MARKERS, SCORES, compute_scores, read_prompts
from .split import eval_mask, overlap_mask, prompt_hashes
from .stream import curate_stream

__all__ = ["CurateConfig", "CurateResult", "FILTERS", "Filter", "FilterContext", "NUMERIC_SCORES",
           "REFUSAL_MARKERS", "SCORES", "cached_scores", "compute_scores", "curate", "eval_mask",
           "load_filter_file", "overlap_mask", "parse_filters", "pool_hash", "prompt_hashes",
           "read_prompts", "register", "write_result", "curate_stream"]
