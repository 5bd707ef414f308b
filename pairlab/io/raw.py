"""Binarize raw openbmb/UltraFeedback records (one prompt, N rated completions) into pairs.

Score of a completion, by strategy (``--binarize``):

* ``mean-aspects``  mean of the four aspect Ratings, "N/A" ignored (Argilla's fix: the
  original ``overall_score`` is a critique score that disagrees with the aspect ratings
  on many rows, which put low-quality answers in ``chosen``);
* ``overall-score`` the original ``overall_score`` (1-10), as H4's binarization used;
* ``fine-grained``  ``fine-grained_score`` (the mean of the aspect ratings UltraFeedback
  shipped, 1-5).

Pairing (``--pairing``), over the completions that have a score:

* ``best-vs-random`` highest score vs one strictly lower completion drawn at random,
  seeded per prompt (``seed`` + instruction text), so it does not depend on row order;
* ``best-vs-worst``  highest vs lowest;
* ``all-pairs``      every two completions with different scores.

A prompt whose candidates all tie gives no pair: it is counted in ``ties_dropped``
(ties carry no preference signal for DPO). The first completion wins a tie for best.

distilabel's raw output (``instruction``, ``generations[]``, ``ratings[]``, optional
``rationales[]`` and ``model_names[]`` / ``generation_models[]``) is read the same way:
each generation is a completion scored by its rating (whatever ``--binarize`` says: there
are no aspect ratings), paired by ``--pairing``; rationales become ``chosen_rationale`` /
``rejected_rationale``.

berkeley-nest/Nectar (``prompt`` as an hh-style "Human: ... Assistant:" transcript,
``answers[]`` of ``{answer, model, rank}``, rank 1 best) is read the same way: each answer
is a completion scored ``K + 1 - rank`` for its record's K answers (so the best of 7 scores
7), paired by ``--pairing``; the prompt transcript becomes its turns.
"""
from __future__ import annotations

import math
import random
from typing import Any

import pandas as pd

from ..schema import ASPECTS, PairDataError
from .rejects import RejectLog
from .sources import RecordBatch

STRATEGIES = ("mean-aspects", "overall-score", "fine-grained")
PAIRINGS = ("best-vs-random", "best-vs-worst", "all-pairs")
#: Record keys the raw layout consumes; every other record-level key is carried through.
RAW_KEYS = ("instruction", "completions", "models", "source",
            *("generations", "ratings", "rationales", "model_names", "generation_models"))  # distilabel
#: What a Nectar record's prompt and answers are read from (other records carry such keys along).
RANKED_KEYS = ("prompt", "answers")


def is_ranked(record: dict) -> bool:
    """A Nectar-style record: a string ``prompt`` and ``answers[]`` carrying ``answer`` and ``rank``."""
    answers = _as_list(record.get("answers"))
    return isinstance(record.get("prompt"), str) and isinstance(answers, list) and bool(answers) \
        and all(isinstance(a, dict) and "answer" in a and "rank" in a for a in answers[:3])


def _number(value: Any, batch: RecordBatch, index: int, field: str) -> float:
    """A rating as float; None / "N/A" / "" -> NaN; anything else non-numeric is an error."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise PairDataError(f"wrong type: expected a number, got {value!r}", field=field,
                                **batch.where(index))
        return math.nan
    number = None
    if isinstance(value, (int, float)):
        number = _finite_or_nan(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.upper() in ("N/A", "NA", ""):
            return math.nan
        try:
            number = _finite_or_nan(float(text))
        except ValueError:
            pass
    if number is None:
        raise PairDataError(f"wrong type: expected a finite number or 'N/A', got {value!r:.80}",
                            field=field, **batch.where(index))
    return number


def _finite_or_nan(value: int | float) -> float | None:
    """float(value); NaN stays NaN (unknown); None for an infinite or overflowing value."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return None if math.isinf(number) else number


def _aspect_rating(annotations: Any, aspect: str, batch: RecordBatch, index: int,
                   field: str) -> float:
    if not isinstance(annotations, dict):
        return math.nan
    entry = annotations.get(aspect)
    if isinstance(entry, list):  # some exports wrap each aspect in a one-element list
        entry = entry[0] if entry else None
    if not isinstance(entry, dict):
        return math.nan
    return _number(entry.get("Rating"), batch, index, f"{field}.annotations.{aspect}.Rating")


