"""Side effects of the simulator: write raw records, pass them through the reader, manifest.

The convenience pairs files are made by the same reader real raw UltraFeedback goes
through (``pairlab.io.read_pairs``), so simulated and real data take one path.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..artifacts import write_jsonl, write_parquet
from ..config import to_dict
from ..dirs import NoiseDir, SimulateDir
from ..schema import PairDataError
from .config import SimulateConfig
from .generate import simulate
from .noise import inject_noise


def read_raw_pairs(path: str | Path, cfg: SimulateConfig) -> pd.DataFrame:
    """Raw simulator records on disk -> pairs table, through the project's reader."""
    from ..io import read_pairs

    return read_pairs(str(path), format="raw", binarize=cfg.binarize, pairing=cfg.pairing,
                      seed=cfg.seed)


def label_noise_rate(pairs: pd.DataFrame) -> float:
    """Share of pairs whose label disagrees with the truth (NaN for an empty table)."""
    if len(pairs) == 0 or "true_preference_correct" not in pairs:
        return float("nan")
    return float(1.0 - pairs["true_preference_correct"].astype(bool).mean())


def _train_pairs(raw_path: Path, cfg: SimulateConfig) -> pd.DataFrame:
    pairs = read_raw_pairs(raw_path, cfg)
    if cfg.label_flip_rate > 0:
        pairs = inject_noise(pairs, cfg.label_flip_rate, cfg.flip_by, seed=cfg.seed, noise=cfg.noise,
                             group=cfg.noise_group)
    return pairs


def _eval_pairs(raw_path: Path, cfg: SimulateConfig) -> pd.DataFrame:
    pairs = read_raw_pairs(raw_path, cfg)
    # The oracle-rated eval split has distinct ratings per record, so the reader orders
    # every pair by the truth; check it rather than trust it.
    if len(pairs) and not pairs["true_preference_correct"].astype(bool).all():
        raise PairDataError("eval pairs are not all truly ordered (simulator bug)",
                            file=str(raw_path), field="true_preference_correct")
    return pairs


def simulate_pairs(cfg: SimulateConfig | None = None, **overrides: Any
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train pairs, eval pairs) for a config, via raw records and the reader, in memory.

    ``simulate_pairs(n=60_000, length="realistic")`` is the one-liner for benchmarks.
    """
    result = simulate(cfg, **overrides)
    with tempfile.TemporaryDirectory(prefix="pairlab-sim-") as tmp:
        train_raw = write_jsonl(Path(tmp) / SimulateDir.TRAIN_RAW, result.train_records)
        train = _train_pairs(train_raw, result.config)
        if not result.eval_records:
            return train, train.iloc[0:0].copy()
        eval_raw = write_jsonl(Path(tmp) / SimulateDir.EVAL_RAW, result.eval_records)
        return train, _eval_pairs(eval_raw, result.config)


def write_simulation(cfg: SimulateConfig | None, out_dir: str | Path, *,
                     pairs: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Simulate and write ``out_dir``: raw ``train.jsonl``/``eval.jsonl``, the pairs the
    reader makes of them (``train_pairs.parquet``/``eval_pairs.parquet``, unless
    ``pairs=False``) and ``manifest.json`` (last). A finished ``out_dir`` is replaced only
    with ``overwrite``. Returns the manifest's summary dict."""
    started = time.time()
    cfg = (cfg or SimulateConfig()).validate()
    out = Path(out_dir)
    SimulateDir.prepare(out, overwrite=overwrite)
    result = simulate(cfg)
    SimulateDir.start(out, overwrite=overwrite)
    train_raw = write_jsonl(out / SimulateDir.TRAIN_RAW, result.train_records)
    if result.eval_records:
        eval_raw = write_jsonl(out / SimulateDir.EVAL_RAW, result.eval_records)
    summary: dict[str, Any] = dict(result.stats)
    if pairs:
        train = _train_pairs(train_raw, cfg)
        write_parquet(out / SimulateDir.TRAIN_PAIRS, train)
        summary.update(n_train_pairs=len(train), label_noise_rate=label_noise_rate(train),
                       n_explicit_flips=int(train["flipped"].sum()) if "flipped" in train else 0)
        if result.eval_records:
            held_out = _eval_pairs(eval_raw, cfg)
            write_parquet(out / SimulateDir.EVAL_PAIRS, held_out)
            summary.update(n_eval_pairs=len(held_out),
                           eval_label_noise_rate=label_noise_rate(held_out))
    SimulateDir.finish(out, config=to_dict(cfg), seed=cfg.seed, started=started, summary=summary)
    return summary


def write_noisy_pairs(pairs: pd.DataFrame, out_dir: str | Path, *, flip_rate: float,
                      flip_by: str = "gap", seed: int = 0, noise: str = "uniform", group: str = "source",
                      inputs: dict[str, Any] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Inject label noise into a pairs table and write ``out_dir/pairs.parquet``, then the manifest."""
    started = time.time()
    spec = (inputs or {}).get("spec")
    NoiseDir.start(out_dir, inputs=[spec], overwrite=overwrite)
    noisy = inject_noise(pairs, flip_rate, flip_by, seed=seed, noise=noise, group=group)
    write_parquet(Path(out_dir) / NoiseDir.PAIRS, noisy)
    summary = {"n_pairs": len(noisy), "n_flipped": int(noisy["flipped"].sum()),
               "flip_share": float(noisy["flipped"].mean()) if len(noisy) else float("nan"),
               "label_noise_rate": label_noise_rate(noisy), "noise": noisy.attrs.get("noise", {})}
    NoiseDir.finish(out_dir,
                   config={"flip_rate": flip_rate, "flip_by": flip_by, "seed": seed, "noise": noise,
                           "noise_group": group},
                   inputs=inputs or {}, seed=seed, started=started, summary=summary)
    return summary
