"""Preference-data I/O: read any supported layout into the pairs table, write it back out.

* :func:`read_pairs` - file / directory / hub id, layout auto-detected or forced, ``--map``.
* :func:`write_pairs` - Parquet (canonical) or JSONL, atomically.
* :func:`to_trl_dataset` / :func:`write_trl_dataset` - what TRL's ``DPOTrainer`` takes.
* :func:`summarize_pairs` - the summary ``pairlab inspect`` prints.
"""
from __future__ import annotations

from .layouts import LAYOUTS, detect_layout, parse_transcript
from .raw import PAIRINGS, STRATEGIES
from .read import read_pairs
from .summary import format_summary, summarize_pairs
from .write import to_trl_dataset, write_pairs, write_trl_dataset

__all__ = ["LAYOUTS", "PAIRINGS", "STRATEGIES", "detect_layout", "format_summary",
           "parse_transcript", "read_pairs", "summarize_pairs", "to_trl_dataset",
           "write_pairs", "write_trl_dataset"]
