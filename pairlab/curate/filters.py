"""Filters: registered by name, parameters validated up front, each a keep-mask over scores.

Every filter has the same shape (scikit-learn style): a *name* in :data:`FILTERS`, a
*parser* that validates its YAML value into parameters (raising ``ConfigError`` that
names the key, before any work), a *keep* function ``(scores, params, ctx) -> bool
array`` and a *reason* string for rows it drops.

A filter spec is a YAML list applied in order; each item is a name or a one-key
mapping::

    - drop_ties
    - min_rating_gap: 2
    - length_ratio: [0.5, 2.0]
    - sample: {n: 5000, seed: 0, stratify: source}

*Stateless* filters look at one row at a time, so it does not matter which rows they
see. *Stateful* filters (``dedupe_prompts``, ``sample``, ``balance_length``,
``keep_quantile``) decide from the rows they are given, so in the chain they see only
the rows still kept at that point.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..dirs import AuditDir
from .scores import NUMERIC_SCORES, SCORES
from .split import seeded_keys


@dataclass
class FilterContext:
    """What a filter may need besides the rows it is given: the whole pool (pairs and
    scores, same index) and the config's defaults."""

    pairs: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    seed: int = 0
    contamination_threshold: float = 0.5
    contamination_ngram: int = 8
    memo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FilterDef:
    """A registered filter kind."""

    name: str
    parse: Callable[[Any, str], Any]
    keep: Callable[[pd.DataFrame, Any, FilterContext], np.ndarray]
    reason: Callable[[Any], str]
    stateful: bool
    help: str
    example: str


@dataclass(frozen=True)
class Filter:
    """One validated entry of a filter spec."""

    name: str
    params: Any
    label: str          # unique within the spec: name, or name#2 for a repeat
    key: str            # where it came from, for messages: filters[3].sample

    @property
    def definition(self) -> FilterDef:
        return FILTERS[self.name]

    def keep(self, scores: pd.DataFrame, ctx: FilterContext) -> np.ndarray:
        return np.asarray(self.definition.keep(scores, self.params, ctx), dtype=bool)

    @property
    def reason(self) -> str:
        return self.definition.reason(self.params)

    def spec(self) -> Any:
        """The normalized YAML form (for the manifest)."""
        params = self.params
        if hasattr(params, "__dataclass_fields__"):
            params = {k: getattr(params, k) for k in params.__dataclass_fields__}
        return {self.name: params}


FILTERS: dict[str, FilterDef] = {}


def register(name: str, *, parse: Callable[[Any, str], Any], reason: Callable[[Any], str],
             example: str, stateful: bool = False):
    """Decorator: register ``keep(scores, params, ctx)`` as filter ``name``."""
    def wrap(keep):
        FILTERS[name] = FilterDef(name, parse, keep, reason, stateful,
                                  (keep.__doc__ or "").strip().split("\n")[0], example)
        return keep
    return wrap


# ---------------------------------------------------------------- parameter validators

def _flag(value: Any, key: str) -> bool:
    """``- drop_ties`` / ``drop_ties: true`` / ``drop_ties: {}`` enable; ``false`` disables."""
    if value is None or value is True or value == {}:
        return True
    if value is False:
        return False
    raise ConfigError(f"expected true (or no value), got {value!r}", field=key)


