"""Layouts of preference data and how each becomes rows of the pairs schema.

Layouts (``--format``):

* ``h4``      HuggingFaceH4/ultrafeedback_binarized: string ``prompt``, ``chosen``/``rejected``
              as full conversations (prompt turns + the assistant answer), ``score_*`` 1-10.
* ``raw``     openbmb/UltraFeedback: ``instruction`` + ``completions[]`` with per-aspect
              annotations; binarized into pairs by :mod:`pairlab.io.raw`. distilabel's raw
              output (``instruction``, ``generations[]``, ``ratings[]``, ``rationales[]``) too.
* ``argilla`` argilla/ultrafeedback-binarized-preferences(-cleaned): ``chosen-rating``,
              ``chosen-model``... (ratings are 1-5 means of the aspects).
* ``hh``      Anthropic hh-rlhf: "Human: ... Assistant: ..." transcripts parsed into messages.
* ``generic`` ``prompt``/``chosen``/``rejected`` as strings or message lists (TRL standard and
              conversational, explicit or implicit prompt).
* ``pairs``   a pairs table pairlab wrote (read back as is).

h4, argilla, hh and generic differ only in field names and prompt parsing, so one
function (:func:`flat_rows`) reads all four; field names are resolved by
:mod:`pairlab.io.fields` aliases and ``--map``.

Adding a layout is one call, in one file (plus its test)::

    register_layout("mine", detect=lambda record, plan: "question" in record, rows=my_rows,
                    help="my lab's export: question / good / bad")

``detect(record, plan)`` says whether a record (after ``--map``) has this layout; layouts are
tried in registration order, and a new one goes before the catch-all ``generic``.
``rows(ctx)`` turns a :class:`ReadContext` (the batch, its records, the reject log) into a
pairs table (:func:`pairlab.schema.finalize_pairs`). ``--format NAME`` (and the names in
``aliases``) then reads it, and the docs list it. Row builders raise :class:`PairDataError`
for a row that cannot become a pair; the context's :class:`~pairlab.io.rejects.RejectLog`
turns it into a reject, so one bad row never aborts a file.
"""
from __future__ import annotations

import decimal
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..schema import FLOAT_COLUMNS, NOTE_COLUMN, PAIR_COLUMNS, PairDataError, as_messages, finalize_pairs, validate_pairs
from . import raw
from .fields import ARGILLA_LEAVES, MISSING, apply_plan, describe_fields
from .rejects import RejectLog
from .sources import RecordBatch

#: Fields a flat layout reads (everything else in a record is carried as an extra column).
FLAT_FIELDS = ["prompt", "chosen", "rejected", "prompt_id", "source", "chosen_model",
               "rejected_model", *FLOAT_COLUMNS]
_STRING_FIELDS = ("prompt_id", "source", "chosen_model", "rejected_model")
_NA_STRINGS = frozenset({"", "n/a", "na", "nan", "none", "null"})


# ---------------------------------------------------------------- the registry

@dataclass
class ReadContext:
    """What a layout's ``rows`` function gets for one batch of records."""

    batch: RecordBatch
    #: the batch's records after ``--map`` (and, for a flat layout, the field aliases)
    records: list[dict[str, Any]]
    log: RejectLog
    #: the field plan applied (schema field -> input path)
    plan: dict[str, str]
    #: raw UltraFeedback's binarization: ``binarize``, ``pairing``, ``seed``
    options: dict[str, Any] = field(default_factory=dict)
    #: read statistics; a layout may add counts (raw adds its binarization counts)
    stats: dict[str, Any] = field(default_factory=dict)
    #: None: ``batch`` is the whole file; else the index of this chunk of it
    #: (:func:`pairlab.io.iter_pairs_chunks`). Checks that judge the whole file run on the
    #: whole file or its first chunk only; a later chunk's rows are judged row by row.
    chunk: int | None = None

    @property
    def whole_file_checks(self) -> bool:
        return self.chunk is None or self.chunk == 0


@dataclass(frozen=True)
class Layout:
    name: str
    detect: Callable[[dict[str, Any], dict[str, str]], bool]
    rows: Callable[[ReadContext], pd.DataFrame]
    help: str = ""
    #: other ``--format`` names for it
    aliases: tuple[str, ...] = ()
    #: resolve schema fields through pairlab.io.fields' aliases before detection and reading
    #: (the layouts that differ only in field names); False: records keep their own field names
    flat: bool = False


#: name -> Layout, in detection order (most specific first).
LAYOUT_REGISTRY: dict[str, Layout] = {}
_CATCH_ALL = "generic"


