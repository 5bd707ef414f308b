"""What ``pairlab inspect`` shows before curation: a pure function of the pairs table.

The summary is a JSON-ready dict (``inspect --json``) and :func:`format_summary` renders
it for people. Everything is vectorised over columns; only the few example rows are
built in Python.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..logprobs import length_profile
from ..preference import rating_gap
from ..schema import ASPECTS, PAIR_COLUMNS, SCORE_LIMIT, usable_scores
from .rejects import describe_reject


def _range(values: pd.Series) -> dict[str, Any]:
    """min / max / mean of the usable values; unknown (NaN) ones counted as ``missing``, infinite
    ones and those beyond ``SCORE_LIMIT`` (flagged ``nonfinite_score`` on their rows, unknown in
    gaps) as ``nonfinite``."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    finite = numbers[~np.isnan(usable_scores(numbers))]
    counts = {"missing": int(numbers.isna().sum()), "nonfinite": int(numbers.notna().sum() - len(finite))}
    if finite.empty:
        return {"min": None, "max": None, "mean": None, **counts}
    return {"min": float(finite.min()), "max": float(finite.max()), "mean": round(float(finite.mean()), 4), **counts}


def _snippet(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _example(row: pd.Series) -> dict[str, Any]:
    return {"pair_id": row["pair_id"], "prompt": _snippet(row["prompt_text"]),
            "chosen": _snippet(row["chosen"]), "rejected": _snippet(row["rejected"]),
            "score_chosen": None if pd.isna(row["score_chosen"]) else float(row["score_chosen"]),
            "score_rejected": None if pd.isna(row["score_rejected"]) else float(row["score_rejected"])}


def summarize_pairs(df: pd.DataFrame, examples: int = 2, token_lengths: pd.DataFrame | None = None,
                    model: str | None = None) -> dict[str, Any]:
    """Rows, layout, score ranges, ties/inversions, sources, models, prompt turns, flags; with
    ``token_lengths`` (:func:`pairlab.logprobs.token_lengths` under ``model``'s tokenizer) also
    token-length percentiles and the share truncated at common max_length values."""
    stats = dict(df.attrs.get("read_stats", {}))
    # inf / absurd scores (flagged nonfinite_score) are unknown here, not an infinite gap
    gap = rating_gap(df)
    flags = df["flags"].replace("", np.nan).dropna().str.split(";").explode()
    flag_counts = {str(k): int(v) for k, v in flags.value_counts().items()}
    flag_examples = {}
    for flag in flag_counts:
        hit = df[df["flags"].str.split(";").map(lambda fs, f=flag: f in fs)].head(examples)
        flag_examples[flag] = [_example(row) for _, row in hit.iterrows()]
    turns = df["prompt"].map(len)
    aspects = {f"{side}_{a}": int(df[f"{side}_{a}"].notna().sum())
               for side in ("chosen", "rejected") for a in ASPECTS}
    return {
        "rows": int(len(df)),
        "layout": stats.get("layout"),
        # every input row is read or rejected: input_rows = read + rejected
        "input_rows": stats.get("rows"), "rejected": stats.get("rejected", 0),
        "read": stats,
        "scores": {"score_chosen": _range(df["score_chosen"]),
                   "score_rejected": _range(df["score_rejected"]),
                   "gap": _range(gap),
                   "ties": int((gap == 0).sum()), "inverted": int((gap < 0).sum())},
        "aspect_ratings_known": {k: v for k, v in aspects.items() if v},
        "sources": {str(k): int(v) for k, v in df["source"].replace("", "(unknown)")
                    .value_counts().head(10).items()},
        "chosen_models": {str(k): int(v) for k, v in df["chosen_model"].replace("", "(unknown)")
                          .value_counts().head(5).items()},
        "rejected_models": {str(k): int(v) for k, v in df["rejected_model"].replace("", "(unknown)")
                            .value_counts().head(5).items()},
        "prompts": {"unique": int(df["prompt_id"].nunique()),
                    "multi_turn": int((turns > 1).sum()), "max_turns": int(turns.max()) if len(turns) else 0,
                    # a context ending on an assistant turn is usually a parsing quirk upstream
                    "last_turn_not_user": int(df["prompt"].map(
                        lambda m: bool(len(m)) and m[-1]["role"] != "user").sum())},
        "chars_median": {col: int(df[col].str.len().median())
                         for col in ("prompt_text", "chosen", "rejected")} if len(df) else {},
        "extra_columns": [c for c in df.columns if c not in PAIR_COLUMNS],
        "flags": flag_counts,
        "flag_examples": flag_examples,
        # token lengths under a model's tokenizer + chat template (inspect --model): what
        # max_length truncates, the way DPO training and evaluate do
        "tokens": None if token_lengths is None else {"model": model, **length_profile(token_lengths)},
    }


def _fmt_range(r: dict[str, Any]) -> str:
    extra = (f", {r['missing']} missing" if r["missing"] else "") + \
        (f", {r['nonfinite']} infinite or beyond ±{SCORE_LIMIT:g}" if r.get("nonfinite") else "")
    if r["min"] is None:
        return "unknown (" + (extra.lstrip(", ") or "0 missing") + ")"
    return f"{r['min']:g} .. {r['max']:g}  (mean {r['mean']:g})" + extra


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the text ``pairlab inspect`` prints."""
    read = summary["read"]
    s = summary["scores"]
    lines = [
        f"input        {read.get('spec', '?')}",
        f"layout       {summary['layout']}" + (f"  (auto-mapped: {_fmt_map(read['auto_mapped'])})"
                                              if read.get("auto_mapped") else ""),
        f"rows         {read.get('rows', '?')}: {read.get('records', '?')} read + "
        f"{read.get('rejected', 0)} rejected -> {summary['rows']} pairs"
        + (f" ({read['ties_dropped']} ties dropped: the label prefers neither answer)"
           if read.get("ties_dropped") and "binarize" not in read else ""),
    ]
    if read.get("rejected"):
        shown = read.get("rejects", [])
        lines.append(f"rejected     {read['rejected']} row{'s' if read['rejected'] != 1 else ''} "
                     "could not become a pair (--strict stops at the first):")
        lines += [f"  {describe_reject(r)}" for r in shown]
        if read["rejected"] > len(shown):
            lines.append(f"  ... and {read['rejected'] - len(shown)} more "
                         "(all of them: pairlab convert --rejects FILE)")
    if "binarize" in read:
        lines.append(f"binarized    {read['binarize']}, {read['pairing']} (seed {read['seed']}); "
                     f"ties dropped {read.get('ties_dropped', 0)}, prompts with <2 scored "
                     f"completions {read.get('prompts_too_few_scored', 0)}")
    lines += [
        f"score_chosen   {_fmt_range(s['score_chosen'])}",
        f"score_rejected {_fmt_range(s['score_rejected'])}",
        f"gap            {_fmt_range(s['gap'])}; ties {s['ties']}, inverted {s['inverted']}",
        f"aspects      {'known for ' + str(max(summary['aspect_ratings_known'].values())) + ' rows' if summary['aspect_ratings_known'] else 'none'}",
        f"sources      {_fmt_counts(summary['sources'])}",
        f"models       chosen: {_fmt_counts(summary['chosen_models'])}",
        f"             rejected: {_fmt_counts(summary['rejected_models'])}",
        f"prompts      {summary['prompts']['unique']} unique, {summary['prompts']['multi_turn']} "
        f"multi-turn (max {summary['prompts']['max_turns']} messages), "
        f"{summary['prompts']['last_turn_not_user']} not ending on a user turn",
    ]
    if summary["chars_median"]:
        c = summary["chars_median"]
        lines.append(f"median chars prompt {c['prompt_text']}, chosen {c['chosen']}, "
                     f"rejected {c['rejected']}")
    if summary["extra_columns"]:
        lines.append(f"extra columns {', '.join(summary['extra_columns'])}")
    lines.append(f"flagged      {read.get('flagged', 0)} rows (kept; curation decides): "
                 f"{_fmt_counts(summary['flags'])}")
    for flag, rows in summary["flag_examples"].items():
        for ex in rows:
            lines.append(f"  [{flag}] {ex['pair_id']}  prompt: {ex['prompt']!r}")
            lines.append(f"      chosen: {ex['chosen']!r}  rejected: {ex['rejected']!r}")
    if summary.get("tokens"):
        lines += _fmt_tokens(summary["tokens"])
    return "\n".join(lines)


def _fmt_tokens(tokens: dict[str, Any]) -> list[str]:
    """Token-length percentiles and truncated shares (``inspect --model``) as table lines."""
    lines = [f"tokens       {tokens['model']} tokenizer + chat template, {tokens['pairs']} pairs "
             f"(as DPO training tokenizes them)",
             f"  {'':<26}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"]
    for name, row in tokens["percentiles"].items():
        cells = "".join(f"{'-' if row[k] is None else format(row[k], 'g'):>8}" for k in ("p50", "p90", "p99", "max"))
        lines.append(f"  {name:<26}{cells}")
    lines.append(f"  truncated ({tokens['truncation_mode']}) at max_length / of which excluded "
                 f"(prompt alone reaches it: no completion token left):")
    for max_length, at in tokens["at_max_length"].items():
        lines.append(f"  {max_length:>6}: {100 * at['truncated_share']:5.1f}% truncated ({at['truncated']}), "
                     f"{100 * at['excluded_share']:5.1f}% excluded ({at['excluded']})")
    return lines


def _fmt_map(mapping: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items())
