"""`compare()`: evaluations of several runs on the same pairs, each against the first (the baseline).

Per-pair statistics need the same pairs on both sides, matched by ``pair_id``:

* McNemar's exact test on per-pair correctness (only the pairs the two disagree on count);
* a paired bootstrap of the mean margin difference (each resample keeps pairs together);
* the same McNemar test on reference-free correctness, which is the number that moves
  when the baseline is an untrained model (all of its margins are 0).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from .. import artifacts
from ..schema import PairDataError
from .runner import METRICS, PER_PAIR
from .stats import mcnemar_exact, paired_bootstrap

COMPARISON = "comparison.json"


def read_eval(eval_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(per_pair table, metrics) of an evaluation directory."""
    path = Path(eval_dir)
    if not (path / PER_PAIR).exists():
        raise PairDataError(f"not an evaluation directory (no {PER_PAIR})", file=str(path),
                            hint="pass directories written by `pairlab evaluate --out`")
    per_pair = pd.read_parquet(path / PER_PAIR)
    info = artifacts.read_json(path / METRICS) if (path / METRICS).exists() else {}
    return per_pair, info


def _aligned(base: pd.DataFrame, other: pd.DataFrame, base_dir: str, other_dir: str) -> pd.DataFrame:
    """``other`` in ``base``'s pair order; an error naming the difference when the pairs differ."""
    a, b = set(base["pair_id"]), set(other["pair_id"])
    if a != b:
        only_a, only_b = sorted(a - b), sorted(b - a)
        raise PairDataError(
            f"evaluated on different pairs: {len(only_a)} only in {base_dir}"
            + (f" (e.g. {only_a[0]})" if only_a else "")
            + f", {len(only_b)} only in {other_dir}" + (f" (e.g. {only_b[0]})" if only_b else ""),
            file=other_dir, field="pair_id", hint="evaluate every run with the same --eval data")
    return other.set_index("pair_id").loc[base["pair_id"]].reset_index()


def _summary(eval_dir: str, per_pair: pd.DataFrame, info: dict[str, Any]) -> dict[str, Any]:
    return {"eval_dir": eval_dir, "model": info.get("model"), "run": info.get("run"),
            "n_pairs": int(len(per_pair)), "accuracy": float(per_pair["correct"].mean()),
            "ties": int(per_pair["tie"].sum()), "mean_margin": float(per_pair["margin"].mean()),
            "ref_free_accuracy": float(per_pair["ref_free_correct"].mean())}


def compare(eval_dirs: list[str | os.PathLike], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Compare each evaluation with the first one (the baseline) on the same pairs.

    Returns the content of ``comparison.json``: ``evals`` (one summary per directory) and
    ``comparisons`` (baseline vs each other: accuracy difference, McNemar exact on
    correctness, paired bootstrap on margins, and McNemar on reference-free correctness).
    Differences are other minus baseline.
    """
    if len(eval_dirs) < 2:
        raise PairDataError("compare needs at least two evaluation directories")
    dirs = [str(d) for d in eval_dirs]
    loaded = [read_eval(d) for d in dirs]
    base, _ = loaded[0]
    evals = [_summary(d, pp, info) for d, (pp, info) in zip(dirs, loaded)]
    comparisons = []
    for other_dir, (other, _) in zip(dirs[1:], loaded[1:]):
        other = _aligned(base, other, dirs[0], other_dir)
        comparisons.append({
            "baseline": dirs[0], "other": other_dir, "n_pairs": int(len(base)),
            "accuracy_baseline": float(base["correct"].mean()), "accuracy_other": float(other["correct"].mean()),
            "accuracy_difference": float(other["correct"].mean() - base["correct"].mean()),
            "mcnemar": mcnemar_exact(base["correct"].to_numpy(bool), other["correct"].to_numpy(bool)),
            "margin_bootstrap": paired_bootstrap(base["margin"].to_numpy(float), other["margin"].to_numpy(float),
                                                 n_boot=n_boot, seed=seed),
            "ref_free_accuracy_difference": float(other["ref_free_correct"].mean()
                                                  - base["ref_free_correct"].mean()),
            "ref_free_mcnemar": mcnemar_exact(base["ref_free_correct"].to_numpy(bool),
                                              other["ref_free_correct"].to_numpy(bool)),
        })
    return {"baseline": dirs[0], "n_boot": n_boot, "seed": seed, "evals": evals, "comparisons": comparisons}


def write_comparison(result: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``comparison.json`` (and a manifest) into ``out_dir``."""
    out = Path(out_dir)
    path = artifacts.write_json(out / COMPARISON, result)
    artifacts.write_manifest(out, stage="compare", config={"n_boot": result["n_boot"], "seed": result["seed"]},
                             inputs={"eval_dirs": [e["eval_dir"] for e in result["evals"]]},
                             outputs={"comparison": COMPARISON})
    return path


def format_comparison(result: dict[str, Any]) -> str:
    """A few plain lines for the terminal."""
    lines = [f"baseline: {result['baseline']}"]
    for e in result["evals"]:
        lines.append(f"  {e['eval_dir']}: accuracy {e['accuracy']:.3f} ({e['ties']} ties), "
                     f"ref-free {e['ref_free_accuracy']:.3f}, mean margin {e['mean_margin']:.4f}")
    for c in result["comparisons"]:
        m, b = c["mcnemar"], c["margin_bootstrap"]
        lines.append(f"{c['other']} vs baseline: accuracy {c['accuracy_difference']:+.3f} "
                     f"(McNemar p={m['p_value']:.3g}, {m['b_only_correct']} vs {m['a_only_correct']} discordant), "
                     f"margin {b['mean_difference']:+.4f} [{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}] "
                     f"p={b['p_value']:.3g}; ref-free {c['ref_free_accuracy_difference']:+.3f} "
                     f"(p={c['ref_free_mcnemar']['p_value']:.3g})")
    return "\n".join(lines)