def register_layout(name: str, detect: Callable[[dict[str, Any], dict[str, str]], bool],
                    rows: Callable[[ReadContext], pd.DataFrame], *, help: str = "",
                    aliases: tuple[str, ...] = (), flat: bool = False) -> Layout:
    """Add a layout: ``--format NAME`` reads it, ``--format auto`` detects it (before ``generic``)."""
    name = name.strip().lower()
    taken = {alias for known in LAYOUT_REGISTRY.values() for alias in known.aliases} | {"auto"}
    if name in LAYOUT_REGISTRY or name in taken or taken & set(aliases):
        raise ValueError(f"layout name {name!r} (or one of its aliases) is already taken")
    layout = Layout(name, detect, rows, help, tuple(aliases), flat)
    entries = list(LAYOUT_REGISTRY.items())
    at = next((i for i, (key, _) in enumerate(entries) if key == _CATCH_ALL), len(entries))
    entries.insert(at, (name, layout))
    LAYOUT_REGISTRY.clear()
    LAYOUT_REGISTRY.update(entries)
    return layout


def layout_names() -> list[str]:
    return list(LAYOUT_REGISTRY)


def canonical_format(name: str) -> str:
    name = (name or "auto").strip().lower()
    name = next((key for key, layout in LAYOUT_REGISTRY.items() if name in layout.aliases), name)
    if name != "auto" and name not in LAYOUT_REGISTRY:
        raise PairDataError(f"unknown format '{name}'", field="--format",
                            hint=f"choose auto or one of {', '.join(LAYOUT_REGISTRY)}")
    return name


# ---------------------------------------------------------------- detection

def detect_layout(record: dict[str, Any], plan: dict[str, str]) -> str | None:
    """Name the layout of a record (after ``--map`` and aliases), or None when none fits."""
    return next((name for name, layout in LAYOUT_REGISTRY.items() if layout.detect(record, plan)), None)


#: How many of a file's first records decide its layout (and its field plan).
PROBE = 50


def probe_layout(records: list[dict[str, Any]], plan: dict[str, str], probe: int = PROBE) -> str | None:
    """The layout most of the first ``probe`` records (after ``plan``) have, or None.

    A majority, not the first record: a junk first row must not decide how a whole file
    is read (it is rejected by the layout the rest of the file has).
    """
    found = Counter(detect_layout(apply_plan(rec, plan), plan) for rec in records[:probe])
    found.pop(None, None)
    return found.most_common(1)[0][0] if found else None


def unknown_layout_error(batch: RecordBatch, index: int = 0) -> PairDataError:
    return PairDataError(
        f"unknown layout: no reader fits this record (tried: {', '.join(LAYOUT_REGISTRY)})",
        **batch.where(index),
        hint=f"fields seen: {describe_fields(batch.records[index])}; name the format with "
             "--format, or point schema fields at yours with --map chosen=PATH --map rejected=PATH",
    )


# ---------------------------------------------------------------- Human/Assistant transcripts

_HH_START = re.compile(r"^\s*(Human|User):", re.IGNORECASE)
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
_USER_TURN = re.compile(r"(?:^|\n\n)(User|Assistant):[ \t]?")


