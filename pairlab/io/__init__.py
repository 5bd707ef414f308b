"""Preference-data I/O: read any supported layout into the pairs table, write it back out.

* :func:`read_pairs` - file / directory / saved dataset / hub id, plain or compressed
  JSONL, JSON, Parquet, CSV, TSV; layout auto-detected or forced, ``--map``.
* :func:`read_pairs_with_rejects` - the same, plus the rejects table (rows that could
  not become a pair, with file, line/row, field and reason).
* :func:`iter_pairs_chunks` - the same, chunk by chunk, for a JSONL/CSV/TSV file larger
  than memory (concatenated, the chunks are the whole-file read).
* :func:`write_pairs` - Parquet (canonical) or JSONL, atomically.
* :func:`to_trl_dataset` / :func:`write_trl_dataset` - what TRL's ``DPOTrainer`` takes.
* :func:`summarize_pairs` - the summary ``pairlab inspect`` prints.
* :func:`register_layout` - add an input layout (``--format NAME``), see :mod:`.layouts`.
* :func:`register_sides` - add a layout of two answers and a label naming the preferred one
  (PKU-SafeRLHF, SHP, Chatbot Arena, HelpSteer2 are built in), see :mod:`.sides`.
"""
from __future__ import annotations

from .layouts import LAYOUT_REGISTRY, ReadContext, detect_layout, layout_names, parse_transcript, register_layout
from .raw import PAIRINGS, STRATEGIES
from .sides import SIDES_REGISTRY, Sides, register_sides
from .read import iter_pairs_chunks, read_pairs, read_pairs_with_rejects
from .rejects import REJECT_COLUMNS
from .summary import format_summary, summarize_pairs
from .write import to_trl_dataset, write_pairs, write_trl_dataset

__all__ = ["LAYOUT_REGISTRY", "PAIRINGS", "REJECT_COLUMNS", "ReadContext", "SIDES_REGISTRY", "STRATEGIES", "Sides",
           "detect_layout",
           "format_summary", "iter_pairs_chunks", "layout_names", "parse_transcript", "read_pairs", "read_pairs_with_rejects",
           "register_layout", "register_sides",
           "summarize_pairs", "to_trl_dataset", "write_pairs", "write_trl_dataset"]