def _number(value: Any, key: str, *, low: float | None = None, integer: bool = False,
            unbounded: bool = False) -> float:
    """A number parameter. NaN is always refused (every comparison with it is False, so
    a NaN threshold would silently drop every row); infinity only where ``unbounded``
    (a range's open end)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and not math.isfinite(value):
        ok = unbounded and not math.isnan(value)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or (low is not None and value < low):
        kind = "an integer" if integer else "a number" if unbounded else "a finite number"
        bound = f" >= {low}" if low is not None else ""
        raise ConfigError(f"expected {kind}{bound}, got {value!r}", field=key)
    return int(value) if integer else float(value)


def _mapping(value: Any, key: str, allowed: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping with keys {sorted(allowed)}, got {value!r}",
                          field=key)
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown parameter; valid: {sorted(allowed)}",
                          field=f"{key}.{unknown[0]}")
    return {**allowed, **value}


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(v, str) for v in value):
        raise ConfigError(f"expected a list of names, got {value!r}", field=key)
    return tuple(value)


def _score_name(value: Any, key: str, numeric: bool = True) -> str:
    names = NUMERIC_SCORES if numeric else tuple(SCORES)
    if value not in names:
        raise ConfigError(f"unknown score {value!r}; valid: {list(names)}", field=key)
    return value


def _seed(value: Any, key: str) -> int | None:
    return None if value is None else int(_number(value, key, low=0, integer=True))


# ---------------------------------------------------------------- helpers

def random_keys(pair_ids: pd.Series, seed: int) -> np.ndarray:
    """A seeded uniform 64-bit key per pair, from its pair_id: the same pair gets the same
    key whatever else is in the pool, so a sample is stable across filter arms."""
    return seeded_keys(pair_ids, seed)


def _seed_of(params_seed: int | None, ctx: FilterContext) -> int:
    return ctx.seed if params_seed is None else params_seed


# ---------------------------------------------------------------- ratings

@register("min_rating_gap", parse=lambda v, k: _number(v, k),
          reason=lambda p: f"rating_gap < {p:g} or unknown", example="min_rating_gap: 2")
def _min_rating_gap(scores, params, ctx):
    """Keep pairs whose rating_gap is at least the value (unknown gaps are dropped)."""
    return scores["rating_gap"].to_numpy(float) >= params


@register("max_rating_gap", parse=lambda v, k: _number(v, k),
          reason=lambda p: f"rating_gap > {p:g} or unknown", example="max_rating_gap: 4")
def _max_rating_gap(scores, params, ctx):
    """Keep pairs whose rating_gap is at most the value (unknown gaps are dropped)."""
    return scores["rating_gap"].to_numpy(float) <= params


@register("drop_ties", parse=_flag, reason=lambda p: "tie: rating_gap == 0",
          example="drop_ties")
def _drop_ties(scores, params, ctx):
    """Drop pairs rated equal (is_tie)."""
    return ~scores["is_tie"].to_numpy(bool)


@register("drop_unrated", parse=_flag, reason=lambda p: "rating_gap unknown",
          example="drop_unrated")
def _drop_unrated(scores, params, ctx):
    """Drop pairs without both ratings (rating_gap is NaN)."""
    return scores["rating_gap"].notna().to_numpy()


# ---------------------------------------------------------------- lengths

@register("max_total_tokens", parse=lambda v, k: int(_number(v, k, low=1, integer=True)),
          reason=lambda p: f"total_tokens > {p}", example="max_total_tokens: 1024")
def _max_total_tokens(scores, params, ctx):
    """Keep pairs whose prompt + longer completion fit in the value (total_tokens)."""
    return scores["total_tokens"].to_numpy() <= params


@register("drop_truncated", parse=_flag, reason=lambda p: "would_truncate at max_length",
          example="drop_truncated")
def _drop_truncated(scores, params, ctx):
    """Drop pairs the trainer would truncate at the config's max_length (would_truncate)."""
    return ~scores["would_truncate"].to_numpy(bool)


def _parse_range(value: Any, key: str) -> tuple[float, float]:
    if isinstance(value, dict):
        value = [_mapping(value, key, {"min": 0.0, "max": float("inf")})[k] for k in ("min", "max")]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"expected [low, high], got {value!r}", field=key)
    lo = _number(value[0], f"{key}[0]", low=0)
    hi = _number(value[1], f"{key}[1]", low=0, unbounded=True)
    if lo > hi:
        raise ConfigError(f"low {lo:g} is above high {hi:g}", field=key)
    return lo, hi


@register("length_ratio", parse=_parse_range,
          reason=lambda p: f"length_ratio outside [{p[0]:g}, {p[1]:g}]",
          example="length_ratio: [0.5, 2.0]")
def _length_ratio(scores, params, ctx):
    """Keep pairs with low <= chosen_tokens / rejected_tokens <= high."""
    ratio = scores["length_ratio"].to_numpy(float)
    return (ratio >= params[0]) & (ratio <= params[1])


# ---------------------------------------------------------------- text quality

@register("drop_empty", parse=_flag, reason=lambda p: "empty chosen or rejected",
          example="drop_empty")
