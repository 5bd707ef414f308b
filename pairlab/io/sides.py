"""Layouts whose rows hold two answers and a label naming the preferred one.

Many published preference datasets do not store ``chosen``/``rejected``: they store answer A,
answer B and a label (an index, a winner name, a signed strength). Mapping A to ``chosen``
and B to ``rejected`` would read about half of such a file backwards, and every tie as a
preference. Each :class:`Sides` convention here says which columns are the two answers and
how its label reads; its layout picks the sides per row:

* the preferred answer becomes ``chosen`` and the other ``rejected``, with their side-specific
  scores and models swapped along;
* a tie (the label says neither is better) gives no pair and is counted in ``ties_dropped``;
* a label the convention does not know is a rejected row, with the values it takes.

The label column itself is kept as an extra column. The built-in conventions are detected by
their columns; :func:`register_sides` adds another (a ``--format`` name, detected the same way).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..schema import PAIR_COLUMNS, PairDataError, finalize_pairs
from .fields import MISSING
from .layouts import ReadContext, _keep_input_ids, flat_rows, register_layout
from .sources import RecordBatch

#: What a label reads as: the preferred side, or a tie.
A, B, TIE = "a", "b", None


@dataclass(frozen=True)
class Sides:
    """Two answer columns and the label column that names the preferred one."""

    name: str
    a: str
    b: str
    label: str
    #: label value -> A, B or TIE; raises ValueError (TypeError, LookupError) for a value it does not know
    pick: Callable[[Any], str | None]
    #: the values the label takes, for the error a row with another value gets
    label_values: str
    #: the column holding the prompt (None: the answers are full conversations, or ``prompt``)
    prompt: str | None = None
    #: side-specific score and model columns, (A's, B's): swapped along with the answers
    scores: tuple[str, str] | None = None
    models: tuple[str, str] | None = None
    help: str = ""
    detect: bool = True


def _numbered(a_value: int, b_value: int) -> Callable[[Any], str | None]:
    """A numeric label: ``a_value`` prefers A, ``b_value`` B (PKU's index 0 / 1, SHP's 1 / 0)."""
    def pick(value: Any) -> str | None:
        if isinstance(value, (bool, np.bool_)) or value is None:
            raise ValueError(value)
        number = float(value)
        if number not in (a_value, b_value):
            raise ValueError(value)
        return A if number == a_value else B
    return pick


def _winner_name(value: Any) -> str | None:
    """Chatbot Arena's ``winner``: model_a, model_b, tie, tie (bothbad)."""
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text == "model_a":
        return A
    if text == "model_b":
        return B
    if text in ("tie", "tie (bothbad)"):
        return TIE
    raise ValueError(value)


