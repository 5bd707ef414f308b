"""``pairlab.load(DIR)``: any stage directory as a typed object with its tables, for notebooks.

The directory is verified first (:func:`pairlab.dirs.verify`: a complete manifest whose
output hashes match), so a notebook never reads a half-written or edited directory. Each
stage's files become attributes named after them, read when first used: Parquet files as
DataFrames, JSON as dicts, JSON Lines as DataFrames::

    run = pairlab.load("runs/arm-a")        # a Run
    run.train_log, run.dynamics             # DataFrames
    ev = pairlab.load("evals/arm-a")        # an Evaluation
    ev.per_pair, ev.metrics["accuracy"]
    abl = pairlab.load("demo_out")          # an Ablation
    abl.table                               # comparison.parquet: one row per arm x seed
    abl.evaluation("gap-1.5", seed=0).per_pair
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from . import artifacts, dirs


def _read(path: Path) -> Any:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".json":
        return artifacts.read_json(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8"))
    return path  # a folder (an adapter) or another file: its path


@dataclass
class StageResult:
    """A verified stage directory: ``path``, ``stage``, ``manifest``, ``config`` and one lazy
    attribute per output file (``pairs.parquet`` -> ``.pairs``); ``files`` lists them."""

    path: Path
    manifest: dict[str, Any]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    #: attribute -> file name, beyond the stage's outputs (e.g. an ablation's comparison.json).
    ALIASES: ClassVar[dict[str, str]] = {}

    @property
    def stage(self) -> str:
        return self.manifest.get("stage", "")

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    @property
    def files(self) -> dict[str, str]:
        kind = dirs.STAGE_DIRS.get(self.stage)
        names = list(kind.OUTPUTS) if kind else []
        out: dict[str, str] = {}
        for n in names:  # the first file of a stem wins (comparison.json before comparison.parquet)
            if (self.path / n).exists():
                out.setdefault(Path(n).name.split(".")[0], n)
        out.update({k: v for k, v in self.ALIASES.items() if (self.path / v).exists()})
        return out

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        files = self.files
        if name not in files:
            raise AttributeError(f"{type(self).__name__} has no '{name}'; it has {sorted(files)}")
        if name not in self._cache:
            self._cache[name] = _read(self.path / files[name])
        return self._cache[name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, files={sorted(self.files)})"


class Simulation(StageResult):
    """``pairlab simulate``: ``train_pairs``, ``eval_pairs`` (DataFrames) and the raw files."""


class Noise(StageResult):
    """``pairlab simulate --from``: ``pairs`` with injected label noise."""


class Curation(StageResult):
    """``pairlab curate``: ``pairs`` (kept), ``eval``, ``dropped`` (with reasons), ``scores``."""

    @property
    def counts(self) -> dict[str, int]:
        return self.manifest.get("counts", {})


class Run(StageResult):
    """``pairlab train``: ``train_log``, ``dynamics`` (DataFrames), ``adapter`` (its path)."""


class Evaluation(StageResult):
    """``pairlab evaluate``: ``per_pair``, ``metrics`` (dict), ``generations``, ``excluded``."""

    @property
    def benchmark(self) -> dict[str, Any] | None:
        """RewardBench-style figures, when the evaluation set was a benchmark."""
        return self.metrics.get("benchmark")


class Comparison(StageResult):
    """``pairlab compare``: ``comparison`` (dict)."""


class Audit(StageResult):
    """``pairlab audit``: ``attribution``, ``cartography`` (DataFrames)."""


class Validation(StageResult):
    """``pairlab audit --validate``: ``validation`` (dict), ``eval_pairs``."""


class Ablation(StageResult):
    """``pairlab ablate``: ``table`` (comparison.parquet), ``comparison`` (dict), ``pool``, ``eval_pairs``,
    and every arm's stage directories through :meth:`curation`, :meth:`run`, :meth:`evaluation`."""

    ALIASES = {"table": dirs.AblationDir.COMPARISON_TABLE, "comparison": dirs.AblationDir.COMPARISON,
               "pool": dirs.AblationDir.POOL_PAIRS,
               "eval_pairs": dirs.AblationDir.EVAL_PAIRS}

    @property
    def arms(self) -> list[str]:
        return [a["name"] for a in self.comparison.get("arms", [])]

    def curation(self, arm: str) -> Curation:
        return load(self.path / "arms" / arm / "curate")  # type: ignore[return-value]

    def run(self, arm: str, seed: int = 0) -> Run:
        return load(self.path / "arms" / arm / f"seed{seed}" / "run")  # type: ignore[return-value]

    def evaluation(self, arm: str, seed: int = 0) -> Evaluation:
        return load(self.path / "arms" / arm / f"seed{seed}" / "eval")  # type: ignore[return-value]


#: Manifest stage -> the type :func:`load` returns.
RESULT_TYPES: dict[str, type[StageResult]] = {
    "simulate": Simulation, "simulate-noise": Noise, "curate": Curation, "train": Run, "evaluate": Evaluation,
    "compare": Comparison, "audit": Audit, "audit-validate": Validation, "ablate": Ablation,
}


def load(path: str | os.PathLike) -> StageResult:
    """The stage directory at ``path``, verified, as its typed object (see the module doc)."""
    kind, manifest = dirs.verify(path)
    return RESULT_TYPES.get(kind.STAGE, StageResult)(Path(path), manifest)


__all__ = ["Ablation", "Audit", "Comparison", "Curation", "Evaluation", "Noise", "RESULT_TYPES", "Run",
           "Simulation", "StageResult", "Validation", "load"]
