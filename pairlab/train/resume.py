"""Finding the checkpoint to resume from.

HF's ``get_last_checkpoint`` takes the highest-numbered folder even if the process
died while writing it. pairlab writes ``dynamics.parquet`` last into each
checkpoint (after weights, optimizer, RNG and ``trainer_state.json``), so a
checkpoint is complete when both files are there; incomplete ones are skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .trainer import DYNAMICS_FILE

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKERS = ("trainer_state.json", DYNAMICS_FILE)


def checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``folder`` as (step, path), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match and path.is_dir() and all((path / m).exists() for m in COMPLETE_MARKERS):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1][1] if found else None


def checkpoint_dynamics(checkpoint: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(checkpoint) / DYNAMICS_FILE)
