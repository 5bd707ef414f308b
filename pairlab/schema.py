"""The one normalized preference-pair schema every stage reads and writes.

A *pairs table* is a pandas DataFrame with the columns below (one row per
preference pair). Readers in :mod:`pairlab.io` produce it from any layout;
curate, train, evaluate and audit consume it. Unknown input columns are carried
through unchanged after the schema columns.

Why flat aspect columns (``chosen_helpfulness`` ...) and not a nested dict:
scoring is vectorised over columns, and Parquet stores flat floats compactly.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import DataError

#: UltraFeedback's four annotation aspects, in its own order.
ASPECTS: tuple[str, ...] = ("instruction_following", "honesty", "truthfulness", "helpfulness")

#: Column -> one-line meaning. Order is the canonical column order.
PAIR_COLUMNS: dict[str, str] = {
    "pair_id": "stable id: hash of prompt messages + chosen + rejected",
    "prompt_id": "id of the prompt (given by the source, else hash of the normalized prompt text)",
    "prompt": "chat messages before the completion: list of {role, content}; multi-turn context kept",
    "prompt_text": "the prompt flattened to one string (for hashing, dedupe, contamination)",
    "chosen": "preferred assistant completion (text)",
    "rejected": "dispreferred assistant completion (text)",
    "score_chosen": "rating of chosen as the source gives it (NaN when unknown)",
    "score_rejected": "rating of rejected as the source gives it (NaN when unknown)",
    **{f"chosen_{a}": f"chosen's {a} rating 1-5 (NaN when unknown)" for a in ASPECTS},
    **{f"rejected_{a}": f"rejected's {a} rating 1-5 (NaN when unknown)" for a in ASPECTS},
    "source": "origin of the prompt (e.g. evol_instruct, truthful_qa); '' when unknown",
    "chosen_model": "model that wrote chosen ('' when unknown)",
    "rejected_model": "model that wrote rejected ('' when unknown)",
    "flags": "';'-joined warnings for rows that parse but look wrong (kept; curate decides)",
}

FLOAT_COLUMNS = ["score_chosen", "score_rejected"] + [
    f"{side}_{a}" for side in ("chosen", "rejected") for a in ASPECTS
]
STRING_COLUMNS = ["pair_id", "prompt_id", "prompt_text", "chosen", "rejected", "source",
                  "chosen_model", "rejected_model", "flags"]


#: Bad preference data. The error hierarchy lives in :mod:`pairlab.errors`; this name is
#: kept because every stage imports it from here.
PairDataError = DataError


# ---------------------------------------------------------------- text helpers

_WS = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text: str) -> str:
    """Case-, whitespace-, punctuation- and unicode-insensitive form, for duplicate checks."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _PUNCT.sub(" ", text)
    return _WS.sub(" ", text).strip()


def normalize_series(texts: pd.Series) -> pd.Series:
    """Vectorised :func:`normalize_text` over a string Series."""
    s = texts.fillna("").astype(str).map(lambda t: unicodedata.normalize("NFKC", t))
    s = s.str.lower().str.replace(_PUNCT, " ", regex=True)
    return s.str.replace(_WS, " ", regex=True).str.strip()


def _sha(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def prompt_to_text(messages: list[dict[str, str]]) -> str:
    """Flatten prompt messages: a lone user turn is its content; else 'role: content' lines."""
    msgs = list(messages)
    if len(msgs) == 1 and msgs[0].get("role") == "user":
        return str(msgs[0].get("content", ""))
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in msgs)


def make_pair_id(prompt: list[dict[str, str]], chosen: str, rejected: str) -> str:
    """Stable id from the exact prompt messages and both completions (order matters)."""
    payload = json.dumps([[(m["role"], m["content"]) for m in prompt], chosen, rejected],
                         ensure_ascii=False, separators=(",", ":"))
    return _sha(payload)


def make_prompt_id(prompt_text: str) -> str:
    """Prompt id derived from the normalized prompt text (so trivial variants collide)."""
    return _sha(normalize_text(prompt_text))


def prompt_hash_series(prompt_text: pd.Series) -> pd.Series:
    """Hash of the normalized prompt text per row: the key for splits and exact dedupe."""
    return normalize_series(prompt_text).map(_sha)


# ---------------------------------------------------------------- messages

def as_messages(value: Any) -> list[dict[str, str]]:
    """Coerce a Parquet/Arrow round-tripped message list (numpy array of dicts) to plain lists."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]


def prompt_turns(value: Any) -> list[dict[str, str]]:
    """The prompt a chat template is given: its messages, or one empty user turn when it has
    none (a prompt read as ``[]``; TRL and chat templates cannot render an empty conversation).
    The pairs table keeps ``[]`` (flagged ``empty_prompt``), so ``pair_id`` does not change."""
    return as_messages(value) or [{"role": "user", "content": ""}]


# ---------------------------------------------------------------- building a table

@dataclass
class PairRecord:
    """One pair before it becomes a table row (readers build these or dicts of the same keys)."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    score_chosen: float = float("nan")
    score_rejected: float = float("nan")
    source: str = ""
    prompt_id: str | None = None
    chosen_model: str = ""
    rejected_model: str = ""


#: Scores beyond this magnitude are treated as data errors (flag ``nonfinite_score``): no
#: rating scale comes near it, and the difference of two such scores overflows to inf.
SCORE_LIMIT = 1e6

#: Column a reader may add to the rows it builds with flags only it can see (``;``-joined names
#: from :data:`FLAGS`); :func:`finalize_pairs` folds them into ``flags`` and drops the column.
NOTE_COLUMN = "_read_flags"

