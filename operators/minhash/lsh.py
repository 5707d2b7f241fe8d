"""LSH banding, candidate pairs and union-find clustering over MinHash signatures.

Everything here works on whole `(documents, num_perm)` signature matrices with vectorised NumPy,
so the clustering stage costs a few sorts per band instead of a Python dict entry per document
and band.
"""

from __future__ import annotations

import functools

import numpy as np

from operators.minhash.signature import fmix64

# Weights of the false positive and false negative probability in the band search. Every
# candidate pair is verified against the threshold afterwards, so a false positive costs only one
# signature comparison while a false negative is a missed duplicate. Hence misses weigh 9 to 1,
# where datasketch's MinHashLSH defaults to equal weights. With 128 permutations and threshold 0.8
# this picks 14 bands of 9 rows: a pair with similarity 0.85 becomes a candidate with probability
# 0.975 instead of 0.69 with equal weights.
FALSE_POSITIVE_WEIGHT = 0.1
FALSE_NEGATIVE_WEIGHT = 0.9

# Rows before a row in its LSH bucket that it is paired with, besides the bucket's first row.
BUCKET_WINDOW = 16

# Pairs are verified this many at a time, to bound the temporary `(pairs, num_perm)` matrix.
VERIFY_BLOCK_PAIRS = 8192

_INTEGRATION_POINTS = 2001


def _integrate(values: np.ndarray, grid: np.ndarray) -> float:
    return float(np.sum((values[1:] + values[:-1]) * np.diff(grid)) / 2.0)


@functools.lru_cache(maxsize=64)
def optimal_bands(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = FALSE_POSITIVE_WEIGHT,
    false_negative_weight: float = FALSE_NEGATIVE_WEIGHT,
) -> tuple[int, int]:
    """Return `(bands, rows)` with `bands * rows <= num_perm` minimising the weighted error.

    A pair with Jaccard similarity s shares at least one band with probability
    `P(s) = 1 - (1 - s**rows) ** bands`. The false positive probability is the integral of P over
    [0, threshold], the false negative probability that of 1 - P over [threshold, 1]. Both are
    integrated with the trapezoidal rule.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    below = np.linspace(0.0, threshold, _INTEGRATION_POINTS)
    above = np.linspace(threshold, 1.0, _INTEGRATION_POINTS)
    best_error = float("inf")
    best = (1, 1)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = _integrate(1.0 - (1.0 - below**rows) ** bands, below)
            false_negative = _integrate((1.0 - above**rows) ** bands, above)
            error = false_positive * false_positive_weight + false_negative * false_negative_weight
            if error < best_error:
                best_error = error
                best = (bands, rows)
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Hash each band of each signature to one `uint64` key: a `(documents, bands)` array."""
    documents = signatures.shape[0]
    keys = np.empty((documents, bands), dtype=np.uint64)
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
        key = np.zeros(documents, dtype=np.uint64)
        for column in range(rows):
            key = fmix64(key ^ block[:, column] ^ np.uint64(column + 1))
        keys[:, band] = key
    return keys


def candidate_pairs(keys: np.ndarray, num_stored: int) -> np.ndarray:
    """Return unique candidate pairs `(i, j)`, `i < j`, of rows that share a band key.

    Rows below `num_stored` are stored documents, already deduplicated among themselves, so pairs
    of two stored rows are left out. Within a bucket (rows with equal keys, in row order), every
    row is paired with the bucket's first row and with up to `BUCKET_WINDOW` rows before it. So a
    bucket of at most `BUCKET_WINDOW + 1` rows gives all its pairs, and a larger one (a template
    shared by thousands of documents) gives at most `(BUCKET_WINDOW + 1)` pairs per row.
    """
    documents = keys.shape[0]
    collected = []
    row_index = np.arange(documents, dtype=np.int64)
    for band in range(keys.shape[1]):
        order = np.lexsort((row_index, keys[:, band]))
        sorted_keys = keys[order, band]
        same_as_previous = np.zeros(documents, dtype=bool)
        same_as_previous[1:] = sorted_keys[1:] == sorted_keys[:-1]
        members = np.flatnonzero(same_as_previous)
        if not members.size:
            continue
        # Position (in sorted order) of the first row of each row's bucket.
        starts = np.where(same_as_previous, 0, np.arange(documents))
        np.maximum.accumulate(starts, out=starts)
        member_starts = starts[members]
        collected.append(np.stack((order[member_starts], order[members]), axis=1))
        for offset in range(1, BUCKET_WINDOW + 1):
            inside = members - offset > member_starts
            if not inside.any():
                break
            earlier = members[inside] - offset
            collected.append(np.stack((order[earlier], order[members[inside]]), axis=1))
    if not collected:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(collected)
    pairs.sort(axis=1)
    pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs[:, 1] >= num_stored)]
    return np.unique(pairs, axis=0)


def pair_similarities(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Estimate the Jaccard similarity of each pair: the share of equal signature values."""
    similarities = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), VERIFY_BLOCK_PAIRS):
        block = pairs[start : start + VERIFY_BLOCK_PAIRS]
        equal = signatures[block[:, 0]] == signatures[block[:, 1]]
        similarities[start : start + len(block)] = equal.mean(axis=1)
    return similarities


class UnionFind:
    """Disjoint sets over `0..size-1` whose roots are always their smallest members."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, first: int, second: int) -> None:
        first_root = self.find(first)
        second_root = self.find(second)
        if first_root < second_root:
            self.parent[second_root] = first_root
        elif second_root < first_root:
            self.parent[first_root] = second_root

    def clusters(self, items: set[int] | None = None) -> dict[int, list[int]]:
        """Group `items` (default: all) by root, each group in ascending order."""
        groups: dict[int, list[int]] = {}
        for item in sorted(items) if items is not None else range(len(self.parent)):
            groups.setdefault(self.find(item), []).append(item)
        return groups
