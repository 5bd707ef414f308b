"""Scores: one vectorised column each, computed once per pool (and cached by the pipeline).

:func:`compute_scores` returns a DataFrame with one row per pair (same order as the
input) and the columns of :data:`SCORES`. Each group of columns comes from a pure
function of the pairs table; the only side effect is loading the tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..preference import rating_gap
from ..schema import ASPECTS, PairDataError, usable_scores
from .config import CurateConfig
from .text import Words, minhash_signatures, multiset_jaccard, near_duplicate_clusters, \
    ngram_overlap, normalize_column, sha16
from .tokens import token_counter

#: Bump when a score's definition changes: old cache entries are then ignored.
SCORES_VERSION = "1"

#: Shingle size (words) for prompt near-duplicate detection.
NEAR_DUP_NGRAM = 3

#: Score column -> what it means. The README's score table is this dict.
SCORES: dict[str, str] = {
    "pair_id": "the pair's id (join key to the pairs table)",
    "source": "origin of the prompt, as in the pairs table",
    "rating_gap": "score_chosen - score_rejected (NaN when either is unknown)",
    "is_tie": "rating_gap == 0 (False when unknown)",
    "chosen_mean_aspect": "mean of chosen's known aspect ratings (NaN when none)",
    "rejected_mean_aspect": "mean of rejected's known aspect ratings (NaN when none)",
    "mean_aspect_gap": "chosen_mean_aspect - rejected_mean_aspect",
    **{f"gap_{a}": f"chosen - rejected {a} rating (NaN when unknown)" for a in ASPECTS},
    "prompt_tokens": "tokens of the prompt rendered with the chat template and generation prompt",
    "chosen_tokens": "tokens of chosen as the trainer appends it (content + end of turn)",
    "rejected_tokens": "tokens of rejected as the trainer appends it (content + end of turn)",
    "total_tokens": "prompt_tokens + max(chosen_tokens, rejected_tokens): the longer sequence",
    "length_diff": "chosen_tokens - rejected_tokens",
    "length_ratio": "chosen_tokens / rejected_tokens",
    "would_truncate": "total_tokens > max_length (the trainer would cut the pair)",
    "chosen_chars": "characters in chosen",
    "rejected_chars": "characters in rejected",
    "chosen_empty": "chosen is empty or whitespace only",
    "rejected_empty": "rejected is empty or whitespace only",
    "identical": "chosen and rejected are equal after normalization (case, punctuation, "
                 "whitespace, unicode)",
    "completion_similarity": "Jaccard of the normalized word multisets of chosen and "
                             "rejected; computed where it can reach near_identical_threshold "
                             "(word-count ratio at least that), NaN elsewhere",
    "near_identical": "identical, or completion_similarity >= near_identical_threshold",
    "prompt_hash": "hash of the normalized prompt text (the split and dedupe key)",
    "prompt_dup_count": "rows in the pool with the same normalized prompt",
    "prompt_dup_rank": "0 for a normalized prompt's first row in input order, then 1, 2, ...",
    "prompt_cluster": "near-duplicate cluster of the prompt (MinHash of word 3-grams at "
                      "near_dup_threshold): the prompt_hash of the cluster's first prompt",
    "prompt_near_dup": "the prompt's cluster holds another, non-identical prompt",
    "chosen_refusal": "chosen contains a refusal / AI-boilerplate marker",
    "rejected_refusal": "rejected contains a refusal / AI-boilerplate marker",
    "contaminated_exact": "the normalized prompt equals an evaluation prompt",
    "contamination_overlap": "share of the prompt's word n-grams found in the evaluation "
                             "prompts (NaN without contamination_file)",
    "contaminated": "contaminated_exact or contamination_overlap >= contamination_threshold",
}

#: Refusal / boilerplate markers, matched case-insensitively anywhere in a completion.
#: Phrases, not single words, so "I cannot stress enough" style text is not a refusal.
REFUSAL_MARKERS: tuple[str, ...] = (
    r"as an ai language model", r"as a language model", r"as an ai assistant",
    r"as an ai,", r"as an artificial intelligence", r"as a large language model",
    r"i(?:'m| am) (?:just |only )?an ai\b",
    r"i(?: am|'m) sorry,? but i (?:can(?:not|'t)|am (?:not able|unable)|won't)",
    r"i apologi[sz]e,? but i (?:can(?:not|'t)|am (?:not able|unable))",
    r"i(?: cannot| can't| am unable to|'m unable to) (?:assist|help) with (?:that|this)",
    r"i (?:do not|don't) have (?:personal (?:opinions|experiences|feelings|beliefs)"
    r"|the ability to browse|access to real-time)",
    r"my (?:knowledge|training data) (?:cutoff|cut-off)",
)
_REFUSAL_RE = "(?:" + "|".join(REFUSAL_MARKERS) + ")"

#: Score columns holding numbers (what keep_quantile / score_range may name).
NUMERIC_SCORES: tuple[str, ...] = (
    "rating_gap", "chosen_mean_aspect", "rejected_mean_aspect", "mean_aspect_gap",
    *(f"gap_{a}" for a in ASPECTS), "prompt_tokens", "chosen_tokens", "rejected_tokens",
    "total_tokens", "length_diff", "length_ratio", "chosen_chars", "rejected_chars",
    "completion_similarity", "prompt_dup_count", "prompt_dup_rank", "contamination_overlap")


# ---------------------------------------------------------------- score groups

def rating_scores(pairs: pd.DataFrame) -> dict[str, Any]:
    """Rating gap, tie, mean aspect rating per side and per-aspect gaps."""
    # Infinite / absurd scores (flagged nonfinite_score when read) count as unknown here.
    gap = rating_gap(pairs).to_numpy()
    chosen = usable_scores(pairs[[f"chosen_{a}" for a in ASPECTS]])
    rejected = usable_scores(pairs[[f"rejected_{a}" for a in ASPECTS]])
    with np.errstate(all="ignore"):
        chosen_mean = _nanmean_rows(chosen)
        rejected_mean = _nanmean_rows(rejected)
    cols: dict[str, Any] = {
        "rating_gap": gap,
        "is_tie": gap == 0,
        "chosen_mean_aspect": chosen_mean,
        "rejected_mean_aspect": rejected_mean,
        "mean_aspect_gap": chosen_mean - rejected_mean,
    }
    for i, a in enumerate(ASPECTS):
        cols[f"gap_{a}"] = chosen[:, i] - rejected[:, i]
    return cols


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    known = ~np.isnan(x)
    total = np.where(known, x, 0.0).sum(axis=1)
    count = known.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _per_distinct(texts: pd.Series, count) -> np.ndarray:
    """``count(texts)`` computed on the distinct texts only, broadcast back to every row.

    Pools repeat texts (a prompt with several pairs, a completion in several pairs), and a
    text's token count depends on the text alone, so each is tokenized once.
    """
    codes, uniques = pd.factorize(texts.fillna("").astype(str).to_numpy(dtype=object))
    return np.asarray(count(pd.Series(uniques, dtype=object)), dtype=np.int64)[codes]


def token_scores(pairs: pd.DataFrame, counter, max_length: int) -> dict[str, Any]:
    """Token counts with the target tokenizer + chat template, and what follows from them."""
    from .tokens import _single_user_mask

    n = len(pairs)
    # a lone user message renders from its content (= prompt_text) alone: count per distinct text
    single = _single_user_mask(pairs["prompt"]) if n else np.zeros(0, dtype=bool)
    prompt = np.zeros(n, dtype=np.int64)
    if single.any():
        prompt[single] = _per_distinct(pairs["prompt_text"][single], lambda texts: counter.prompt_tokens(
            pd.Series([[{"role": "user", "content": t}] for t in texts], dtype=object), texts))
    if (~single).any():
        prompt[~single] = counter.prompt_tokens(pairs["prompt"][~single], pairs["prompt_text"][~single])
    completions = _per_distinct(pd.concat([pairs["chosen"], pairs["rejected"]], ignore_index=True),
                                counter.completion_tokens)
    chosen, rejected = completions[:n], completions[n:]
    total = prompt + np.maximum(chosen, rejected)
    return {
        "prompt_tokens": prompt,
        "chosen_tokens": chosen,
        "rejected_tokens": rejected,
        "total_tokens": total,
        "length_diff": chosen - rejected,
        "length_ratio": chosen / np.maximum(rejected, 1),
        "would_truncate": total > max_length,
        "chosen_chars": pairs["chosen"].str.len().to_numpy(np.int64),
        "rejected_chars": pairs["rejected"].str.len().to_numpy(np.int64),
    }


def completion_scores(pairs: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Empty, identical and near-identical completions (on normalized text)."""
    chosen_norm = normalize_column(pairs["chosen"])
    rejected_norm = normalize_column(pairs["rejected"])
    identical = (chosen_norm == rejected_norm).to_numpy(bool)
    words_c = _word_counts(chosen_norm)
    words_r = _word_counts(rejected_norm)
    # Jaccard(a, b) <= min(|a|, |b|) / max(|a|, |b|): only rows whose word counts are that
    # close can reach the threshold, so only they are compared (exact, and much cheaper).
    bound = np.minimum(words_c, words_r) / np.maximum(np.maximum(words_c, words_r), 1)
    candidates = np.nonzero((bound >= threshold) & ~identical)[0]
    similarity = np.full(len(pairs), np.nan)
    if len(candidates):
        sub_c = Words(chosen_norm.iloc[candidates])
        sub_r = Words(rejected_norm.iloc[candidates])
        similarity[candidates] = multiset_jaccard(sub_c, sub_r, np.arange(len(candidates)))
    similarity[identical] = 1.0
    return {
        "chosen_empty": (pairs["chosen"].str.strip().str.len() == 0).to_numpy(bool),
        "rejected_empty": (pairs["rejected"].str.strip().str.len() == 0).to_numpy(bool),
        "identical": identical,
        "completion_similarity": similarity,
        "near_identical": identical | (np.nan_to_num(similarity, nan=0.0) >= threshold),
    }