def _drop_empty(scores, params, ctx):
    """Drop pairs where either completion is empty or whitespace only."""
    return ~(scores["chosen_empty"].to_numpy(bool) | scores["rejected_empty"].to_numpy(bool))


@register("drop_identical", parse=_flag, reason=lambda p: "chosen == rejected (normalized)",
          example="drop_identical")
def _drop_identical(scores, params, ctx):
    """Drop pairs whose completions are equal after normalization (identical)."""
    return ~scores["identical"].to_numpy(bool)


@register("drop_near_identical", parse=_flag,
          reason=lambda p: "chosen and rejected near-identical", example="drop_near_identical")
def _drop_near_identical(scores, params, ctx):
    """Drop pairs whose completions are near-identical (near_identical; includes identical)."""
    return ~scores["near_identical"].to_numpy(bool)


_SIDES = ("chosen", "rejected", "either")


def _parse_refusals(value: Any, key: str) -> str:
    if value is None or value is True or value == {}:
        return "chosen"
    if isinstance(value, str):
        value = {"side": value}
    side = _mapping(value, key, {"side": "chosen"})["side"]
    if side not in _SIDES:
        raise ConfigError(f"expected one of {list(_SIDES)}, got {side!r}", field=f"{key}.side")
    return side


@register("drop_refusals", parse=_parse_refusals,
          reason=lambda p: f"refusal/boilerplate marker in {p}", example="drop_refusals: chosen")
def _drop_refusals(scores, params, ctx):
    """Drop pairs with a refusal / AI-boilerplate marker in chosen (default), rejected or either."""
    chosen = scores["chosen_refusal"].to_numpy(bool)
    rejected = scores["rejected_refusal"].to_numpy(bool)
    hit = {"chosen": chosen, "rejected": rejected, "either": chosen | rejected}[params]
    return ~hit


# ---------------------------------------------------------------- sources and prompts

@register("drop_sources", parse=_strings, reason=lambda p: f"source in {list(p)}",
          example="drop_sources: [truthful_qa]")
def _drop_sources(scores, params, ctx):
    """Drop pairs whose source is one of the listed names."""
    return ~scores["source"].isin(params).to_numpy()


@register("keep_sources", parse=_strings, reason=lambda p: f"source not in {list(p)}",
          example="keep_sources: [evol_instruct, ultrachat]")
def _keep_sources(scores, params, ctx):
    """Keep only pairs whose source is one of the listed names."""
    return scores["source"].isin(params).to_numpy()


@dataclass(frozen=True)
class ExcludeParams:
    path: str
    overlap: float | None = None   # n-gram share that counts; None: config default


def _parse_exclude(value: Any, key: str) -> ExcludeParams:
    if isinstance(value, str):
        value = {"path": value}
    data = _mapping(value, key, {"path": None, "overlap": None})
    path = data["path"]
    if not isinstance(path, str) or not path:
        raise ConfigError("expected a path to a prompts file", field=f"{key}.path")
    if not os.path.exists(path):
        raise ConfigError(f"file not found: {path}", field=f"{key}.path")
    overlap = None if data["overlap"] is None else _number(data["overlap"], f"{key}.overlap", low=0)
    return ExcludeParams(path, overlap)


@register("exclude_prompts_from", parse=_parse_exclude,
          reason=lambda p: f"prompt found in {p.path}",
          example="exclude_prompts_from: eval_prompts.txt")
def _exclude_prompts_from(scores, params, ctx):
    """Drop pairs whose prompt matches one in a file (exact normalized, or n-gram overlap)."""
    memo_key = f"exclude:{params.path}:{params.overlap}"
    if memo_key not in ctx.memo:  # computed once over the whole pool, then indexed
        from .scores import contamination_scores, read_prompts
        from .text import normalize_column

        if ctx.pairs is None or ctx.scores is None:
            raise ConfigError("exclude_prompts_from needs the pairs table", field="filters")
        threshold = ctx.contamination_threshold if params.overlap is None else params.overlap
        hit = contamination_scores(normalize_column(ctx.pairs["prompt_text"]),
                                   ctx.scores["prompt_hash"].to_numpy(dtype=object),
                                   read_prompts(params.path), ctx.contamination_ngram, threshold)
        ctx.memo[memo_key] = pd.Series(hit["contaminated"], index=ctx.pairs.index)
    return ~ctx.memo[memo_key].reindex(scores.index).to_numpy(bool)