def _completion(raw: Any, strategy: str, batch: RecordBatch, index: int, k: int) -> dict:
    field = f"completions[{k}]"
    if not isinstance(raw, dict):
        raise PairDataError(f"wrong type: expected an object, got {type(raw).__name__}",
                            field=field, **batch.where(index))
    response = raw.get("response")
    if not isinstance(response, str) and response is not None:
        raise PairDataError(f"wrong type: expected a string, got {type(response).__name__}",
                            field=f"{field}.response", **batch.where(index))
    if "response" not in raw:
        raise PairDataError("missing required field", field=f"{field}.response",
                            **batch.where(index))
    ratings = {a: _aspect_rating(raw.get("annotations"), a, batch, index, field) for a in ASPECTS}
    if "rating" in raw:  # a distilabel generation: one rating, no aspects
        score = _number(raw["rating"], batch, index, f"ratings[{k}]")
    elif strategy == "mean-aspects":
        known = [r for r in ratings.values() if not math.isnan(r)]
        score = sum(known) / len(known) if known else math.nan
    elif strategy == "overall-score":
        score = _number(raw.get("overall_score"), batch, index, f"{field}.overall_score")
    else:
        score = _number(raw.get("fine-grained_score"), batch, index, f"{field}.fine-grained_score")
    latent = raw.get("latent_quality")
    return {"response": response or "", "model": str(raw.get("model") or ""), "score": score,
            "ratings": ratings, "rationale": raw.get("rationale"),
            "latent": _finite_or_nan(latent) if isinstance(latent, (int, float))
            and not isinstance(latent, bool) else None}


def _pairs_of(scores: list[float], pairing: str, rng: random.Random) -> tuple[list[tuple[int, int]], int]:
    """(chosen index, rejected index) pairs among scored completions, and the ties dropped."""
    scored = [i for i, s in enumerate(scores) if not math.isnan(s)]
    if pairing == "all-pairs":
        pairs, ties = [], 0
        for a_pos, a in enumerate(scored):
            for b in scored[a_pos + 1:]:
                if scores[a] == scores[b]:
                    ties += 1
                else:
                    pairs.append((a, b) if scores[a] > scores[b] else (b, a))
        return pairs, ties
    best = max(scored, key=lambda i: scores[i])  # max keeps the first of equal maxima
    if pairing == "best-vs-worst":
        worst = min(scored, key=lambda i: scores[i])
        return ([], 1) if scores[worst] == scores[best] else ([(best, worst)], 0)
    lower = [i for i in scored if scores[i] < scores[best]]
    return ([], 1) if not lower else ([(best, rng.choice(lower))], 0)


def binarize(batch: RecordBatch, records: list[dict], strategy: str = "mean-aspects",
             pairing: str = "best-vs-random", seed: int = 0, log: RejectLog | None = None,
             *, check_scored: bool = True) -> tuple[pd.DataFrame, dict[str, int]]:
    """Raw records -> pre-schema pair rows and counts (prompts, ties dropped, unscored...).

    A record that cannot be read (no instruction, a rating that is not a number, ...)
    goes to ``log`` and gives no pair; without a log it is raised. ``check_scored``: raise
    :func:`unscored_error` when no completion has a score (off for one chunk of a file:
    the chunked reader judges the whole file from the counts).
    """
    if strategy not in STRATEGIES:
        raise PairDataError(f"unknown binarization '{strategy}'", field="--binarize",
                            hint=f"choose one of {', '.join(STRATEGIES)}")
    if pairing not in PAIRINGS:
        raise PairDataError(f"unknown pairing '{pairing}'", field="--pairing",
                            hint=f"choose one of {', '.join(PAIRINGS)}")
    log = log if log is not None else RejectLog(strict=True)
    rows: list[dict[str, Any]] = []
    stats = {"completions": 0, "completions_unscored": 0, "prompts_too_few_scored": 0,
             "ties_dropped": 0}
    for index, record in enumerate(records):
        try:
            instruction, completions = _record(record, strategy, batch, index)
            ranked = "answers" in record and "instruction" not in record  # as _record decides
            prompt = _ranked_prompt(instruction) if ranked else None
        except PairDataError as err:
            log.add(err, batch.records[index])
            continue
        scores = [c["score"] for c in completions]
        n_scored = sum(not math.isnan(s) for s in scores)
        stats["completions"] += len(completions)
        stats["completions_unscored"] += len(completions) - n_scored
        if n_scored < 2:
            stats["prompts_too_few_scored"] += 1
            continue
        rng = random.Random(f"{seed}\x00{instruction}")
        pairs, ties = _pairs_of(scores, pairing, rng)
        stats["ties_dropped"] += ties
        extras = {k: v for k, v in record.items() if k not in RAW_KEYS and not (ranked and k in RANKED_KEYS)}
        for c_idx, r_idx in pairs:
            rows.append(_pair_row(instruction, record, completions[c_idx], completions[r_idx], extras, prompt))
    if check_scored and stats["completions"] and stats["completions_unscored"] == stats["completions"]:
        raise unscored_error(batch.name, strategy)
    return pd.DataFrame(rows), stats


def unscored_error(file: str, strategy: str) -> PairDataError:
    """A raw file none of whose completions has a score under ``strategy``."""
    return PairDataError(f"no completion has a score under --binarize {strategy}",
                         file=file, field="completions",
                         hint=f"try another strategy: {', '.join(STRATEGIES)}")