def parse_transcript(text: str) -> list[dict[str, str]]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> [{user: hi}, {assistant: hello}].

    hh-rlhf separates turns with a blank line before 'Human:'/'Assistant:'; text before
    the first marker (rare) is kept as a user turn.
    """
    text = text.lstrip("\n")
    # 'User:' turns where the transcript opens with one (hh-style data rewritten with 'User:');
    # otherwise only 'Human:' is the user's, so an answer quoting 'User:' stays whole
    turns = _USER_TURN if re.match(r"\s*User:", text) else _HH_TURN
    parts = turns.split(text)
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "assistant" if speaker == "Assistant" else "user"
        messages.append({"role": role, "content": content.strip()})
    return messages


# ---------------------------------------------------------------- flat layouts

#: ShareGPT speaker names (``{"from": ..., "value": ...}`` messages, as LLaMA-Factory, Axolotl and
#: UltraInteract write them) -> chat roles.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "bot": "assistant", "model": "assistant", "chatgpt": "assistant", "system": "system",
                  "tool": "tool", "observation": "tool", "function_call": "assistant"}


def _sharegpt(message: Any) -> Any:
    """A ShareGPT ``{"from", "value"}`` message as ``{"role", "content"}`` (anything else as is)."""
    if isinstance(message, dict) and "role" not in message and "from" in message and "value" in message \
            and isinstance(message["from"], str):
        speaker = message["from"]
        return {"role": SHAREGPT_ROLES.get(speaker.strip().lower(), speaker), "content": message["value"]}
    return message


def _is_message(value: Any) -> bool:
    """One chat message given where a completion goes (LLaMA-Factory's ShareGPT DPO files:
    ``"chosen": {"from": "gpt", "value": ...}``)."""
    return isinstance(value, dict) and (("role" in value and ("content" in value or _CALL_KEYS & value.keys()))
                                        or ("from" in value and "value" in value))


def _messages(value: Any, batch: RecordBatch, index: int, field: str) -> list[dict[str, str]]:
    """Validate a message list: dicts with a string role and string content (ShareGPT's
    ``from``/``value`` messages are read as roles and content)."""
    out = []
    if _is_message(value):
        value = [value]
    for turn, message in enumerate(value):
        message = _sharegpt(message)
        calls = _CALL_KEYS & message.keys() if isinstance(message, dict) else set()
        if not isinstance(message, dict) or "role" not in message or ("content" not in message and not calls):
            raise PairDataError(f"message {turn} is not a {{role, content}} object",
                                field=field, **batch.where(index))
        content = message.get("content")
        if content is None:
            content = ""
        if isinstance(content, (list, tuple, np.ndarray)):  # OpenAI-style parts: [{"type": "text", "text": ...}]
            content = _text_parts(content, turn, batch, index, field)
        if not isinstance(content, str) or not isinstance(message["role"], str):
            raise PairDataError(f"message {turn} has non-string role/content "
                                f"({type(content).__name__})", field=field, **batch.where(index))
        rendered = [_tool_call_text(message[key], key, turn, batch, index, field) for key in sorted(calls)]
        content = "\n".join(t for t in [content, *rendered] if t)
        out.append({"role": message["role"], "content": content})
    return out


#: Message keys that carry an assistant's tool calls: OpenAI's and Hugging Face chat templates'
#: ``tool_calls`` and OpenAI's older single ``function_call``.
_CALL_KEYS = {"tool_calls", "function_call"}


def _tool_call_text(calls: Any, key: str, turn: int, batch: RecordBatch, index: int, field: str) -> str:
    """An assistant turn's tool calls as text, one ``<tool_call>{"name": ..., "arguments": ...}
    </tool_call>`` block per call (the Hermes / Qwen rendering), after the turn's text: a call
    is what the turn answers, so the two sides of a tool-use pair differ by it. Arguments
    given as a JSON string (OpenAI) are parsed, so both conventions give the same text."""
    if calls is None:
        return ""
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, (list, tuple, np.ndarray)):
        raise PairDataError(f"message {turn} has {key} of type {type(calls).__name__}, expected a list of calls",
                            field=field, **batch.where(index))
    blocks = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise PairDataError(f"message {turn} has a tool call without a function name", field=field,
                                **batch.where(index), hint='calls look like {"function": {"name": ..., "arguments": ...}}')
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass  # kept as the text it is
        text = json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False, default=_plain)
        blocks.append(f"<tool_call>\n{text}\n</tool_call>")
    return "\n".join(blocks)


def _plain(value: Any) -> Any:
    """JSON for what Arrow hands back inside a call (numpy arrays and scalars)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _text_parts(parts: Any, turn: int, batch: RecordBatch, index: int, field: str) -> str:
    """A message's content given as parts: its text parts joined by newlines; any other part
    (an image, audio) is refused, since pairlab scores text only."""
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = part.get("type", "text") if isinstance(part, dict) else type(part).__name__
        if kind != "text" or not isinstance(part.get("text"), str):
            raise PairDataError(f"message {turn} has a content part of type '{kind}': only text parts "
                                "are read", field=field, **batch.where(index),
                                hint="keep text-only conversations, or drop this row")
        texts.append(part["text"])
    return "\n".join(texts)


def _completion_kind(value: Any, batch: RecordBatch, index: int, field: str) -> str:
    if value is MISSING:
        raise PairDataError("missing required field", field=field, **batch.where(index),
                            hint=f"fields seen: {describe_fields(batch.records[index])}; "
                                 f"map yours with --map {field}=PATH")
    if value is None or isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple, np.ndarray)) or _is_message(value):
        return "messages"
    raise PairDataError(f"wrong type: expected a string, a message or a list of messages, got "
                        f"{type(value).__name__}", field=field, **batch.where(index))


def _string_prefix_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """TRL's ``extract_prompt`` for standard (string) implicit-prompt pairs, exactly."""
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):
        if chosen[idx] != rejected[idx]:
            if chosen[idx - 1] == " ":
                idx -= 1
            break
    return chosen[:idx], chosen[idx:], rejected[idx:]