@register("drop_contaminated", parse=_flag,
          reason=lambda p: "prompt overlaps the contamination_file", example="drop_contaminated")
def _drop_contaminated(scores, params, ctx):
    """Drop pairs marked contaminated against the config's contamination_file."""
    return ~scores["contaminated"].to_numpy(bool)


def _parse_dedupe(value: Any, key: str) -> bool:
    """Returns ``near``: False = exact normalized duplicates, True = MinHash clusters too."""
    if value is None or value is True or value == {}:
        return False
    data = _mapping(value, key, {"near": False})
    if not isinstance(data["near"], bool):
        raise ConfigError(f"expected true or false, got {data['near']!r}", field=f"{key}.near")
    return data["near"]


@register("dedupe_prompts", parse=_parse_dedupe, stateful=True,
          reason=lambda near: "duplicate prompt" + (" (near-duplicate cluster)" if near else ""),
          example="dedupe_prompts: {near: true}")
def _dedupe_prompts(scores, params, ctx):
    """Keep the first pair (input order) per normalized prompt, or per near-duplicate cluster."""
    column = "prompt_cluster" if params else "prompt_hash"
    return ~scores[column].duplicated(keep="first").to_numpy()


# ---------------------------------------------------------------- sampling and balance

@dataclass(frozen=True)
class SampleParams:
    n: int | None = None
    fraction: float | None = None
    seed: int | None = None
    stratify: str | None = None


def _parse_sample(value: Any, key: str) -> SampleParams:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"n": value}
    data = _mapping(value, key, {"n": None, "fraction": None, "seed": None, "stratify": None})
    if (data["n"] is None) == (data["fraction"] is None):
        raise ConfigError("give exactly one of n or fraction", field=key)
    n = None if data["n"] is None else int(_number(data["n"], f"{key}.n", low=1, integer=True))  # 0 keeps nothing
    fraction = None
    if data["fraction"] is not None:
        fraction = _number(data["fraction"], f"{key}.fraction", low=0)
        if not 0 < fraction <= 1:
            raise ConfigError(f"must be in (0, 1], got {fraction}", field=f"{key}.fraction")
    stratify = data["stratify"]
    if stratify is not None:
        stratify = _score_name(stratify, f"{key}.stratify", numeric=False)
    return SampleParams(n, fraction, _seed(data["seed"], f"{key}.seed"), stratify)


@register("sample", parse=_parse_sample, stateful=True,
          reason=lambda p: "not sampled" + (f" (stratified by {p.stratify})" if p.stratify else ""),
          example="sample: {n: 5000, seed: 0, stratify: source}")
def _sample(scores, params, ctx):
    """Keep a seeded random sample of n pairs (or a fraction), optionally stratified."""
    total = len(scores)
    want = params.n if params.n is not None else int(round(params.fraction * total))
    if want >= total:
        return np.ones(total, dtype=bool)
    keys = random_keys(scores["pair_id"], _seed_of(params.seed, ctx))
    if params.stratify is None:
        strata = np.zeros(total, dtype=np.int64)
    else:
        strata = pd.factorize(scores[params.stratify].astype(str), sort=True)[0]
    # proportional allocation, rounded by largest remainder so the shares sum to `want`
    sizes = np.bincount(strata)
    exact = sizes * want / total
    quota = np.floor(exact).astype(np.int64)
    short = want - quota.sum()
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    return _take_smallest_keys(strata, keys, quota)