def _record(record: dict, strategy: str, batch: RecordBatch, index: int) -> tuple[str, list[dict]]:
    """One raw record -> (instruction, scored completions), or PairDataError."""
    if "answers" in record and "instruction" not in record:
        return _ranked_record(record, batch, index)
    instruction = record.get("instruction")
    if not isinstance(instruction, str):
        raise PairDataError("missing required field" if instruction is None else
                            f"wrong type: expected a string, got {type(instruction).__name__}",
                            field="instruction", **batch.where(index))
    raw_completions = record.get("completions")
    if raw_completions is None and "generations" in record:
        raw_completions = _distilabel_completions(record, batch, index)
    if not isinstance(raw_completions, list):
        raise PairDataError("missing required field" if raw_completions is None else
                            "wrong type: expected a list of completions",
                            field="completions", **batch.where(index))
    completions = [_completion(c, strategy, batch, index, k) for k, c in enumerate(raw_completions)]
    return instruction, completions


def _ranked_record(record: dict, batch: RecordBatch, index: int) -> tuple[str, list[dict]]:
    """A Nectar record -> (prompt text, completions scored K + 1 - rank)."""
    prompt = record.get("prompt")
    if not isinstance(prompt, str):
        raise PairDataError("missing required field" if prompt is None else
                            f"wrong type: expected a string, got {type(prompt).__name__}",
                            field="prompt", **batch.where(index))
    answers = _as_list(record.get("answers"))
    if not isinstance(answers, list):
        raise PairDataError("wrong type: expected a list of answers", field="answers", **batch.where(index))
    completions = []
    for k, answer in enumerate(answers):
        field = f"answers[{k}]"
        if not isinstance(answer, dict) or not isinstance(answer.get("answer"), str):
            raise PairDataError("expected an object with a string 'answer'", field=field, **batch.where(index))
        rank = _number(answer.get("rank"), batch, index, f"{field}.rank")
        completions.append({"response": answer["answer"], "model": str(answer.get("model") or ""),
                            "score": len(answers) + 1 - rank, "ratings": {a: math.nan for a in ASPECTS},
                            "rationale": None, "latent": None})
    return prompt, completions


def _ranked_prompt(text: str) -> list[dict[str, str]]:
    """Nectar's prompt transcript as turns (its closing empty "Assistant:" cue dropped)."""
    from .layouts import parse_transcript

    messages = parse_transcript(text)
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages = messages[:-1]
    return messages or [{"role": "user", "content": text.strip()}]


def _as_list(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (str, bytes)) else value


def _distilabel_completions(record: dict, batch: RecordBatch, index: int) -> list[dict]:
    """distilabel's parallel lists (generations, ratings, rationales, models) -> raw-style completions."""
    generations = _as_list(record.get("generations"))
    ratings = _as_list(record.get("ratings"))
    if not isinstance(generations, list):
        raise PairDataError("wrong type: expected a list of generations", field="generations",
                            **batch.where(index))
    if not isinstance(ratings, list) or len(ratings) != len(generations):
        raise PairDataError("missing required field" if ratings is None else
                            f"expected one rating per generation ({len(generations)}), got "
                            f"{len(ratings) if isinstance(ratings, list) else type(ratings).__name__}",
                            field="ratings", **batch.where(index))
    rationales = _as_list(record.get("rationales"))
    rationales = rationales if isinstance(rationales, list) and len(rationales) == len(generations) else None
    models = _as_list(record.get("model_names", record.get("generation_models")))
    models = models if isinstance(models, list) and len(models) == len(generations) else [""] * len(generations)
    return [{"response": g, "model": m, "rating": r, **({"rationale": rationales[k]} if rationales else {})}
            for k, (g, r, m) in enumerate(zip(generations, ratings, models))]


def _source(value: Any) -> str:
    """A record's source: a list of sources (Nectar's) joined by commas."""
    value = _as_list(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value if v is not None)
    return str(value or "")


def _pair_row(instruction: str, record: dict, chosen: dict, rejected: dict, extras: dict,
              prompt: list[dict[str, str]] | None = None) -> dict:
    row: dict[str, Any] = {
        "prompt": prompt if prompt is not None else [{"role": "user", "content": instruction}],
        "chosen": chosen["response"], "rejected": rejected["response"],
        "score_chosen": chosen["score"], "score_rejected": rejected["score"],
        "source": _source(record.get("source")),
        "chosen_model": chosen["model"], "rejected_model": rejected["model"],
    }
    for aspect in ASPECTS:
        row[f"chosen_{aspect}"] = chosen["ratings"][aspect]
        row[f"rejected_{aspect}"] = rejected["ratings"][aspect]
    if chosen.get("rationale") is not None or rejected.get("rationale") is not None:  # distilabel
        row["chosen_rationale"] = str(chosen.get("rationale") or "")
        row["rejected_rationale"] = str(rejected.get("rationale") or "")
    if chosen["latent"] is not None or rejected["latent"] is not None:
        # Simulator ground truth: is the pair oriented the way the hidden quality says?
        both = chosen["latent"] is not None and rejected["latent"] is not None
        row["chosen_latent_quality"] = chosen["latent"] if chosen["latent"] is not None else math.nan
        row["rejected_latent_quality"] = rejected["latent"] if rejected["latent"] is not None else math.nan
        row["true_preference_correct"] = (chosen["latent"] > rejected["latent"]) if both else None
    for key, value in extras.items():  # a record key the pair already has (a raw record's own
        row[f"input_{key}" if key in row else key] = value  # `prompt`) is kept as input_<key>
    return row