def _split_conversations(prompt: Any, chosen: list, rejected: list, batch: RecordBatch,
                         index: int) -> tuple[Any, ...]:
    """Full conversations -> (prompt messages, chosen text, rejected text), with a fourth item,
    the flag ``prompt_mismatch``, when a string ``prompt`` matches none of the context's turns
    (the turns are used: they are what the answers follow).

    The context is everything before the last turn; it must be the same on both sides
    (otherwise the two answers do not answer the same prompt) and the last turn must be
    the assistant's. This is the prompt extraction DPOTrainer needs for H4-style rows.
    """
    if not chosen or not rejected:
        side = "chosen" if not chosen else "rejected"
        raise PairDataError("empty message list", field=side, **batch.where(index))
    for side, conv in (("chosen", chosen), ("rejected", rejected)):
        if conv[-1]["role"] != "assistant":
            raise PairDataError(f"last message is '{conv[-1]['role']}', expected 'assistant'",
                                field=side, **batch.where(index))
    context = chosen[:-1]
    if context != rejected[:-1]:
        users = [[m for m in conv[:-1] if m["role"] != "assistant"] for conv in (chosen, rejected)]
        if users[0] == users[1]:  # the same user turns, different earlier answers
            raise PairDataError("chosen and rejected differ in earlier assistant turns (a multi-turn "
                                "answer, or tool calls before the last answer)", field="rejected",
                                **batch.where(index), hint="pairlab pairs one answer each to the same "
                                "context: keep single-turn rows, or cut both conversations at their first answer")
        raise PairDataError("chosen and rejected conversations differ before their last turn",
                            field="rejected", **batch.where(index),
                            hint="a pair must answer the same prompt")
    if isinstance(prompt, list):
        if not context:
            context = prompt
        elif context[:len(prompt)] != prompt:
            context = prompt + context
    elif not context:
        if prompt is MISSING or prompt is None:
            raise PairDataError("missing required field (no prompt and no context turns)",
                                field="prompt", **batch.where(index))
        context = [{"role": "user", "content": str(prompt)}]
    elif isinstance(prompt, str) and prompt.strip() and not any(
            prompt.strip() == m["content"].strip() for m in context):
        return context, chosen[-1]["content"], rejected[-1]["content"], "prompt_mismatch"
    return context, chosen[-1]["content"], rejected[-1]["content"]


def _row_texts(record: dict, batch: RecordBatch, index: int, layout: str
               ) -> tuple[Any, ...]:
    """(prompt messages, chosen text, rejected text[, a flag only the reader sees])."""
    prompt = record.get("prompt", MISSING)
    chosen = record.get("chosen", MISSING)
    rejected = record.get("rejected", MISSING)
    kinds = (_completion_kind(chosen, batch, index, "chosen"),
             _completion_kind(rejected, batch, index, "rejected"))
    for name, value in (("chosen", chosen), ("rejected", rejected)):  # as a null prompt is,
        if value is None:  # whatever the other side holds
            raise PairDataError(f"{name} is null", field=name, **batch.where(index))
    if kinds[0] != kinds[1]:
        raise PairDataError("wrong type: chosen and rejected must both be strings or both "
                            "message lists", field="rejected", **batch.where(index))
    if isinstance(prompt, (list, tuple, np.ndarray)) or _is_message(prompt):
        prompt = _messages(prompt, batch, index, "prompt")
    elif prompt is not MISSING and prompt is not None and not isinstance(prompt, str):
        raise PairDataError(f"wrong type: expected a string or a list of messages, got "
                            f"{type(prompt).__name__}", field="prompt", **batch.where(index))

    if kinds[0] == "messages":
        return _split_conversations(prompt, _messages(chosen, batch, index, "chosen"),
                                    _messages(rejected, batch, index, "rejected"), batch, index)

    chosen, rejected = chosen or "", rejected or ""
    if layout == "hh" and prompt is MISSING:  # full transcripts on both sides
        for name, value in (("chosen", chosen), ("rejected", rejected)):
            if not re.search(r"(?:^|\n\n)Assistant:", value.lstrip("\n")):
                raise PairDataError("no 'Assistant:' turn in this transcript", field=name, **batch.where(index),
                                    hint="hh-rlhf rows are '\\n\\nHuman: ...\\n\\nAssistant: ...' transcripts, "
                                         "the answer last")
        return _split_conversations(MISSING, parse_transcript(chosen), parse_transcript(rejected),
                                    batch, index)
    if prompt is MISSING or prompt is None:
        if prompt is None:
            raise PairDataError("prompt is null", field="prompt", **batch.where(index))
        text, chosen, rejected = _string_prefix_prompt(chosen, rejected)
        if text[-1:].isalnum() and chosen[:1].isalnum() and rejected[:1].isalnum():
            # the answers' shared opening ends inside a word: not a prompt they follow
            return [{"role": "user", "content": text}], chosen, rejected, "implicit_prompt_mid_word"
        return [{"role": "user", "content": text}], chosen, rejected
    if isinstance(prompt, list):
        return prompt, chosen, rejected
    if layout == "hh":
        messages = parse_transcript(prompt)
        if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
            messages = messages[:-1]  # a prompt ending in an empty "Assistant:" cue
        return messages or [{"role": "user", "content": prompt}], chosen, rejected
    return [{"role": "user", "content": prompt}], chosen, rejected