def _take_smallest_keys(groups: np.ndarray, keys: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Keep, in each group g, the quota[g] rows with the smallest random keys."""
    order = np.lexsort((keys, groups))
    ranked_groups = groups[order]
    starts = np.searchsorted(ranked_groups, np.arange(len(quota)))
    rank = np.arange(len(order)) - starts[ranked_groups]
    keep = np.zeros(len(groups), dtype=bool)
    keep[order] = rank < quota[ranked_groups]
    return keep


def _parse_balance(value: Any, key: str) -> int | None:
    """Returns the seed (None: the config's)."""
    if value is None or value is True or value == {}:
        return None
    return _seed(_mapping(value, key, {"seed": None})["seed"], f"{key}.seed")


@register("balance_length", parse=_parse_balance, stateful=True,
          reason=lambda p: "balance_length: surplus of one length direction",
          example="balance_length: true")
def _balance_length(scores, params, ctx):
    """Equal numbers of chosen-longer and chosen-shorter pairs (by tokens); ties in length kept."""
    diff = scores["length_diff"].to_numpy()
    groups = np.where(diff > 0, 0, np.where(diff < 0, 1, 2))
    sizes = np.bincount(groups, minlength=3)
    m = min(sizes[0], sizes[1])
    quota = np.array([m, m, sizes[2]])
    return _take_smallest_keys(groups, random_keys(scores["pair_id"], _seed_of(params, ctx)), quota)


@dataclass(frozen=True)
class QuantileParams:
    score: str
    lo: float
    hi: float
    seed: int | None = None


def _parse_quantile(value: Any, key: str) -> QuantileParams:
    data = _mapping(value, key, {"score": None, "lo": 0.0, "hi": 1.0, "seed": None})
    score = _score_name(data["score"], f"{key}.score")
    lo = _number(data["lo"], f"{key}.lo", low=0)
    hi = _number(data["hi"], f"{key}.hi", low=0)
    if hi > 1 or lo >= hi:
        raise ConfigError(f"need 0 <= lo < hi <= 1, got lo={lo:g}, hi={hi:g}", field=key)
    return QuantileParams(score, lo, hi, _seed(data["seed"], f"{key}.seed"))


@register("keep_quantile", parse=_parse_quantile, stateful=True,
          reason=lambda p: f"{p.score} outside quantiles [{p.lo:g}, {p.hi:g})",
          example="keep_quantile: {score: rating_gap, lo: 0.0, hi: 0.33}")
def _keep_quantile(scores, params, ctx):
    """Keep the pairs ranked in [lo, hi) by a score (ties broken at random; NaN dropped).

    Ranks, not values: rating gaps are discrete, so value quantiles would put most rows
    on one boundary. With seeded tie-breaking the kept share is exactly hi - lo.
    """
    values = scores[params.score].to_numpy(float)
    known = ~np.isnan(values)
    keys = random_keys(scores["pair_id"], _seed_of(params.seed, ctx))
    order = np.lexsort((keys[known], values[known]))
    position = np.empty(known.sum(), dtype=float)
    position[order] = np.arange(len(order)) / max(len(order), 1)
    keep = np.zeros(len(values), dtype=bool)
    keep[known] = (position >= params.lo) & ((position < params.hi) | (params.hi >= 1.0))
    return keep


@dataclass(frozen=True)
class RangeParams:
    score: str
    min: float
    max: float


def _parse_score_range(value: Any, key: str) -> RangeParams:
    data = _mapping(value, key, {"score": None, "min": float("-inf"), "max": float("inf")})
    score = _score_name(data["score"], f"{key}.score")
    lo = _number(data["min"], f"{key}.min", unbounded=True)
    hi = _number(data["max"], f"{key}.max", unbounded=True)
    if lo > hi:
        raise ConfigError(f"min {lo:g} is above max {hi:g}", field=key)
    return RangeParams(score, lo, hi)


@register("score_range", parse=_parse_score_range,
          reason=lambda p: f"{p.score} outside [{p.min:g}, {p.max:g}] or unknown",
          example="score_range: {score: prompt_tokens, min: 8, max: 512}")
def _score_range(scores, params, ctx):
    """Keep pairs with min <= score <= max for any numeric score (NaN dropped)."""
    values = scores[params.score].to_numpy(float)
    return (values >= params.min) & (values <= params.max)


@dataclass(frozen=True)
class FlaggedParams:
    score: str
    top: float              # < 1: a share of the audited pairs; >= 1: a count
    from_arm: str = "all"   # the ablation arm whose run was audited (pairlab ablate fills `attribution`)
    attribution: str | None = None  # an audit directory or its attribution.parquet


def _parse_flagged(value: Any, key: str) -> FlaggedParams:
    data = _mapping(value, key, {"score": "tracin_cosine", "top": 0.1, "from_arm": "all", "attribution": None})
    if not isinstance(data["score"], str) or not data["score"]:
        raise ConfigError(f"expected an attribution score name, got {data['score']!r}", field=f"{key}.score",
                          hint="see `pairlab audit` scores (ATTRIBUTION_SCORES), e.g. tracin_cosine")
    top = _number(data["top"], f"{key}.top", low=0)
    if top <= 0 or (top >= 1 and not float(top).is_integer()):
        raise ConfigError(f"expected a share in (0, 1) or a count >= 1, got {top:g}", field=f"{key}.top")
    for name in ("from_arm", "attribution"):
        if data[name] is not None and not isinstance(data[name], str):
            raise ConfigError(f"expected a string, got {data[name]!r}", field=f"{key}.{name}")
    return FlaggedParams(data["score"], top, data["from_arm"], data["attribution"])


def _flagged_reason(p: FlaggedParams) -> str:
    top = f"top {p.top:g} share" if p.top < 1 else f"top {int(p.top)}"
    return f"flagged by audit score {p.score}: harmful rank in the {top} (arm {p.from_arm})"


@register("drop_flagged", parse=_parse_flagged, reason=_flagged_reason,
          example="drop_flagged: {score: tracin_cosine, top: 0.1, from_arm: all}")
def _drop_flagged(scores, params, ctx):
    """Drop the pairs an audit flags: the lowest `top` (share or count) by an attribution score.

    Ranks are over the audited pairs (``harmful_rank`` order: most negative first); pairs the
    audit did not score are kept. In ``pairlab ablate`` the audit of ``from_arm``'s first-seed
    run fills ``attribution``; in ``pairlab curate`` give it (an audit directory).
    """
    if not params.attribution:
        raise ConfigError("drop_flagged needs an audit: use it in a `pairlab ablate` arm (from_arm), "
                          "or give attribution: AUDIT_DIR", field="drop_flagged.attribution")
    path = params.attribution
    if os.path.isdir(path):
        path = os.path.join(path, AuditDir.ATTRIBUTION)
    if not os.path.exists(path):
        raise ConfigError(f"no attribution table at {path}", field="drop_flagged.attribution",
                          hint="run `pairlab audit` first")
    table = pd.read_parquet(path)
    if params.score not in table:
        raise ConfigError(f"the audit has no score {params.score!r}", file=path, field="drop_flagged.score",
                          hint=f"scores there: {[c for c in table.columns if table[c].dtype.kind == 'f'][:12]}")
    values = table[["pair_id", params.score]].dropna()
    top = int(round(params.top * len(values))) if params.top < 1 else int(params.top)
    flagged = set(values.sort_values(params.score, kind="stable")["pair_id"].astype(str).head(top))
    return ~scores["pair_id"].astype(str).isin(flagged).to_numpy()


# ---------------------------------------------------------------- parsing a spec

def parse_filters(spec: Any, *, source: str | None = None) -> list[Filter]:
    """Validate a filter spec (list of names / one-key mappings) into :class:`Filter` s.

    Raises ``ConfigError`` naming the offending key (``filters[2].sample.n``) for an
    unknown filter or a bad parameter. Nothing is computed here. Filters given as
    ``false`` are left out.
    """
    if spec is None:
        return []
    if isinstance(spec, dict) and "filters" in spec:
        spec = spec["filters"]
    if isinstance(spec, (str, dict)):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise ConfigError(f"a filter spec is a list, got {type(spec).__name__}",
                          file=source, field="filters")
    out: list[Filter] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(spec):
        if isinstance(item, Filter):
            out.append(item)
            continue
        if isinstance(item, str):
            name, value = item, None
        elif isinstance(item, dict) and len(item) == 1:
            name, value = next(iter(item.items()))
        else:
            raise ConfigError("each filter is a name or a one-key mapping {name: parameters}",
                              file=source, field=f"filters[{i}]")
        key = f"filters[{i}].{name}"
        if name not in FILTERS:
            raise ConfigError(f"unknown filter; known: {sorted(FILTERS)}", file=source, field=key)
        try:
            params = FILTERS[name].parse(value, key)
        except ConfigError as err:
            if source and err.file is None:
                raise ConfigError(err.message, file=source, field=err.field, hint=err.hint) from None
            raise
        if params is False and FILTERS[name].parse is _flag:
            continue  # `drop_ties: false` switches a filter off
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}#{seen[name]}"
        out.append(Filter(name, params, label, key))
    return out
