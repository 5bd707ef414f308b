"""Curate scoring speed on 60k distinct realistic-length pairs, all measured in one run.

1. floor: batch-tokenizing the 180k texts (prompt, chosen, rejected) alone, with the
   same tokenizer call the scorer uses;
2. full scoring (:func:`pairlab.curate.compute_scores`, cache off);
3. a naive row-wise ``datasets.map`` computing the same scores per pair (chat template
   applied three times per pair, as TRL does, Python text normalization and regexes);
4. re-curating the cached pool with another filter spec, outputs written;
5. peak RSS of the process.

``PAIRLAB_BENCH_QUICK=1`` shrinks n to 3,000 for a quick check; ``PAIRLAB_BENCH_CURATE_N``
sets n (on a shared 2-core CPU the full 60k run takes 45+ minutes, most of it the row-wise
baseline). ``bench_curate_scale`` measures the same floor ratio at 60k on the streamed path.
"""
from __future__ import annotations

import os
import re
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

N_FULL, N_QUICK = 60_000, 3_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pool(n: int):
    from pairlab.simulate import simulate_pairs

    train, _ = simulate_pairs(n=n, length="realistic", eval_fraction=0.0, seed=0)
    train = train.drop_duplicates("pair_id").reset_index(drop=True)
    return train


def _rowwise_baseline(pool, tokenizer, max_length: int) -> float:
    """The naive way: one Python call per pair through datasets.map."""
    import datasets

    from pairlab.curate.scores import _REFUSAL_RE
    from pairlab.schema import normalize_text

    refusal = re.compile(_REFUSAL_RE, re.IGNORECASE)
    ds = datasets.Dataset.from_dict({
        "prompt": [list(m) for m in pool["prompt"]], "chosen": pool["chosen"].tolist(),
        "rejected": pool["rejected"].tolist(), "score_chosen": pool["score_chosen"].tolist(),
        "score_rejected": pool["score_rejected"].tolist()})

    def score(row):
        msgs = row["prompt"]
        n_prompt = len(tokenizer.apply_chat_template(msgs, add_generation_prompt=True,
                                                     tokenize=True, return_dict=False))
        n_c = len(tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": row["chosen"]}],
                                                tokenize=True, return_dict=False)) - n_prompt
        n_r = len(tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": row["rejected"]}],
                                                tokenize=True, return_dict=False)) - n_prompt
        norm_c, norm_r = normalize_text(row["chosen"]), normalize_text(row["rejected"])
        wc, wr = norm_c.split(), norm_r.split()
        inter = sum(min(wc.count(w), wr.count(w)) for w in set(wc) & set(wr))
        gap = row["score_chosen"] - row["score_rejected"]
        return {"rating_gap": gap, "is_tie": gap == 0, "prompt_tokens": n_prompt,
                "chosen_tokens": n_c, "rejected_tokens": n_r,
                "would_truncate": n_prompt + max(n_c, n_r) > max_length,
                "length_ratio": n_c / max(n_r, 1), "identical": norm_c == norm_r,
                "completion_similarity": inter / max(len(wc) + len(wr) - inter, 1),
                "chosen_refusal": bool(refusal.search(row["chosen"])),
                "rejected_refusal": bool(refusal.search(row["rejected"])),
                "prompt_norm": normalize_text(msgs[-1]["content"])}

    t0 = time.perf_counter()
    ds.map(score, load_from_cache_file=False, keep_in_memory=True)
    return time.perf_counter() - t0


