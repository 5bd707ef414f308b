"""Synthetic UltraFeedback: raw-layout records whose completions carry their true quality.

How one record is made (all random draws are vectorised numpy, seeded once):

1. A topic (from the mix) and a prompt key. Train and eval draw from disjoint sets of
   *underlying questions* (entities: "capital of France", "17 + 25"), so an eval prompt
   never appears in train, not even with a different greeting in front.
2. Four of the five quality levels (0..4), in random completion order. Latent quality
   is ``level + 1 + jitter`` with |jitter| < 0.25: distinct within a record (truth is
   always defined) and on the 1-5 rating scale.
3. The rater: each aspect rating is ``round(latent + length_bias * padded + noise)``,
   clipped to 1..5, with noise ~ N(0, rater_noise) (70% of its variance shared by the
   four aspects of a completion, so averaging aspects does not wash it out). ``overall_score`` (1..10, from the
   critique) is a second noisy reading of the same quality, mirrored (11 - s) for a
   ``overall_score_bug_rate`` share of completions. A ``tie_rate`` share of records gets
   two adjacent-quality completions rated identically.
4. Text from :mod:`.templates`; padded completions get verbose filler (longer, no better).

The eval split is rated by an oracle (no noise, no bias, no bug, no ties) so its
binarized pairs have clean true labels; its texts are drawn the same way as train.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schema import ASPECTS, make_prompt_id
from .config import SimulateConfig
from .templates import (CRITIQUES, MARKERS, PREFIXES, RATIONALES, STYLES, SUFFIXES, TOPICS, VERBOSE,
                        VERBOSE_CLOSE, VERBOSE_OPEN, Topic)

N_LEVELS = 5
PER_RECORD = 4
#: Fictional models, strongest first; stronger models tend to write the better answers.
MODELS = ("sim-70b-chat", "sim-34b-instruct", "sim-13b-chat", "sim-8b-instruct",
          "sim-7b-chat", "sim-3b-instruct", "sim-1b-chat", "sim-360m-instruct")
_SKILL = np.linspace(1.0, 0.0, len(MODELS))
_SHARED, _OWN = np.sqrt(0.7), np.sqrt(0.3)
_RATING = ("1", "2", "3", "4", "5")
_KEYS_PER_ENTITY = len(STYLES) * len(PREFIXES) * len(SUFFIXES)
# realistic length: completion length (characters) ~ lognormal around real UltraFeedback's
# ~1,100-1,400 characters and ~240 SmolLM2 tokens per text (the median is set so the
# simulated texts, which tokenize at ~4.7 characters per token, average ~240 tokens).
_REALISTIC_MEDIAN, _REALISTIC_SIGMA = 1350.0, 0.35


@dataclass
class SimResult:
    """What :func:`simulate` returns: raw-layout records per split and a few counts."""

    train_records: list[dict[str, Any]]
    eval_records: list[dict[str, Any]]
    config: SimulateConfig
    stats: dict[str, Any] = field(default_factory=dict)


def simulate(cfg: SimulateConfig | None = None, **overrides: Any) -> SimResult:
    """Generate synthetic raw-UltraFeedback records with known latent quality.

    Parameters
    ----------
    cfg : SimulateConfig, optional
        The knobs (defaults when omitted); ``overrides`` replace single fields,
        e.g. ``simulate(n=60_000, length="realistic", seed=1)``.

    Returns
    -------
    SimResult with ``train_records`` and ``eval_records`` (lists of dicts in the raw
    ``openbmb/UltraFeedback`` layout plus ``prompt_id``, ``topic``, ``split`` per record
    and ``latent_quality``, ``padded``, ``overall_score_bug`` per completion).
    """
    cfg = cfg or SimulateConfig()
    if overrides:
        cfg = SimulateConfig(**{**cfg.__dict__, **overrides})
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    n_eval = int(round(cfg.n * cfg.eval_fraction))
    n_train = cfg.n - n_eval

    names = [t for t, w in cfg.topics.items() if w > 0]
    weights = np.array([cfg.topics[t] for t in names], dtype=float)
    weights /= weights.sum()
    eval_entities = {t: _eval_entities(TOPICS[t], cfg.eval_fraction, rng) for t in names}

    # Markers come from their own stream, so marker_rate=0 leaves every other draw (and the
    # output of earlier versions) unchanged.
    marker_rng = np.random.default_rng([cfg.seed, 7919])
    train = _split_records("train", n_train, names, weights, eval_entities, cfg, rng,
                           oracle=False, marker_rng=marker_rng)
    held_out = _split_records("eval", n_eval, names, weights, eval_entities, cfg, rng,
                              oracle=True, marker_rng=marker_rng)
    stats = {"n_train_records": len(train), "n_eval_records": len(held_out),
             "topics": {t: sum(r["topic"] == t for r in train) for t in names},
             "raw_discordance": raw_discordance(train)}
    return SimResult(train, held_out, cfg, stats)


# ---------------------------------------------------------------- prompts and the split

def _eval_entities(topic: Topic, eval_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask over the topic's entities: True = held out for eval (at least one)."""
    mask = np.zeros(topic.n_entities, dtype=bool)
    if eval_fraction > 0:
        k = max(1, int(round(topic.n_entities * eval_fraction)))
        mask[rng.choice(topic.n_entities, size=k, replace=False)] = True
    return mask


