"""Vectorised text machinery for the scores: normalization, word hashes, similarity.

Everything works on whole columns: normalized texts are split into words with Arrow
(one C call for the column), words become 64-bit hashes, and n-grams, multiset
Jaccard and MinHash signatures are numpy operations over the flat word arrays with
a row index beside them. No Python loop runs per row, except the per-string C calls
of :func:`normalize_column` (measured faster than Arrow's regex kernels here).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import normalize_series

# ---------------------------------------------------------------- normalization

# Python's ``[^\w\s]`` restricted to ASCII: every ASCII char that is not a letter, digit,
# underscore or whitespace (whitespace per str.isspace, which re's \s also uses).
_ASCII_PUNCT = str.maketrans({i: " " for i in range(128)
                              if not (chr(i).isalnum() or chr(i) == "_" or chr(i).isspace())})


def normalize_column(texts: pd.Series) -> pd.Series:
    """Exactly :func:`pairlab.schema.normalize_series`, about 3x faster on ASCII text.

    For ASCII strings NFKC is the identity and lower/punctuation/whitespace are simple
    byte maps, so ``" ".join(s.lower().translate(punct).split())`` gives the same result;
    other strings go through the schema's own function. A test checks the equality.
    """
    values = texts.fillna("").astype(str).tolist()
    ascii_mask = np.fromiter((s.isascii() for s in values), dtype=bool, count=len(values))
    out = np.empty(len(values), dtype=object)
    out[ascii_mask] = [" ".join(s.lower().translate(_ASCII_PUNCT).split())
                       for s, a in zip(values, ascii_mask) if a]
    if (~ascii_mask).any():
        out[~ascii_mask] = normalize_series(texts[~ascii_mask]).to_numpy(dtype=object)
    return pd.Series(out, index=texts.index, dtype="str")


def sha16(texts: pd.Series) -> pd.Series:
    """First 16 hex chars of sha256 per text: the same key as ``schema.prompt_hash_series``."""
    return pd.Series([hashlib.sha256(t.encode("utf-8")).hexdigest()[:16] for t in texts.tolist()],
                     index=texts.index, dtype="str")


# ---------------------------------------------------------------- words as hashes

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MUL = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads bits so any slice of the hash is uniform."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


class Words:
    """The words of normalized texts as flat arrays: ``hashes[i]`` belongs to row ``rows[i]``.

    ``starts``/``counts`` give each row's slice. Word hashes are stable across calls
    (siphash of the word), so two ``Words`` built separately can be compared.
    """

    def __init__(self, normalized: pd.Series):
        arr = pa.array(normalized.to_numpy(dtype=object), type=pa.large_string())
        lists = pc.split_pattern(arr, " ")
        flat = pc.list_flatten(lists)
        self.rows = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
        self.counts = pc.list_value_length(lists).to_numpy().astype(np.int64)
        # "".split(" ") is [""]: an empty text has no words
        empty = pc.equal(arr, "").to_numpy(zero_copy_only=False)
        encoded = pc.dictionary_encode(flat)
        vocab_hash = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False).astype(object))
        hashes = vocab_hash[encoded.indices.to_numpy()]
        keep = ~empty[self.rows]
        self.rows, self.hashes = self.rows[keep], hashes[keep]
        self.counts = np.where(empty, 0, self.counts)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.n = len(normalized)

    def ngrams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, hash) of every word n-gram; a row with fewer than n words gives one gram of all."""
        pos = np.arange(len(self.hashes), dtype=np.int64) - self.starts[self.rows]
        length = self.counts[self.rows]
        first = (pos + n <= length) | ((pos == 0) & (length < n))
        idx = np.nonzero(first)[0]
        acc = np.zeros(len(idx), dtype=np.uint64)
        end = self.starts[self.rows[idx]] + length[idx]
        with np.errstate(over="ignore"):
            for j in range(n):
                k = idx + j
                inside = k < end
                word = np.where(inside, self.hashes[np.minimum(k, len(self.hashes) - 1)], 0)
                acc = (acc * _MUL) + word.astype(np.uint64) + np.uint64(j + 1) * inside
        return self.rows[idx], _mix(acc)


# ---------------------------------------------------------------- multiset Jaccard