def _with_system(prompt: list[dict[str, str]], system: Any, batch: RecordBatch,
                 index: int) -> list[dict[str, str]]:
    """Put a mapped ``system`` text before the prompt (unless the prompt has one already)."""
    if system is MISSING or system is None or (isinstance(system, float) and np.isnan(system)):
        return prompt
    if not isinstance(system, str):
        raise PairDataError(f"wrong type: expected a string, got {type(system).__name__}",
                            field="system", **batch.where(index))
    if not system.strip() or (prompt and prompt[0]["role"] == "system"):
        return prompt
    return [{"role": "system", "content": system}, *prompt]


#: Alpaca-format keys (LLaMA-Factory's DPO files): ``input`` completes the ``instruction``,
#: ``history`` lists the earlier ``[user, assistant]`` turns.
ALPACA_KEYS = ("input", "history")


def _alpaca_prompt(prompt: list[dict[str, str]], record: dict, batch: RecordBatch,
                   index: int) -> tuple[list[dict[str, str]], tuple[str, ...]]:
    """An ``instruction`` prompt completed as LLaMA-Factory reads Alpaca files: a non-empty
    string ``input`` joins the instruction after a newline; ``history``, a list of
    ``[user, assistant]`` pairs (or its JSON text, as a CSV cell holds it), comes before it.
    Returns the prompt and the keys it consumed; a key that is not Alpaca's shape (a
    number in ``input``, a ``history`` text that is no list) stays an extra column.
    Only for a string instruction with string answers (the Alpaca DPO shape)."""
    if not (isinstance(record.get("prompt"), str) and isinstance(record.get("chosen"), str)):
        return prompt, ()
    used = []
    extra = record.get("input", MISSING)
    if extra is None or (isinstance(extra, str) and not extra.strip()):
        used.append("input")
    elif isinstance(extra, str) and prompt and prompt[-1]["role"] == "user":
        prompt = [*prompt[:-1], {"role": "user", "content": f"{prompt[-1]['content']}\n{extra}"}]
        used.append("input")
    history = record.get("history", MISSING)
    if isinstance(history, str) and history.strip().startswith("["):
        try:
            history = json.loads(history)
        except ValueError:
            return prompt, tuple(used)  # not Alpaca's history: kept as a column
    if history is None or (isinstance(history, str) and not history.strip()):
        used.append("history")
    elif isinstance(history, (list, tuple, np.ndarray)):
        turns = []
        for turn in history:
            if not (isinstance(turn, (list, tuple, np.ndarray)) and len(turn) == 2
                    and all(isinstance(t, str) for t in turn)):
                raise PairDataError("history is not a list of [user, assistant] pairs", field="history",
                                    **batch.where(index), hint='Alpaca history looks like [["hi", "hello!"], ...]')
            turns += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
        head = 1 if prompt and prompt[0]["role"] == "system" else 0
        prompt = [*prompt[:head], *turns, *prompt[head:]]
        used.append("history")
    return prompt, tuple(used)