def _draw_keys(topic: Topic, n: int, in_split: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n prompt keys from the split's entities; entities cycle through a permutation so
    repeats of a question happen only after every question of the split was used once."""
    pool = np.flatnonzero(in_split)
    if len(pool) > 4 * n:  # huge pools (arithmetic): draw, no need to permute millions
        entities = rng.choice(pool, size=n, replace=False)
    else:
        entities = rng.permutation(pool)[np.arange(n) % len(pool)]
    return entities.astype(np.int64) * _KEYS_PER_ENTITY + rng.integers(0, _KEYS_PER_ENTITY, n)


# ---------------------------------------------------------------- one split

def _split_records(split: str, n: int, names: list[str], weights: np.ndarray,
                   eval_entities: dict[str, np.ndarray], cfg: SimulateConfig,
                   rng: np.random.Generator, *, oracle: bool,
                   marker_rng: np.random.Generator | None = None) -> list[dict[str, Any]]:
    if n == 0:
        return []
    topic_idx = rng.choice(len(names), size=n, p=weights)
    keys = np.zeros(n, dtype=np.int64)
    for t, name in enumerate(names):
        rows = np.flatnonzero(topic_idx == t)
        if len(rows):
            in_split = eval_entities[name] if split == "eval" else ~eval_entities[name]
            keys[rows] = _draw_keys(TOPICS[name], len(rows), in_split, rng)

    # Quality: 4 distinct levels of 5 (drop one at random), in random completion order.
    drop = rng.integers(0, N_LEVELS, n)[:, None]
    base = np.arange(PER_RECORD)[None, :]
    levels = base + (base >= drop)
    levels = np.take_along_axis(levels, np.argsort(rng.random((n, PER_RECORD)), axis=1), axis=1)
    latent = levels + 1 + rng.uniform(-0.24, 0.24, (n, PER_RECORD))

    padded = rng.random((n, PER_RECORD)) < cfg.padding_rate
    noise_sd = 0.0 if oracle else cfg.rater_noise
    bias = 0.0 if oracle else cfg.length_bias * padded
    # A rater misjudges a whole answer more than single aspects: 70% of the noise variance
    # is shared by the four aspects of a completion, 30% is per aspect.
    aspect_noise = noise_sd * (_SHARED * rng.standard_normal((n, PER_RECORD, 1))
                               + _OWN * rng.standard_normal((n, PER_RECORD, len(ASPECTS))))
    ratings = np.clip(np.rint(latent[:, :, None] + np.asarray(bias)[..., None] + aspect_noise),
                      1, 5).astype(np.int64)
    overall = np.clip(np.rint(2 * (latent + bias + rng.standard_normal((n, PER_RECORD)) * noise_sd)),
                      1, 10)
    bug = (rng.random((n, PER_RECORD)) < cfg.overall_score_bug_rate) & (not oracle)
    overall = np.where(bug, 11 - overall, overall)
    if not oracle and cfg.tie_rate > 0:
        _plant_ties(ratings, overall, latent, rng.random(n) < cfg.tie_rate, rng)
    models = _assign_models(levels, rng)

    # Per-completion text draws: answer variant, target length, pool offset, filler count.
    variant = rng.integers(0, 1 << 30, (n, PER_RECORD))
    target = np.clip(rng.lognormal(np.log(_REALISTIC_MEDIAN), _REALISTIC_SIGMA, (n, PER_RECORD)),
                     400, 4000).astype(np.int64)
    n_filler = rng.integers(2, len(VERBOSE) + 1, (n, PER_RECORD))
    realistic = cfg.length == "realistic"
    marker_rng = marker_rng or np.random.default_rng([cfg.seed, 7919])
    # A style marker (flattery / hedging) in front of the answer, independent of its quality.
    marked = marker_rng.random((n, PER_RECORD)) < cfg.marker_rate
    marker_idx = marker_rng.integers(0, len(MARKERS), (n, PER_RECORD))

    records = []
    fine = ratings.mean(axis=2)
    for i in range(n):
        topic = TOPICS[names[topic_idx[i]]]
        key = int(keys[i])
        attrs = topic.attrs(key // _KEYS_PER_ENTITY)
        prompt, style = topic.prompt(key, attrs)
        completions = []
        for k in range(PER_RECORD):
            level = int(levels[i, k])
            v = int(variant[i, k])
            text = topic.answer(level, v, attrs)
            if realistic:
                text = _lengthen(text, topic.pool(level), attrs, int(target[i, k]), v)
            if marked[i, k]:
                text = MARKERS[marker_idx[i, k]] + text[:1].lower() + text[1:]
            if padded[i, k]:
                text = _pad(text, prompt, int(n_filler[i, k]) if realistic else 1, v)
            r = ratings[i, k]
            completions.append({
                "model": MODELS[models[i, k]],
                "response": text,
                "annotations": {a: {"Rating": _RATING[r[j] - 1], "Rationale": RATIONALES[level]}
                                for j, a in enumerate(ASPECTS)},
                "fine-grained_score": float(fine[i, k]),
                "overall_score": float(overall[i, k]),
                "critique": CRITIQUES[level],
                "latent_quality": round(float(latent[i, k]), 4),
                "padded": bool(padded[i, k]),
                "marker": bool(marked[i, k]),
                "overall_score_bug": bool(bug[i, k]),
            })
        records.append({
            "source": f"sim_{style}",
            "instruction": prompt,
            "models": [c["model"] for c in completions],
            "completions": completions,
            "prompt_id": make_prompt_id(prompt),
            "topic": topic.name,
            "split": split,
        })
    return records


def _plant_ties(ratings: np.ndarray, overall: np.ndarray, latent: np.ndarray,
                tied: np.ndarray, rng: np.random.Generator) -> None:
    """In each tied record, give two completions of adjacent latent quality the same ratings
    (copied from one of the two at random), in place."""
    rows = np.flatnonzero(tied)
    if not len(rows):
        return
    order = np.argsort(latent[rows], axis=1)
    j = rng.integers(0, PER_RECORD - 1, len(rows))
    lower, upper = order[np.arange(len(rows)), j], order[np.arange(len(rows)), j + 1]
    from_upper = rng.random(len(rows)) < 0.5
    src, dst = np.where(from_upper, upper, lower), np.where(from_upper, lower, upper)
    ratings[rows, dst] = ratings[rows, src]
    overall[rows, dst] = overall[rows, src]


def _assign_models(levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Four distinct models per record; a noisy skill ranking decides who wrote which level."""
    n = len(levels)
    picked = np.argsort(rng.random((n, len(MODELS))), axis=1)[:, :PER_RECORD]
    score = _SKILL[picked] + rng.gumbel(size=picked.shape) * 0.3
    by_score = np.take_along_axis(picked, np.argsort(-score, axis=1), axis=1)
    level_rank = np.argsort(np.argsort(-levels, axis=1), axis=1)
    return np.take_along_axis(by_score, level_rank, axis=1)


def _lengthen(text: str, pool: tuple[str, ...], attrs: dict, target: int, offset: int) -> str:
    """Append consecutive pool sentences (no repeats) until the text reaches ``target`` chars."""
    parts = [text]
    size = len(text)
    for j in range(len(pool)):
        if size >= target:
            break
        sentence = pool[(offset + j) % len(pool)].format(**attrs)
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


def _pad(text: str, prompt: str, n_filler: int, offset: int) -> str:
    """Verbose padding: a gushing opener, a restatement, filler sentences, a sign-off."""
    filler = " ".join(VERBOSE[(offset + j) % len(VERBOSE)] for j in range(n_filler))
    return f"{VERBOSE_OPEN}{filler} You asked: \"{prompt}\" {text}{VERBOSE_CLOSE}"


# ---------------------------------------------------------------- truth on the raw records

def raw_discordance(records: list[dict[str, Any]]) -> float:
    """Share of within-record completion pairs whose mean aspect rating orders them against
    their latent quality (a tie counts one half): label noise as the raw ratings carry it,
    before any binarization chooses which pairs to keep."""
    if not records:
        return float("nan")
    latent = np.array([[c["latent_quality"] for c in r["completions"]] for r in records])
    rated = np.array([[c["fine-grained_score"] for c in r["completions"]] for r in records])
    i, j = np.triu_indices(latent.shape[1], k=1)
    true_sign = np.sign(latent[:, i] - latent[:, j])
    rated_sign = np.sign(rated[:, i] - rated[:, j])
    wrong = np.where(rated_sign == 0, 0.5, (rated_sign != true_sign).astype(float))
    return float(wrong.mean())