def main(out_dir: Path) -> dict:
    quick = os.environ.get("PAIRLAB_BENCH_QUICK") == "1"
    n = N_QUICK if quick else int(os.environ.get("PAIRLAB_BENCH_CURATE_N", N_FULL))
    with tempfile.TemporaryDirectory(prefix="pairlab-bench-curate-") as tmp:
        os.environ["PAIRLAB_CACHE"] = str(Path(tmp) / "cache")
        from pairlab.curate import CurateConfig, compute_scores, curate
        from pairlab.curate.tokens import TokenCounter, load_tokenizer

        t0 = time.perf_counter()
        pool = _pool(n)
        simulate_s = time.perf_counter() - t0
        tokenizer = load_tokenizer("smollm2-135m-instruct")
        counter = TokenCounter(tokenizer)
        texts = pool["prompt_text"].tolist() + pool["chosen"].tolist() + pool["rejected"].tolist()
        rss_before = _rss_mb()

        # 1. the floor: tokenizing the texts alone
        t0 = time.perf_counter()
        lengths = counter.lengths(texts)
        floor_s = time.perf_counter() - t0

        # 2. full scoring (also fills the score cache for step 4)
        cfg = CurateConfig()
        t0 = time.perf_counter()
        first = curate(pool, ["drop_ties", {"min_rating_gap": 1}], cfg, tokenizer=tokenizer,
                       out_dir=Path(tmp) / "arm_a")
        first_total_s = time.perf_counter() - t0
        scoring_s = first.timings["scores_s"]
        rss_after_scoring = _rss_mb()
        # scoring alone once more, outside curate (no cache, no hashing)
        t0 = time.perf_counter()
        compute_scores(pool, CurateConfig(cache=False), tokenizer=tokenizer)
        scoring_direct_s = time.perf_counter() - t0

        # 4. re-curate the same pool with another filter spec (scores from cache)
        spec_b = [{"length_ratio": [0.5, 2.0]}, "dedupe_prompts", "balance_length",
                  {"keep_quantile": {"score": "rating_gap", "lo": 0.0, "hi": 0.33}},
                  {"sample": {"n": min(5000, n // 4), "stratify": "source"}}]
        t0 = time.perf_counter()
        second = curate(pool, spec_b, cfg, tokenizer=tokenizer, out_dir=Path(tmp) / "arm_b")
        recurate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        curate(pool, spec_b, CurateConfig(report=False), tokenizer=tokenizer)
        recurate_no_write_s = time.perf_counter() - t0
        assert second.manifest["score_cache"]["hit"]

        # 3. the naive row-wise baseline
        baseline_s = _rowwise_baseline(pool, tokenizer, cfg.max_length)
        os.environ.pop("PAIRLAB_CACHE", None)

    return {
        "n_pairs": n,
        "quick": quick,
        "texts": len(texts),
        "mean_chars_per_text": round(float(np.mean([len(t) for t in texts])), 1),
        "mean_tokens_per_text": round(float(lengths.mean()), 1),
        "simulate_s": round(simulate_s, 2),
        "tokenize_floor_s": round(floor_s, 2),
        "scoring_s": round(scoring_s, 2),
        "scoring_direct_s": round(scoring_direct_s, 2),
        "first_curate_total_s": round(first_total_s, 2),
        "rowwise_baseline_s": round(baseline_s, 2),
        "recurate_cached_s": round(recurate_s, 3),
        "recurate_cached_no_write_s": round(recurate_no_write_s, 3),
        "recurate_timings": {k: round(v, 3) for k, v in second.timings.items()},
        "ratio_scoring_vs_floor": round(scoring_s / floor_s, 3),
        "ratio_scoring_direct_vs_floor": round(scoring_direct_s / floor_s, 3),
        "speedup_vs_rowwise": round(baseline_s / scoring_s, 2),
        "pairs_per_s_scoring": round(n / scoring_s, 1),
        "pairs_per_s_rowwise": round(n / baseline_s, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "rss_before_scoring_mb": round(rss_before, 1),
        "rss_after_scoring_mb": round(rss_after_scoring, 1),
        "goals": {
            "scoring_vs_tokenize_floor": {"measured": round(scoring_s / floor_s, 3), "goal": "<= 1.25x",
                                          "met": scoring_s <= 1.25 * floor_s},
            "scoring_vs_rowwise": {"measured": round(baseline_s / scoring_s, 2), "goal": ">= 2.5x faster",
                                   "met": baseline_s / scoring_s >= 2.5},
            "recurate_cached_s": {"measured": round(recurate_s, 3), "goal": "< 2 s", "met": recurate_s < 2.0},
        },
    }