def flat_rows(batch: RecordBatch, records: list[dict], layout: str, log: RejectLog | None = None,
              *, system: bool = False, alpaca: bool = False) -> pd.DataFrame:
    """Records of a flat layout (h4, argilla, hh, generic) -> pre-schema rows.

    ``records`` are the batch's records after ``--map``/aliases were applied; positions
    still come from ``batch`` so errors point at the input file. A record that cannot
    become a pair goes to ``log`` (raised when there is no log). ``system``: the record's
    ``system`` field was mapped and becomes a system message. ``alpaca``: the prompt is an
    Alpaca ``instruction``, completed by the record's ``input`` and ``history``.
    """
    log = log if log is not None else RejectLog(strict=True)
    rows, kept = [], []
    for index, record in enumerate(records):
        try:
            prompt, chosen, rejected, *note = _row_texts(record, batch, index, layout)
            system_used = False
            if system:
                with_system = _with_system(prompt, record.get("system", MISSING), batch, index)
                system_used, prompt = with_system is not prompt, with_system
            merged: tuple[str, ...] = ()
            if alpaca:
                prompt, merged = _alpaca_prompt(prompt, record, batch, index)
        except PairDataError as err:
            log.add(err, batch.records[index])
            continue
        row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if note:
            row[NOTE_COLUMN] = note[0]
        for key, value in record.items():
            if key in ("prompt", "chosen", "rejected"):
                continue
            if system and key == "system" and (system_used or not (isinstance(value, str) and value.strip())):
                continue  # a system text not used (the prompt has its own system turn) stays a column
            if layout == "h4" and key == "messages":
                continue  # H4's `messages` repeats the chosen conversation
            if key in merged:
                continue  # now part of the prompt
            row[key] = value
        rows.append(row)
        kept.append(index)
    df = pd.DataFrame(rows, index=kept)
    for col in _STRING_FIELDS:  # the values as read: pandas would make [2, missing] floats ('2.0')
        if col in df:
            df[col] = pd.Series([row.get(col) for row in rows], index=kept, dtype=object)
    df = coerce_scores(df, batch, log)
    for col in _STRING_FIELDS:
        if col in df:
            df = _check_scalar(df, batch, col, log)
            df[col] = df[col].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v))
                                  else str(v))
    return df.reset_index(drop=True)


def _reject_rows(df: pd.DataFrame, bad: pd.Series, batch: RecordBatch, log: RejectLog,
                 field: str, message) -> pd.DataFrame:
    """Log one reject per row of ``df`` where ``bad`` holds (file order) and drop those rows.

    ``df.index`` is the record index in ``batch``; ``message(value)`` says what is wrong.
    """
    if not bad.any():
        return df
    for index, value in df.loc[bad.to_numpy(), field].items():
        text, hint = message(value)
        log.add(PairDataError(text, field=field, hint=hint, **batch.where(int(index))),
                batch.records[int(index)])
    return df[~bad.to_numpy()]


def _check_scalar(df: pd.DataFrame, batch: RecordBatch, field: str, log: RejectLog) -> pd.DataFrame:
    bad = df[field].map(lambda v: isinstance(v, (dict, list, tuple, np.ndarray)))
    return _reject_rows(df, bad, batch, log, field,
                        lambda v: (f"wrong type: expected a scalar, got {type(v).__name__}",
                                   f"map one element of it, e.g. --map {field}={field}.0" if
                                   isinstance(v, (list, tuple, np.ndarray)) else
                                   f"map one of its fields, e.g. --map {field}={field}.{next(iter(v), 'KEY')}"
                                   if isinstance(v, dict) else None))


def coerce_scores(df: pd.DataFrame, batch: RecordBatch, log: RejectLog | None = None) -> pd.DataFrame:
    """Scores -> float: numbers and numeric strings kept; None/NaN/'N/A'/'' -> NaN (unknown).

    Anything else is not a score and its row is rejected: a word, a list, a bool. (An
    infinite value is a number: it is kept and flagged by :func:`schema.finalize_pairs`.)
    Returns the frame without the rejected rows (``df.index`` must be the record index
    in ``batch``); raises the first one when there is no log.
    """
    log = log if log is not None else RejectLog(strict=True)
    for col in FLOAT_COLUMNS:
        if col not in df:
            continue
        raw = df[col]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            df[col] = raw.astype(float)  # the common case: no per-value checks needed
            continue
        values = pd.Series([_score_value(v) for v in raw.astype(object)], index=df.index,
                           dtype=object)
        bad = values.map(lambda v: v is _NOT_A_SCORE)
        df = _reject_rows(df, bad, batch, log, col, _not_a_score)
        df[col] = values[~bad.to_numpy()].astype(float)
    return df


def _not_a_score(value: Any) -> tuple[str, str]:
    nested = isinstance(value, (dict, list, tuple, np.ndarray))
    return (f"wrong type: expected a number, got {type(value).__name__ if nested else repr(value)[:80]}",
            "scores must be numbers, numeric strings, null or 'N/A'")


_NOT_A_SCORE = object()