def _signed_strength(value: Any) -> str | None:
    """HelpSteer2's ``preference_strength``: negative prefers response_1, positive response_2, 0 a tie."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise ValueError(value)
    number = float(value)
    if math.isnan(number):
        raise ValueError(value)
    return A if number < 0 else B if number > 0 else TIE


#: name -> convention (each is also a registered layout of that name).
SIDES_REGISTRY: dict[str, Sides] = {}


def register_sides(sides: Sides, *, aliases: tuple[str, ...] = ()) -> Sides:
    """Add a two-answers-and-a-label convention as a layout (``--format NAME``; detected by its
    answer and label columns unless ``detect=False``)."""
    SIDES_REGISTRY[sides.name] = sides
    register_layout(sides.name, _detector(sides), _rows(sides), aliases=aliases,
                    help=sides.help or f"`{sides.a}` / `{sides.b}`, preferred side in `{sides.label}`")
    return sides


def _detector(sides: Sides) -> Callable[[dict[str, Any], dict[str, str]], bool]:
    def detect(record: dict[str, Any], plan: dict[str, str]) -> bool:
        if not sides.detect or sides.label not in record:
            return False
        if _maps_answers(sides, plan):  # would ignore the label: refused when the rows are read
            return True
        # the answers under their own names, in a file that does not name its own chosen/rejected
        return sides.a in record and sides.b in record and not ("chosen" in record and "rejected" in record)
    return detect


def _maps_answers(sides: Sides, plan: dict[str, str]) -> bool:
    return {plan.get("chosen"), plan.get("rejected")} == {sides.a, sides.b}


def _sided(field: str) -> bool:
    """A schema field that belongs to one side of a pair (it moves when the sides swap)."""
    return field.startswith(("chosen", "rejected", "score_")) or field.endswith("_model")


def _rows(sides: Sides) -> Callable[[ReadContext], pd.DataFrame]:
    def rows(ctx: ReadContext) -> pd.DataFrame:
        batch = ctx.batch
        if _maps_answers(sides, ctx.plan):
            raise PairDataError(f"--map chosen={ctx.plan['chosen']} --map rejected={ctx.plan['rejected']} "
                                f"would ignore '{sides.label}', which names the preferred answer per row "
                                "(about half the pairs would be read backwards)", file=batch.name,
                                field="--map", hint=f"drop those two --map: layout {sides.name} picks the sides "
                                                    f"by '{sides.label}' ({sides.label_values})")
        sided = sorted(f for f, path in ctx.plan.items() if _sided(f) and path != f)
        if sided:  # the label decides which answer is chosen: a fixed column cannot follow it
            raise PairDataError(f"--map {sided[0]}={ctx.plan[sided[0]]}: in layout {sides.name} the label "
                                f"'{sides.label}' decides per row which answer is chosen, so a column cannot "
                                f"be mapped to {sided[0]}", file=batch.name, field="--map",
                                hint="scores and models move with their answer"
                                     + (f" ({', '.join(sides.scores or ())}{', ' if sides.scores and sides.models else ''}"
                                        f"{', '.join(sides.models or ())})" if sides.scores or sides.models else "")
                                     + "; drop that --map")
        records, kept, ties, names = [], [], 0, {}
        for index, record in enumerate(ctx.records):
            label = record.get(sides.label, MISSING)
            try:
                side = sides.pick(label) if label is not MISSING else sides.pick(None)
            except (ValueError, TypeError, LookupError, OverflowError):
                shown = "missing" if label is MISSING or label is None else repr(label)
                ctx.log.add(PairDataError(f"label {shown} names no preferred answer", field=sides.label,
                                          **batch.where(index), hint=f"{sides.label} is {sides.label_values}"),
                            batch.records[index])
                continue
            if side is TIE:
                ties += 1
                continue
            records.append(_oriented(record, sides, side))
            kept.append(index)
            names[batch.positions[index]] = _input_names(record, sides, side)
        ctx.stats["ties_dropped"] = ctx.stats.get("ties_dropped", 0) + ties
        sub = RecordBatch(batch.name, [batch.records[i] for i in kept], [batch.positions[i] for i in kept],
                          batch.position_kind, rows=batch.rows)
        out = flat_rows(sub, records, "generic", _InputNames(ctx.log, batch.position_kind, names),
                        system="system" in ctx.plan)
        if len(out) == 0:
            return finalize_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS)))
        return _keep_input_ids(out, finalize_pairs(out))
    return rows


def _input_names(record: dict[str, Any], sides: Sides, side: str) -> dict[str, str]:
    """Schema field -> the input column it is read from in this row (as :func:`_oriented` moves them)."""
    first, second = (0, 1) if side == A else (1, 0)
    answers = (sides.a, sides.b)
    names = {"chosen": answers[first], "rejected": answers[second]}
    for pair, own in ((sides.scores, ("score_chosen", "score_rejected")),
                      (sides.models, ("chosen_model", "rejected_model"))):
        if pair:
            names.update({own[0]: pair[first], own[1]: pair[second]})
    if sides.prompt and sides.prompt != "prompt" and "prompt" not in record:
        names["prompt"] = sides.prompt
    return names


class _InputNames:
    """The reject log a sides layout's rows are read into: a reject of ``chosen``,
    ``rejected`` (their scores, models, the prompt) names the input column the row's value
    came from (``response_1``), in its field and its reason, as the file has no ``rejected``."""

    def __init__(self, log: Any, position_kind: str, names: dict[int, dict[str, str]]):
        self.log, self.position_kind, self.names = log, position_kind, names

    def __len__(self) -> int:
        return len(self.log)

    def __getattr__(self, name: str) -> Any:  # strict, rows, ...: the wrapped log's
        return getattr(self.log, name)

    def add(self, err: PairDataError, record: Any = None) -> None:
        names = self.names.get(getattr(err, self.position_kind), {})
        if err.field in names:
            pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
            err = PairDataError(pattern.sub(lambda m: names[m.group(1)], err.message), file=err.file,
                                line=err.line, row=err.row, field=names[err.field], hint=err.hint)
        self.log.add(err, record)


def _oriented(record: dict[str, Any], sides: Sides, side: str) -> dict[str, Any]:
    """The record with the preferred answer as ``chosen`` (its score and model along)."""
    first, second = (0, 1) if side == A else (1, 0)
    answers = (sides.a, sides.b)
    moved = {sides.a, sides.b, *(sides.scores or ()), *(sides.models or ())}
    out = {k: v for k, v in record.items() if k not in moved}
    if sides.prompt and sides.prompt != "prompt" and "prompt" not in record:
        out["prompt"] = out.pop(sides.prompt, MISSING)
        if out["prompt"] is MISSING:
            del out["prompt"]
    out["chosen"], out["rejected"] = record.get(answers[first], MISSING), record.get(answers[second], MISSING)
    for pair, names in ((sides.scores, ("score_chosen", "score_rejected")),
                        (sides.models, ("chosen_model", "rejected_model"))):
        if pair:
            for column, own in zip((pair[first], pair[second]), names):
                if column in record:
                    out[own] = record[column]
    for key in ("chosen", "rejected"):
        if out[key] is MISSING:
            del out[key]
    return out


# ---------------------------------------------------------------- the built-in conventions

register_sides(Sides(
    "pku-saferlhf", "response_0", "response_1", "better_response_id", _numbered(0, 1), "0 or 1",
    help="PKU-Alignment/PKU-SafeRLHF: `response_0` / `response_1`, the more helpful one in "
         "`better_response_id` (`--format pku-saferlhf-safer`: the safer one, `safer_response_id`)"))
register_sides(Sides(
    "pku-saferlhf-safer", "response_0", "response_1", "safer_response_id", _numbered(0, 1), "0 or 1",
    detect=False, help="PKU-SafeRLHF read by `safer_response_id` (only by --format)"))
register_sides(Sides(
    "shp", "human_ref_A", "human_ref_B", "labels", _numbered(1, 0), "1 (A preferred) or 0 (B preferred)",
    prompt="history", scores=("score_A", "score_B"),
    help="stanfordnlp/SHP: `history`, `human_ref_A` / `human_ref_B`, `labels` 1 when A is preferred; "
         "the upvotes `score_A` / `score_B` become the scores"))
register_sides(Sides(
    "chatbot-arena", "conversation_a", "conversation_b", "winner", _winner_name,
    "model_a, model_b, tie or tie (bothbad)", models=("model_a", "model_b"),
    help="lmsys/chatbot_arena_conversations (and arena-human-preference): `conversation_a` / "
         "`conversation_b`, `winner` model_a / model_b; ties dropped"), aliases=("arena",))
register_sides(Sides(
    "helpsteer2", "response_1", "response_2", "preference_strength", _signed_strength,
    "a number: below 0 prefers response_1, above 0 response_2, 0 a tie",
    help="nvidia/HelpSteer2 preference: `response_1` / `response_2`, `preference_strength` "
         "< 0 prefers response_1, > 0 response_2; 0 (a tie) dropped"))


__all__ = ["A", "B", "SIDES_REGISTRY", "Sides", "TIE", "register_sides"]