def _word_counts(normalized: pd.Series) -> np.ndarray:
    # normalized text has single spaces between words; str.count is a C call per string
    # (pandas' Arrow count kernel measured 30x slower here)
    values = normalized.tolist()
    spaces = np.fromiter((t.count(" ") for t in values), dtype=np.int64, count=len(values))
    empty = np.fromiter((not t for t in values), dtype=bool, count=len(values))
    return np.where(empty, 0, spaces + 1)


def prompt_scores(prompt_norm: pd.Series, near_dup_threshold: float) -> dict[str, Any]:
    """Exact duplicates (normalized) and near-duplicate clusters (MinHash) of prompts."""
    prompt_hash = sha16(prompt_norm)
    first = np.nonzero(~prompt_hash.duplicated().to_numpy())[0]
    return prompt_duplicate_scores(prompt_hash, prompt_signatures(prompt_norm.iloc[first]), near_dup_threshold)


def prompt_signatures(prompt_norm: pd.Series) -> np.ndarray:
    """MinHash signatures (word 3-gram shingles, 64 bins) of normalized prompts, a row each."""
    rows, grams = Words(prompt_norm).ngrams(NEAR_DUP_NGRAM)
    return minhash_signatures(rows, grams, len(prompt_norm))


def prompt_duplicate_scores(prompt_hash: pd.Series, first_signatures: np.ndarray,
                            near_dup_threshold: float) -> dict[str, Any]:
    """The prompt scores from every row's prompt hash and the signatures of the distinct
    prompts in order of first occurrence: the global half of :func:`prompt_scores`, which
    a pool scored chunk by chunk (:mod:`pairlab.curate.stream`) runs once at the end."""
    prompt_hash = prompt_hash.reset_index(drop=True)
    dup_count = prompt_hash.groupby(prompt_hash).transform("size").to_numpy(np.int64)
    dup_rank = prompt_hash.groupby(prompt_hash).cumcount().to_numpy(np.int64)
    # near-duplicates among the distinct prompts, then broadcast to every row
    first = np.nonzero(dup_rank == 0)[0]
    cluster_first = near_duplicate_clusters(first_signatures, near_dup_threshold)
    unique_hash = prompt_hash.iloc[first].to_numpy(dtype=object)
    cluster_of = pd.Series(unique_hash[cluster_first], index=unique_hash)
    cluster = cluster_of.reindex(prompt_hash.to_numpy(dtype=object)).to_numpy(dtype=object)
    cluster_size = pd.Series(cluster_first).value_counts()
    near = pd.Series(cluster_size.reindex(cluster_first).to_numpy() > 1, index=unique_hash)
    return {
        "prompt_hash": prompt_hash.to_numpy(dtype=object),
        "prompt_dup_count": dup_count,
        "prompt_dup_rank": dup_rank,
        "prompt_cluster": cluster,
        "prompt_near_dup": near.reindex(prompt_hash.to_numpy(dtype=object)).to_numpy(bool),
    }