def _score_value(value: Any) -> Any:
    """A score as float (NaN when unknown: None, NaN, 'N/A', ''), or :data:`_NOT_A_SCORE`."""
    if value is None:
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return _NOT_A_SCORE
    if isinstance(value, (int, float, np.integer, np.floating, decimal.Decimal)):  # Decimal: Arrow's decimal128
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range is still a (huge) number
            return float("inf") if value > 0 else float("-inf")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NA_STRINGS:
            return np.nan
        try:
            return float(text)
        except ValueError:
            return _NOT_A_SCORE
    return _NOT_A_SCORE


def pairs_rows(batch: RecordBatch, records: list[dict], log: RejectLog | None = None, *,
               check_columns: bool = True) -> pd.DataFrame:
    """A pairs table stored as records (JSON/JSONL, CSV, datasets): checked row by row.

    The Parquet tables pairlab writes take the fast path in :mod:`pairlab.io.read`; these
    records may have been edited by hand, so each is checked before it is trusted.
    """
    log = log if log is not None else RejectLog(strict=True)
    if check_columns:
        seen = set().union(*(rec.keys() for rec in records[:50]))
        validate_pairs(pd.DataFrame(columns=sorted(seen)), file=batch.name)  # a whole-file mistake
    rows, kept = [], []
    for index, record in enumerate(records):
        try:
            prompt = record.get("prompt")
            if not isinstance(prompt, (list, tuple, np.ndarray)):
                raise PairDataError(f"wrong type: expected a list of messages, got "
                                    f"{type(prompt).__name__}", field="prompt", **batch.where(index))
            record = dict(record, prompt=_messages(prompt, batch, index, "prompt"))
            for col in ("chosen", "rejected"):
                if record.get(col) is not None and not isinstance(record[col], str):
                    raise PairDataError(f"wrong type: expected a string, got "
                                        f"{type(record[col]).__name__}", field=col, **batch.where(index))
        except PairDataError as err:
            log.add(err, batch.records[index])
            continue
        rows.append(record)
        kept.append(index)
    if not rows:
        return pairs_frame(pd.DataFrame(columns=list(PAIR_COLUMNS)), batch.name)
    df = coerce_scores(pd.DataFrame(rows, index=kept), batch, log)
    for col in PAIR_COLUMNS:  # a later chunk of a checked file: a column its rows lack is empty,
        if col not in df:     # as it is for those rows when the whole file is read
            df[col] = None
    for col in ("pair_id", "prompt_id", "prompt_text", "source", "chosen_model",
                "rejected_model", "flags"):
        if col in df:
            df = _check_scalar(df, batch, col, log)
    return pairs_frame(df.reset_index(drop=True), batch.name)


def pairs_frame(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """A pairs table read back from disk: messages as lists, dtypes restored; ids kept as is."""
    validate_pairs(df, file=name)
    df = df.copy()
    df["prompt"] = [as_messages(m) for m in df["prompt"]]
    for col in FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("pair_id", "prompt_id", "prompt_text", "chosen", "rejected", "source",
                "chosen_model", "rejected_model", "flags"):
        df[col] = df[col].fillna("").astype(str)
    extra = [c for c in df.columns if c not in PAIR_COLUMNS]
    return df[list(PAIR_COLUMNS) + extra].reset_index(drop=True)


# ---------------------------------------------------------------- the built-in layouts

def _is_raw(record: dict[str, Any], plan: dict[str, str]) -> bool:
    if isinstance(record.get("completions"), list) and "instruction" in record:
        return True
    if "chosen" not in record and raw.is_ranked(record):  # Nectar's ranked answers
        return True
    # distilabel's raw output: binarized like raw UltraFeedback (pairlab.io.raw)
    return "instruction" in record and "ratings" in record and isinstance(record.get("generations"),
                                                                          (list, np.ndarray))


def _has_pair(record: dict[str, Any]) -> bool:
    return record.get("chosen", MISSING) is not MISSING and record.get("rejected", MISSING) is not MISSING


def _is_argilla(record: dict[str, Any], plan: dict[str, str]) -> bool:
    used_leaves = {path.rsplit(".", 1)[-1] for path in plan.values()} | set(record)
    return _has_pair(record) and bool(used_leaves & ARGILLA_LEAVES)


def _is_h4(record: dict[str, Any], plan: dict[str, str]) -> bool:
    return (_has_pair(record) and isinstance(record["chosen"], (list, np.ndarray))
            and isinstance(record.get("prompt", MISSING), str))


def _is_hh(record: dict[str, Any], plan: dict[str, str]) -> bool:
    if not _has_pair(record):
        return False
    prompt = record.get("prompt", MISSING)
    text = prompt if isinstance(prompt, str) else (record["chosen"] if prompt is MISSING else None)
    return isinstance(text, str) and bool(_HH_START.match(text))


def _raw_rows(ctx: ReadContext) -> pd.DataFrame:
    # in chunks, "no completion scored" is judged on the whole file by the chunked reader
    rows, counts = raw.binarize(ctx.batch, ctx.records, ctx.options.get("binarize", "mean-aspects"),
                                ctx.options.get("pairing", "best-vs-random"), ctx.options.get("seed", 0), ctx.log,
                                check_scored=ctx.chunk is None)
    for key, value in counts.items():
        ctx.stats[key] = ctx.stats.get(key, 0) + value
    if len(rows) == 0:
        return finalize_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS)))
    if "true_preference_correct" in rows:
        correct = rows["true_preference_correct"]
        rows["true_preference_correct"] = (correct.astype(bool) if correct.notna().all()
                                           else correct.astype("boolean"))
    return finalize_pairs(rows)


