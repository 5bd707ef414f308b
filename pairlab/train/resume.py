"""Finding the checkpoint to resume from.

HF's ``get_last_checkpoint`` takes the highest-numbered folder even if the process
died while writing it. pairlab writes ``dynamics.parquet`` last into each
checkpoint (after weights, optimizer, RNG and ``trainer_state.json``), so a
checkpoint is complete when both files are there; incomplete ones are skipped.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..dirs import RunDir

DYNAMICS_FILE = RunDir.DYNAMICS  # as pairlab.train.trainer writes it into each checkpoint folder (no torch import here)

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


#: Written into each checkpoint (before ``dynamics.parquet``, its completion marker): what the
#: interrupted run was, so ``--resume`` continues only the same run.
IDENTITY_FILE = "pairlab_resume.json"


def run_identity(config: dict, compute_dtype: str, pairs: pd.DataFrame) -> dict:
    """What makes an interrupted run this one: its config, the pairs' content and the dtype it
    computes in (``dtype: auto`` resolves per machine: bf16 on one CPU kind, fp32 on another)."""
    from ..artifacts import frame_sha256, to_json

    return {"config": json.loads(to_json(config)), "compute_dtype": str(compute_dtype).replace("torch.", ""),
            "pairs_sha256": frame_sha256(pairs, [c for c in ("pair_id", "prompt", "chosen", "rejected")
                                                 if c in pairs.columns])}


def identity_mismatch(checkpoint: str | Path, identity: dict) -> str | None:
    """Why ``checkpoint`` is not a checkpoint of the run ``identity`` describes (None: it is, or
    an older pairlab wrote it without an identity)."""
    path = Path(checkpoint) / IDENTITY_FILE
    if not path.is_file():
        return None
    before = json.loads(path.read_text())
    if before.get("pairs_sha256") != identity["pairs_sha256"]:
        return "of other pairs"
    from ..config import dotted_leaves

    old, new = dict(dotted_leaves(before.get("config") or {})), dict(dotted_leaves(identity["config"]))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        return f"of another config ({', '.join(changed[:3])})"
    if before.get("compute_dtype") != identity["compute_dtype"]:
        return (f"that computed in {before.get('compute_dtype')}; this one would compute in "
                f"{identity['compute_dtype']} (another dtype, PAIRLAB_CPU_BF16 or another CPU kind)")
    return None
