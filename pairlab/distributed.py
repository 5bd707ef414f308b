"""Data parallel across the processes that `torchrun` or `accelerate launch` starts.

Both launchers set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each process's
environment; a plain ``python -m pairlab`` sets none, which reads as one process of rank 0.
Stages use this module to decide who writes (rank 0 alone: a stage directory is written
once) and, in `pairlab evaluate`, which pairs each process scores.

Launching two processes on a CPU (gloo): ``torchrun --nproc_per_node 2 -m pairlab ...``, or
``accelerate launch --multi_gpu --num_processes 2 -m pairlab ...`` (accelerate's ``--cpu``
flag starts ONE process whatever ``--num_processes`` says: it expects ``mpirun`` to start
the others). On a CPU the processes meet over gloo; on GPUs over NCCL, one GPU each.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import pandas as pd


def world_size() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes the stage's outputs (rank 0)."""
    return rank() == 0


def local_device(device: str) -> str:
    """``cuda`` -> ``cuda:LOCAL_RANK`` under a launcher (one GPU per process); else unchanged."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def shard_rows(n: int, shard: int, shards: int) -> np.ndarray:
    """Row positions that process ``shard`` of ``shards`` handles: every ``shards``-th row from
    ``shard`` (interleaved, as torch's DistributedSampler deals a dataset without shuffling), so
    each process gets long and short pairs alike and the row counts differ by at most one."""
    return np.arange(shard, n, shards)


def process_group(device: str):
    """accelerate's ``PartialState`` for this launch (initializes the process group once: gloo
    on a CPU, NCCL on GPUs). Only called when :func:`world_size` > 1."""
    from accelerate import PartialState

    return PartialState(cpu=not str(device).startswith("cuda"))


def gather_objects(value: Any, device: str) -> list[Any]:
    """Every process's ``value``, in rank order, on every process (a collective: all call it)."""
    if world_size() == 1:
        return [value]
    import torch.distributed as dist

    process_group(device)
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def sharded_table(compute: Callable[[np.ndarray], tuple[pd.DataFrame, dict[str, Any]]], n: int, device: str,
                  *, key: str = "pair_id", order: pd.Series | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run ``compute(rows)`` on this process's shard of ``n`` rows and merge every shard's table.

    ``compute`` returns (table with a ``key`` column, stats dict). The merged table is in the
    order of ``order`` (the full ``key`` column), i.e. row for row as one process computing
    all ``n`` rows returns it; numeric stats are summed across the shards, others are taken
    from rank 0. One process: ``compute(all rows)`` unchanged.
    """
    shards = world_size()
    if shards == 1:
        return compute(np.arange(n))
    table, stats = compute(shard_rows(n, rank(), shards))
    parts = gather_objects((table, stats), device)
    merged = pd.concat([p[0] for p in parts], ignore_index=True)
    if order is not None:
        merged = merged.set_index(key).loc[list(order.astype(str))].reset_index()[list(table.columns)]
    total = dict(parts[0][1])
    for name, value in total.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[name] = sum(p[1].get(name, 0) for p in parts)
    total["processes"] = shards
    return merged, total