def _flat(layout: str) -> Callable[[ReadContext], pd.DataFrame]:
    def rows(ctx: ReadContext) -> pd.DataFrame:
        alpaca = ctx.plan.get("prompt") == "instruction"
        out = flat_rows(ctx.batch, ctx.records, layout, ctx.log, system="system" in ctx.plan, alpaca=alpaca)
        merged = [k for k in ALPACA_KEYS if alpaca and k not in out and any(k in r for r in ctx.records)]
        if merged:  # said, not silent: inspect lists it
            into = ctx.stats.setdefault("merged_into_prompt", [])
            into.extend(k for k in merged if k not in into)
        if len(out) == 0:
            return finalize_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS)))
        dropped = ctx.stats.setdefault("dropped_columns", [])
        if layout == "h4" and ctx.whole_file_checks and "messages" in ctx.records[0] \
                and "messages" not in dropped:
            dropped.append("messages")
        return _keep_input_ids(out, finalize_pairs(out))
    return rows


def _keep_input_ids(rows: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """pairlab derives ``pair_id`` from the content; an input's own ``pair_id`` (one that is
    not pairlab's) is kept as ``input_pair_id``, so results can be joined back to the source."""
    if "pair_id" not in rows or "input_pair_id" in pairs:
        return pairs
    ids = rows["pair_id"].to_numpy(dtype=object)
    if all(i is None or str(i) == p for i, p in zip(ids, pairs["pair_id"])):
        return pairs  # pairlab's own ids, read back
    pairs["input_pair_id"] = ["" if i is None else str(i) for i in ids]
    return pairs


# Detection order: most specific first (Argilla before h4: Argilla-cleaned also has message lists).
register_layout("pairs", lambda record, plan: all(col in record for col in PAIR_COLUMNS),
                lambda ctx: pairs_rows(ctx.batch, ctx.records, ctx.log, check_columns=ctx.whole_file_checks),
                help="a pairs table pairlab wrote (read back as is, each row checked)")
register_layout("raw", _is_raw, _raw_rows, aliases=("ultrafeedback",),
                help="openbmb/UltraFeedback: `instruction` + `completions[]` with per-aspect annotations, "
                     "binarized into pairs; also distilabel's raw output (`generations[]`, `ratings[]`) "
                     "and Nectar's ranked `answers[]`")
register_layout("argilla", _is_argilla, _flat("argilla"), flat=True,
                help="argilla/ultrafeedback-binarized-preferences(-cleaned): `chosen-rating`, `chosen-model`...")
register_layout("h4", _is_h4, _flat("h4"), aliases=("ultrafeedback-binarized",), flat=True,
                help="HuggingFaceH4/ultrafeedback_binarized: string `prompt`, `chosen`/`rejected` as full "
                     "conversations, `score_*` 1-10")
register_layout("hh", _is_hh, _flat("hh"), aliases=("hh-rlhf",), flat=True,
                help='Anthropic hh-rlhf: "Human: ... Assistant: ..." transcripts parsed into messages')
register_layout("generic", lambda record, plan: _has_pair(record), _flat("generic"), aliases=("trl",), flat=True,
                help="`prompt`/`chosen`/`rejected` as strings or message lists (TRL standard and "
                     "conversational, explicit or implicit prompt)")


__all__ = ["LAYOUT_REGISTRY", "Layout", "ReadContext", "canonical_format", "detect_layout", "flat_rows",
           "layout_names", "pairs_frame", "pairs_rows", "parse_transcript", "probe_layout", "register_layout",
           "unknown_layout_error", "coerce_scores"]
