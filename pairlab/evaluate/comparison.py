"""`compare()`: evaluations of several runs on the same pairs, each against the first (the baseline).

Per-pair statistics need the same pairs on both sides, matched by ``pair_id``:

* :func:`pairlab.stats.paired_comparison` on per-pair correctness (delta = other - baseline
  with a bootstrap CI, McNemar's exact test, the minimum detectable effect), with Holm's
  correction across the comparisons when there are several;
* a paired bootstrap of the mean margin difference (each resample keeps pairs together);
* the same paired comparison on reference-free correctness, which is the number that moves
  when the baseline is an untrained model (all of its margins are 0).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from .. import artifacts
from ..dirs import CompareDir, EvalDir
from ..schema import PairDataError
from ..stats import paired_bootstrap, paired_comparison, verdict, with_holm
from .runner import METRICS, PER_PAIR

COMPARISON = CompareDir.COMPARISON


#: The per_pair.parquet columns a comparison reads.
COMPARED_COLUMNS = ("pair_id", "correct", "tie", "margin")


def read_eval(eval_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(per_pair table, metrics) of a complete evaluation directory (its manifest verified)."""
    path = Path(eval_dir)
    EvalDir.verify(path)
    per_pair = pd.read_parquet(path / PER_PAIR)
    missing = [c for c in COMPARED_COLUMNS if c not in per_pair.columns]
    if missing:  # an older pairlab's evaluation, or one written by hand
        raise PairDataError(f"has no column '{missing[0]}' (columns: {list(per_pair.columns)})",
                        file=str(path / PER_PAIR), field=missing[0],
                        hint=f"evaluate again: pairlab evaluate ... --out {path} --overwrite")
    return per_pair, artifacts.read_json(path / METRICS)


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
    ``comparisons`` (baseline vs each other): ``accuracy`` and ``ref_free`` are paired
    comparisons of correctness (delta and CI, ``baseline_only_correct`` /
    ``other_only_correct``, McNemar's p, Holm-corrected ``p_holm``, ``significant``, ``mde``,
    ``verdict`` in words); ``margin_bootstrap`` is a paired bootstrap of the margins.
    Differences are other minus baseline.
    """
    if len(eval_dirs) < 2:
        raise PairDataError("compare needs at least two evaluation directories")
    dirs = [str(d) for d in eval_dirs]
    seen: dict[Path, str] = {}
    for d in dirs:
        if Path(d).resolve() in seen:
            raise PairDataError(f"given twice (also as {seen[Path(d).resolve()]}): an evaluation compared with "
                                "itself differs by nothing", file=d, hint="pass each evaluation directory once")
        seen[Path(d).resolve()] = d
    loaded = [read_eval(d) for d in dirs]
    base, _ = loaded[0]
    evals = [_summary(d, pp, info) for d, (pp, info) in zip(dirs, loaded)]
    comparisons = []
    for other_dir, (other, _) in zip(dirs[1:], loaded[1:]):
        other = _aligned(base, other, dirs[0], other_dir)
        comparisons.append({
            "baseline": dirs[0], "other": other_dir, "n_pairs": int(len(base)),
            "accuracy": paired_comparison(base["correct"].to_numpy(bool), other["correct"].to_numpy(bool),
                                          n_boot=n_boot, seed=seed),
            "margin_bootstrap": paired_bootstrap(base["margin"].to_numpy(float), other["margin"].to_numpy(float),
                                                 n_boot=n_boot, seed=seed),
            "ref_free": paired_comparison(base["ref_free_correct"].to_numpy(bool),
                                          other["ref_free_correct"].to_numpy(bool), n_boot=n_boot, seed=seed),
        })
    # Holm across the runs compared with the baseline, separately for each measure.
    for key in ("accuracy", "ref_free"):
        for c, corrected in zip(comparisons, with_holm([c[key] for c in comparisons])):
            c[key] = corrected
    # the answer in words, by the one decision rule ablate and the audit validation use too
    result_verdict = verdict({c["other"]: c["accuracy"] for c in comparisons}, dirs[0], noun="evaluation")
    return {"baseline": dirs[0], "n_boot": n_boot, "seed": seed, "evals": evals, "comparisons": comparisons,
            "verdict": result_verdict}


def write_comparison(result: dict[str, Any], out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``comparison.json``, then the manifest, into ``out_dir`` (a finished one only with ``overwrite``)."""
    out = Path(out_dir)
    eval_dirs = [e["eval_dir"] for e in result["evals"]]
    CompareDir.start(out, inputs=eval_dirs, overwrite=overwrite)
    path = artifacts.write_json(out / COMPARISON, result)
    CompareDir.finish(out, config={"n_boot": result["n_boot"], "seed": result["seed"]},
                      inputs={"eval_dirs": eval_dirs})
    return path


def format_comparison(result: dict[str, Any]) -> str:
    """A few plain lines for the terminal."""
    lines = [f"baseline: {result['baseline']}"]
    for e in result["evals"]:
        lines.append(f"  {e['eval_dir']}: accuracy {e['accuracy']:.3f} ({e['ties']} ties), "
                     f"ref-free {e['ref_free_accuracy']:.3f}, mean margin {e['mean_margin']:.4f}")
    for c in result["comparisons"]:
        m, b = c["accuracy"], c["margin_bootstrap"]
        lines.append(f"{c['other']} vs baseline: accuracy {m['verdict']} "
                     f"[{m['other_only_correct']} pairs only it got right, {m['baseline_only_correct']} only the "
                     f"baseline]; margin {b['mean_difference']:+.4f} [{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}] "
                     f"p={b['p_value']:.3g}; ref-free {c['ref_free']['verdict']}")
    if result.get("verdict"):
        lines.append(f"verdict: {result['verdict']['text']}")
    return "\n".join(lines)
