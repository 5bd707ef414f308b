"""Field mapping: which input field (a dotted path into nested records) feeds which schema field.

Two sources of mappings, in priority order:

1. explicit ``--map FIELD=PATH`` (repeatable; or a dict in YAML), e.g.
   ``score_chosen=metadata.score_chosen`` or ``chosen=chosen.-1.content``;
2. built-in aliases (:data:`ALIASES`) that cover the layouts seen in the wild, tried only
   for a field the record does not already carry under its schema name.

Grammar: ``FIELD=PATH``. FIELD is one of :data:`MAP_FIELDS` (a typo is an error, not a
silent extra column); PATH is a dotted path into the record: dict keys, integer list
indices (negative from the end), a key that itself contains dots matched literally first.
The same grammar serves every command (``--map``, and its prefixed aliases such as
``--eval-map``), YAML (a mapping) and Python (a dict or a list of strings).

Why resolve once per file and not per record: a path that matches the first records is
the file's convention; resolving per record would silently mix conventions.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from ..schema import ASPECTS, PAIR_COLUMNS, PairDataError

#: What a dotted path returned when nothing was there.
MISSING = object()


def _sided(pattern: list[str]) -> dict[str, list[str]]:
    """Expand the '{side}' placeholder into score_chosen / score_rejected alias lists."""
    return {
        f"score_{side}": [p.format(side=side) for p in pattern] for side in ("chosen", "rejected")
    }


#: Schema field -> input paths tried in order when the field is absent under its own name.
ALIASES: dict[str, list[str]] = {
    # question: Intel/orca_dpo_pairs; conversations: ShareGPT (LLaMA-Factory); trajectory: UltraInteract
    "prompt": ["instruction", "question", "metadata.prompt", "conversations", "trajectory"],
    "chosen": ["chosen_response", "response_chosen"],
    "rejected": ["rejected_response", "response_rejected"],
    **_sided(["{side}-rating", "{side}_rating", "rating_{side}", "{side}_avg_rating", "{side}_score",
              "metadata.score_{side}", "metadata.rating_{side}", "metadata.{side}-rating",
              "metadata.{side}_rating", "metadata.{side}_avg_rating"]),
    **{f"{side}_model": [p.format(side=side) for p in
                         ["{side}-model", "model_{side}", "metadata.{side}_model",
                          "metadata.{side}-model", "metadata.model_{side}"]]
       for side in ("chosen", "rejected")},
    "source": ["metadata.source", "dataset", "subset"],  # subset: RewardBench's
    "prompt_id": ["metadata.prompt_id"],
    **{f"{side}_{a}": [f"metadata.{side}_{a}"] for side in ("chosen", "rejected") for a in ASPECTS},
}

#: Fields ``--map`` can feed: the pairs-table columns readers take from the input (the
#: others are derived), ``system`` (a system message put before a string prompt) and the
#: two keys raw UltraFeedback records are read from.
MAP_FIELDS: tuple[str, ...] = (
    *(c for c in PAIR_COLUMNS if c not in ("pair_id", "prompt_text", "flags")),
    "system", "instruction", "completions")

#: Leaf names that only Argilla's binarized UltraFeedback files use (for layout detection).
ARGILLA_LEAVES = frozenset({
    "chosen-rating", "rejected-rating", "chosen-model", "rejected-model", "chosen_avg_rating",
    "rejected_avg_rating", "chosen_response", "rejected_response", "rating_chosen", "rating_rejected",
})


def parse_mapping(mapping: Mapping[str, str] | Iterable[str] | str | None) -> dict[str, str]:
    """``["field=path", ...]`` or ``{"field": "path"}`` -> ``{"field": "path"}`` (validated)."""
    if mapping is None:
        return {}
    if isinstance(mapping, str):
        mapping = [mapping]
    if isinstance(mapping, Mapping):
        items = [(str(k), str(v)) for k, v in mapping.items()]
    else:
        items = []
        for text in mapping:
            if not isinstance(text, str) or "=" not in text:
                raise PairDataError(f"--map '{text}' is not FIELD=PATH", field="--map",
                                    hint="e.g. --map score_chosen=metadata.score_chosen")
            field, path = text.split("=", 1)
            items.append((field.strip(), path.strip()))
    out: dict[str, str] = {}
    for field, path in items:
        if not field or not path:
            raise PairDataError(f"--map '{field}={path}' needs both a field and a path",
                                field="--map", hint="e.g. --map score_chosen=metadata.score_chosen")
        if field not in MAP_FIELDS:
            close = difflib.get_close_matches(field, MAP_FIELDS, n=1)
            raise PairDataError(f"--map {field}={path}: unknown field '{field}'", field="--map",
                                hint=(f"did you mean {close[0]}? " if close else "")
                                + f"FIELD is one of {', '.join(MAP_FIELDS)}")
        out[field] = path
    return out


def get_path(record: Any, path: str) -> Any:
    """Value at a dotted path (dict keys; integer segments index lists, negatives from the end).

    A key that itself contains dots (``{"a.b": 1}``) is matched literally first.
    Returns :data:`MISSING` when the path does not exist.
    """
    if isinstance(record, dict) and path in record:
        return record[path]
    value = record
    for part in path.split("."):
        if isinstance(value, dict):
            if part not in value:
                return MISSING
            value = value[part]
        elif isinstance(value, (list, tuple)):
            try:
                value = value[int(part)]
            except (ValueError, IndexError):
                return MISSING
        else:
            return MISSING
    return value


def resolve_plan(records: list[dict], explicit: dict[str, str], wanted: Iterable[str],
                 *, probe: int = 50) -> tuple[dict[str, str], dict[str, str]]:
    """Decide this file's field -> path plan: explicit mappings plus aliases that match.

    Returns ``(plan, auto)`` where ``auto`` holds only the alias-chosen entries (for the
    read statistics, so a user sees what was guessed).
    """
    sample = records[:probe]
    plan = dict(explicit)
    auto: dict[str, str] = {}
    for field in wanted:
        if field in plan or any(field in rec for rec in sample):
            continue
        for path in ALIASES.get(field, []):
            if any(get_path(rec, path) is not MISSING for rec in sample):
                plan[field] = auto[field] = path
                break
    return plan, auto


def check_explicit_found(records: list[dict], explicit: dict[str, str], file: str) -> None:
    """A --map path that matches no record is almost surely a typo: say so, with what exists."""
    missing = [f for f in explicit if f not in explicit_found(records, explicit)]
    if missing:
        raise missing_path_error(missing[0], explicit[missing[0]], file, records[0])


def explicit_found(records: list[dict], explicit: dict[str, str]) -> set[str]:
    """The fields of ``explicit`` whose path some record has."""
    return {field for field, path in explicit.items()
            if any(get_path(rec, path) is not MISSING for rec in records)}


def missing_path_error(field: str, path: str, file: str, first: dict) -> PairDataError:
    """The error for a --map path no record of ``file`` has (``first``: its first record)."""
    return PairDataError(f"--map {field}={path}: no record has '{path}'", file=file,
                         field=field, hint=f"fields seen: {describe_fields(first)}")


def describe_fields(record: dict, prefix: str = "", depth: int = 2) -> str:
    """'prompt, chosen, metadata.{score_chosen, score_rejected}' for error messages."""
    parts = []
    for key, value in record.items():
        if isinstance(value, dict) and depth > 1 and value:
            parts.append(f"{prefix}{key}.{{{describe_fields(value, '', depth - 1)}}}")
        else:
            parts.append(f"{prefix}{key}")
    return ", ".join(parts)


def apply_plan(record: dict, plan: dict[str, str]) -> dict:
    """A copy of ``record`` with each planned field set from its path and the source consumed.

    Consumed means: a renamed top-level key is removed, a nested leaf is removed from a
    copy of its container, and a container left empty is dropped, so mapped values are
    not carried twice as extra columns. A list whose elements are mapped by index
    (``answers.0``, ``answers.1``) is dropped when every one of its elements is mapped, and
    otherwise kept whole (removing some elements would shift the indices of the rest).
    """
    if not plan:
        return record
    values = {field: get_path(record, path) for field, path in plan.items()}
    out = dict(record)
    for field, path in plan.items():
        if path != field:
            _pop_path(out, path)
    for path in _mapped_lists(record, [p for f, p in plan.items() if p != f]):
        _pop_path(out, path)
    for field, value in values.items():
        if value is not MISSING:
            out[field] = value
    return out


def _mapped_lists(record: dict, paths: list[str]) -> list[str]:
    """The paths of the lists in ``record`` each of whose elements one of ``paths`` maps whole."""
    indices: dict[str, set[int]] = {}
    for path in paths:
        parent, _, last = path.rpartition(".")
        if not parent or path in record:
            continue
        try:
            index = int(last)
        except ValueError:
            continue
        value = get_path(record, parent)
        if isinstance(value, (list, tuple)) and -len(value) <= index < len(value):
            indices.setdefault(parent, set()).add(index % len(value))
    return [parent for parent, seen in indices.items() if len(seen) == len(get_path(record, parent))]


def _pop_path(record: dict, path: str) -> None:
    if path in record:
        del record[path]
        return
    parts = path.split(".")
    chain = [record]
    for part in parts[:-1]:
        child = chain[-1].get(part) if isinstance(chain[-1], dict) else None
        if not isinstance(child, dict):
            return  # through a list, or absent: leave the input as it is
        child = dict(child)
        chain[-1][part] = child
        chain.append(child)
    chain[-1].pop(parts[-1], None)
    for depth in range(len(chain) - 1, 0, -1):  # drop containers the mapping emptied
        if not chain[depth]:
            del chain[depth - 1][parts[depth - 1]]