def refusal_scores(pairs: pd.DataFrame) -> dict[str, Any]:
    """Refusal / boilerplate markers per side (one regex over the column)."""
    def marked(texts: pd.Series) -> np.ndarray:
        # curly apostrophes are common in model output; the markers use straight ones
        return texts.str.replace("\u2019", "'", regex=False).str.contains(
            _REFUSAL_RE, case=False, regex=True).to_numpy(bool)

    return {"chosen_refusal": marked(pairs["chosen"]),
            "rejected_refusal": marked(pairs["rejected"])}


def contamination_scores(prompt_norm: pd.Series, prompt_hash: np.ndarray,
                         eval_prompts: pd.Series | None, n: int, threshold: float) -> dict[str, Any]:
    """Exact and word n-gram overlap of each prompt with a set of evaluation prompts."""
    if eval_prompts is None:
        return {"contaminated_exact": np.zeros(len(prompt_norm), bool),
                "contamination_overlap": np.full(len(prompt_norm), np.nan),
                "contaminated": np.zeros(len(prompt_norm), bool)}
    eval_norm = normalize_column(eval_prompts.reset_index(drop=True))
    exact = np.isin(prompt_hash, sha16(eval_norm).to_numpy(dtype=object))
    # overlap is a property of the distinct prompt: compute once per prompt_hash
    hashes = pd.Series(prompt_hash)
    first = np.nonzero(~hashes.duplicated().to_numpy())[0]
    overlap_unique = ngram_overlap(Words(prompt_norm.iloc[first]), Words(eval_norm), n)
    overlap = pd.Series(overlap_unique, index=hashes.iloc[first].to_numpy()) \
        .reindex(hashes.to_numpy()).to_numpy(float)
    return {"contaminated_exact": exact, "contamination_overlap": overlap,
            "contaminated": exact | (overlap >= threshold)}