#: Row flag -> meaning (the order flags appear in within a row's ``flags``).
FLAGS: dict[str, str] = {
    "empty_prompt": "the prompt has no text",
    "prompt_mismatch": "the row's prompt text matches no turn of its conversation (the turns are used)",
    "implicit_prompt_mid_word": "no prompt field: the prompt is the answers' shared opening (TRL's implicit "
                                "prompt), and it ends inside a word (map the prompt with --map prompt=FIELD)",
    "empty_chosen": "chosen is empty or whitespace",
    "empty_rejected": "rejected is empty or whitespace",
    "chosen_equals_rejected": "chosen and rejected are the same text",
    "missing_score": "score_chosen or score_rejected is unknown (NaN)",
    "nonfinite_score": f"a score or aspect rating is infinite or beyond ±{SCORE_LIMIT:g} "
                       "(read as unknown when gaps are computed)",
}


def usable_scores(values: Any) -> np.ndarray:
    """Scores as floats with the unusable ones (inf, |s| > SCORE_LIMIT) as NaN: a gap computed
    from them is then unknown, not an infinite or absurd number (and no overflow warning)."""
    x = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(x) <= SCORE_LIMIT, x, np.nan)


def pair_flags(df: pd.DataFrame) -> pd.Series:
    """Warnings per row of a pairs table (vectorised). Never a reason to drop here."""
    chosen = df["chosen"].astype(str)
    rejected = df["rejected"].astype(str)
    scores = df[FLOAT_COLUMNS].to_numpy(float)
    with np.errstate(invalid="ignore"):  # NaN compares False: unknown is not 'nonfinite'
        absurd = (np.abs(scores) > SCORE_LIMIT).any(axis=1)
    noted = df[NOTE_COLUMN].fillna("").astype(str) if NOTE_COLUMN in df else pd.Series("", index=df.index)
    conditions = {
        "empty_prompt": (df["prompt_text"].astype(str).str.strip() == "") if "prompt_text" in df
        else pd.Series(False, index=df.index),
        "prompt_mismatch": noted.str.contains("prompt_mismatch", regex=False),
        "implicit_prompt_mid_word": noted.str.contains("implicit_prompt_mid_word", regex=False),
        "empty_chosen": chosen.str.strip() == "",
        "empty_rejected": rejected.str.strip() == "",
        "chosen_equals_rejected": chosen == rejected,
        "missing_score": df["score_chosen"].isna() | df["score_rejected"].isna(),
        "nonfinite_score": absurd,
    }
    flags = pd.Series("", index=df.index, dtype=object)
    for name, mask in conditions.items():
        flags = flags.where(~np.asarray(mask, dtype=bool), flags + ";" + name)
    return flags.str.lstrip(";")


def row_flags(chosen: str, rejected: str, score_chosen: float, score_rejected: float) -> str:
    """:func:`pair_flags` of one row (for callers that build rows one at a time)."""
    row = {"chosen": [chosen], "rejected": [rejected], **{c: [np.nan] for c in FLOAT_COLUMNS},
           "score_chosen": [score_chosen], "score_rejected": [score_rejected]}
    return pair_flags(pd.DataFrame(row)).iloc[0]


def build_pairs(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts with at least prompt/chosen/rejected) -> a validated pairs table.

    Fills ids, prompt_text, missing optional columns and flags; keeps extra keys as
    extra columns after the schema columns.
    """
    df = pd.DataFrame(list(rows))
    return finalize_pairs(df)


def finalize_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Complete a frame that has prompt (messages), chosen and rejected: ids, text, defaults, flags."""
    df = df.copy()
    if len(df) == 0:
        df = pd.DataFrame(columns=list(PAIR_COLUMNS))
    df["prompt"] = [as_messages(m) for m in df["prompt"]]
    df["chosen"] = df["chosen"].fillna("").astype(str)
    df["rejected"] = df["rejected"].fillna("").astype(str)
    df["prompt_text"] = [prompt_to_text(m) for m in df["prompt"]]
    for col in FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float) if col in df else np.nan
    for col in ("source", "chosen_model", "rejected_model"):
        df[col] = df[col].fillna("").astype(str) if col in df else ""
    if "prompt_id" not in df:
        df["prompt_id"] = None
    missing_pid = df["prompt_id"].isna() | (df["prompt_id"].astype(str) == "")
    df["prompt_id"] = df["prompt_id"].astype(object)
    df.loc[missing_pid, "prompt_id"] = df.loc[missing_pid, "prompt_text"].map(make_prompt_id)
    df["prompt_id"] = df["prompt_id"].astype(str)
    base_ids = pd.Series([make_pair_id(p, c, r) for p, c, r in
                          zip(df["prompt"], df["chosen"], df["rejected"])], dtype=object)
    # Exact repeats of a pair keep a unique id: later copies get '-1', '-2', ... so every
    # row stays accountable (curation can then drop them as duplicates, with a reason).
    repeat = base_ids.groupby(base_ids).cumcount()
    df["pair_id"] = np.where(repeat > 0, base_ids + "-" + repeat.astype(str), base_ids)
    df["flags"] = pair_flags(df)
    df = df.drop(columns=[NOTE_COLUMN], errors="ignore")
    extra = [c for c in df.columns if c not in PAIR_COLUMNS]
    return df[list(PAIR_COLUMNS) + extra].reset_index(drop=True)


def validate_pairs(df: pd.DataFrame, *, file: str | None = None) -> pd.DataFrame:
    """Check a table claims the schema (columns present, texts are strings). Returns it."""
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise PairDataError(f"not a pairs table: missing columns {missing}", file=file,
                            field=missing[0], hint="produce it with `pairlab convert`")
    return df
