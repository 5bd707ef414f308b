"""`pairlab evaluate` across processes: each scores a shard of the pairs, rank 0 writes.

Under ``torchrun --nproc_per_node N -m pairlab evaluate ...`` (or ``accelerate launch
--multi_gpu --num_processes N``) process r computes the log-probs of pairs r, r+N, r+2N, ...
(:func:`pairlab.distributed.shard_rows`), storing them in the shared cache as it goes (safe
under concurrency); the shards are gathered and put back in pair order, so every process
then holds the same table a single process would have computed, row for row, and the
metrics are computed from it unchanged. Without a launcher this is one shard: all pairs.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..distributed import sharded_table
from ..policy import reference_logps


def sharded_logps(model, tokenizer, pairs: pd.DataFrame, setup, cache, *, tokenized=None,
                  **kwargs: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`pairlab.policy.reference_logps` on this process's shard of ``pairs``,
    merged across processes in the order of ``pairs`` (stats summed over the shards)."""
    from ..policy import reference_logps

    def compute(rows):
        shard = pairs.iloc[rows].reset_index(drop=True)
        return reference_logps(model, tokenizer, shard, setup, cache,
                               tokenized=None if tokenized is None else [tokenized[i] for i in rows], **kwargs)

    return sharded_table(compute, len(pairs), setup.device, order=pairs["pair_id"])