# ---------------------------------------------------------------- all of them

def read_prompts(path: str | Path) -> pd.Series:
    """Evaluation prompts from a .txt file (one per line) or any pairs file pairlab reads."""
    path = Path(path)
    if not path.exists():
        raise PairDataError("file not found", file=str(path), field="contamination_file")
    from ..io.sources import compression_of, read_text_file

    if (path.with_suffix("") if compression_of(path) else path).suffix == ".txt":  # prompts.txt.gz too
        text = read_text_file(path, "contamination_file")
        return pd.Series([line for line in text.splitlines() if line.strip()], dtype="str")
    from ..io import read_pairs_with_rejects
    from ..io.rejects import describe_reject

    pairs, rejects = read_pairs_with_rejects(str(path))
    if len(rejects):  # a prompt the check cannot read is one it would silently miss
        first = describe_reject(rejects.iloc[0].to_dict())
        raise PairDataError(f"{len(rejects)} of {pairs.attrs.get('read_stats', {}).get('rows', '?')} rows cannot "
                            f"be read, so their prompts would go unchecked (first: {first})", file=str(path),
                            field="contamination_file",
                            hint="fix those rows, or give the prompts as a .txt file (one per line)")
    return pairs["prompt_text"].astype("str")


def compute_scores(pairs: pd.DataFrame, config: CurateConfig | None = None, *,
                   tokenizer=None, eval_prompts: pd.Series | None = None) -> pd.DataFrame:
    """Every score in :data:`SCORES` for every pair, in input order.

    Parameters
    ----------
    pairs : a pairs table (``pairlab.schema``).
    config : scoring settings; ``config.tokenizer`` is loaded unless ``tokenizer`` is given.
    tokenizer : an already-loaded HF fast tokenizer (tests pass one to load it once).
    eval_prompts : evaluation prompts for the contamination scores; read from
        ``config.contamination_file`` when not given.

    Returns
    -------
    A DataFrame indexed 0..n-1 with one column per score.
    """
    cfg = (config or CurateConfig()).validate()
    pairs = pairs.reset_index(drop=True)
    if eval_prompts is None and cfg.contamination_file:
        eval_prompts = read_prompts(cfg.contamination_file)
    counter = token_counter(cfg.tokenizer, tokenizer)
    prompt_norm = normalize_column(pairs["prompt_text"])
    cols: dict[str, Any] = {"pair_id": pairs["pair_id"].astype("str").to_numpy(dtype=object),
                            "source": pairs["source"].astype("str").to_numpy(dtype=object)}
    cols.update(rating_scores(pairs))
    cols.update(token_scores(pairs, counter, cfg.max_length))
    cols.update(completion_scores(pairs, cfg.near_identical_threshold))
    cols.update(prompt_scores(prompt_norm, cfg.near_dup_threshold))
    cols.update(refusal_scores(pairs))
    cols.update(contamination_scores(prompt_norm, cols["prompt_hash"], eval_prompts,
                                     cfg.contamination_ngram, cfg.contamination_threshold))
    scores = pd.DataFrame(cols)
    for name in ("pair_id", "source", "prompt_hash", "prompt_cluster"):
        scores[name] = scores[name].astype("str")
    return scores[list(SCORES)]