def multiset_jaccard(a: Words, b: Words, rows: np.ndarray) -> np.ndarray:
    """Jaccard of the word multisets of a[i] and b[i] for the given rows: sum(min)/sum(max).

    sum(max) = |a| + |b| - sum(min), so only the intersection needs counting: unique
    (row, word) keys per side, matched with one sorted intersection.
    """
    out = np.full(a.n, np.nan)
    if len(rows) == 0:
        return out
    pick = np.zeros(a.n, dtype=bool)
    pick[rows] = True

    def keyed(w: Words):
        sel = pick[w.rows]
        # row in the high bits, 40 bits of the word hash below: collisions need a
        # 1-in-10^12 accident inside one pair
        keys = (w.rows[sel].astype(np.uint64) << np.uint64(40)) | (w.hashes[sel] >> np.uint64(24))
        return np.unique(keys, return_counts=True)

    ka, ca = keyed(a)
    kb, cb = keyed(b)
    common, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    inter = np.bincount((common >> np.uint64(40)).astype(np.int64),
                        weights=np.minimum(ca[ia], cb[ib]), minlength=a.n)
    total = a.counts + b.counts
    union = total - inter
    sim = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # two empty texts: identical
    out[rows] = sim[rows]
    return out


# ---------------------------------------------------------------- MinHash near-duplicates

def minhash_signatures(rows: np.ndarray, grams: np.ndarray, n_rows: int, k: int = 64) -> np.ndarray:
    """One-permutation MinHash: gram hashes fall into k bins; each bin keeps its minimum.

    One hash per gram (not k), so the cost is one sort of the grams. Empty bins (short
    texts) borrow the next non-empty bin's value ("rotation densification"), which keeps
    the estimate unbiased: P[sig_a[j] == sig_b[j]] = Jaccard(a, b).
    """
    bits = int(np.log2(k))
    bins = (grams >> np.uint64(64 - bits)).astype(np.int64)
    vals = grams & np.uint64((1 << (64 - bits)) - 1)
    sig = np.full(n_rows * k, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(sig, rows * k + bins, vals)
    sig = sig.reshape(n_rows, k)
    empty = sig == np.iinfo(np.uint64).max
    if empty.any():
        # densify: for each empty bin take the next non-empty bin to the right (circular)
        filled = pd.DataFrame(np.where(empty, np.nan, sig.astype(np.float64)))
        doubled = pd.concat([filled, filled], axis=1, ignore_index=True).bfill(axis=1)
        dense = doubled.iloc[:, :k].to_numpy()
        sig = np.where(empty, np.nan_to_num(dense, nan=0.0).astype(np.uint64), sig)
    return sig


#: Candidate pairs compared at once in :func:`near_duplicate_clusters` (~64 MB of signatures).
_AGREE_BLOCK = 1 << 16


def near_duplicate_clusters(sig: np.ndarray, threshold: float, bands: int = 16) -> np.ndarray:
    """Cluster id per row (the index of the cluster's first row) from MinHash signatures.

    LSH banding proposes candidate pairs (rows that agree on a whole band); a candidate
    is linked when the signatures agree on at least ``threshold`` of the bins (the
    estimated Jaccard). Clusters are the connected components of the links.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, k = sig.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    r = k // bands
    src, dst = [], []
    for band in range(bands):
        block = np.ascontiguousarray(sig[:, band * r:(band + 1) * r])
        key = _row_hash(block)
        order = np.argsort(key, kind="stable")
        same = key[order][1:] == key[order][:-1]
        # link each row to the previous row of its bucket (a chain connects the bucket)
        cand_src, cand_dst = order[1:][same], order[:-1][same]
        # Keep the candidates that agree enough, a block at a time: comparing all of them
        # at once materialises two (candidates x k) copies of the signatures, ~1 kB per
        # candidate, up to n per band (0.4 GB at 24k templated prompts, ~10 GB at 600k).
        ok = np.zeros(len(cand_src), dtype=bool)
        for lo in range(0, len(cand_src), _AGREE_BLOCK):
            s_, d_ = cand_src[lo:lo + _AGREE_BLOCK], cand_dst[lo:lo + _AGREE_BLOCK]
            ok[lo:lo + _AGREE_BLOCK] = (sig[s_] == sig[d_]).mean(axis=1) >= threshold
        src.append(cand_src[ok])
        dst.append(cand_dst[ok])
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # name each cluster by its first row, so ids are stable and meaningful
    first = pd.Series(np.arange(n)).groupby(labels).transform("min").to_numpy()
    return first.astype(np.int64)


def _row_hash(block: np.ndarray) -> np.ndarray:
    acc = np.zeros(block.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(block.shape[1]):
            acc = _mix(acc * _MUL + block[:, j])
    return acc


# ---------------------------------------------------------------- n-gram overlap

def ngram_overlap(pool: Words, reference: Words, n: int) -> np.ndarray:
    """Per pool row: the share of its word n-grams that occur anywhere in ``reference``."""
    rows, grams = pool.ngrams(n)
    _, ref_grams = reference.ngrams(n)
    hit = np.isin(grams, ref_grams)
    total = np.bincount(rows, minlength=pool.n)
    hits = np.bincount(rows, weights=hit, minlength=pool.n)
    return np.where(total > 0, hits / np.maximum(total, 1), 0.0)

