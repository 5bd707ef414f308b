"""Carry a run out to the DPO ecosystem: TRL-format data, the `trl dpo` config, adapter, merged model, cards.

* :func:`export` - a run directory, an ablation arm or an ablation (its winner) -> OUT.
* :func:`resolve_source` - which run, curated data and evaluation an export reads.
"""
from __future__ import annotations

__all__ = ["export", "resolve_source"]


def __getattr__(name):
    if name in ("export", "resolve_source", "trl_config", "merge_adapter"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
