"""MinHash signatures of document text, computed by a pure function.

`compute_signature(text, params)` depends only on its arguments, so executors may run it anywhere
(a worker process, a Ray task) and still feed identical signatures to the clustering stage.

Shingles are word n-grams for scripts that separate words with spaces. For CJK and other scripts
written without spaces they are character n-grams. `shingle_mode` picks one per document.

The text is read in blocks of `TEXT_BLOCK_CHARS` characters and the shingle hashes in blocks of
`HASH_BLOCK_SHINGLES`, so the extra memory per document is bounded by the block sizes, not by the
document's length.

Hashing: each word token is hashed with xxh3-64, and each character token is its code point mixed
with the MurmurHash3 64-bit finalizer. An n-gram's key is the top 32 bits of the finalizer applied
to a position-weighted sum of its token hashes. Permutation k maps a key x to
`a_k * x + b_k mod 2**32` with odd `a_k`, a bijection, so it adds no collisions. A signature is the
per-permutation minimum, a `uint32` array of length `num_perm`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import xxhash

# Signature value of a permutation that saw no shingle: every value of an empty text.
EMPTY_VALUE = np.uint32(0xFFFFFFFF)
SIGNATURE_DTYPE = np.uint32

# Bumped when the hashing below changes, so that stored signatures are recomputed.
HASH_SCHEME = "xxh3-ngram-fmix-affine32/1"

TEXT_BLOCK_CHARS = 1 << 16
HASH_BLOCK_SHINGLES = 2048

# A document is written in an unspaced script when at least this share of its characters (see
# `shingle_mode`) belongs to the ranges in `UNSPACED_RANGES`.
UNSPACED_SHARE = 0.3

# Scripts written without spaces between words (half-open code point ranges). Korean is absent on
# purpose: Hangul text separates words with spaces.
UNSPACED_RANGES = (
    (0x0E00, 0x0F00),  # Thai, Lao
    (0x0F00, 0x1000),  # Tibetan
    (0x1000, 0x10A0),  # Myanmar
    (0x1780, 0x1800),  # Khmer
    (0x2E80, 0x2FE0),  # CJK radicals, Kangxi radicals
    (0x3000, 0x3100),  # CJK symbols, Hiragana, Katakana
    (0x3190, 0x3200),  # Kanbun, CJK strokes, Katakana extensions
    (0x3400, 0x4DC0),  # CJK Unified Ideographs Extension A
    (0x4E00, 0xA000),  # CJK Unified Ideographs
    (0xF900, 0xFB00),  # CJK Compatibility Ideographs
    (0xFF66, 0xFFA0),  # Halfwidth Katakana
    (0x20000, 0x32000),  # CJK Unified Ideographs Extensions B to H
)
_UNSPACED_BOUNDS = np.array([bound for pair in UNSPACED_RANGES for bound in pair], dtype=np.uint32)

_ASCII_ALNUM = np.array([chr(code).isalnum() for code in range(128)], dtype=bool)

_WORD_RE = re.compile(r"\w+")
_NON_WORD_RE = re.compile(r"[\W_]+")
_NON_WORD_CHAR_RE = re.compile(r"\W")

_FMIX_C1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT_33 = np.uint64(33)
_SHIFT_32 = np.uint64(32)
# Distinct seeds keep word and character shingles apart even when their tokens hash alike.
_MODE_SEEDS = {"word": 0x243F6A8885A308D3, "char": 0x13198A2E03707344}

ShingleMode = Literal["word", "char"]


@dataclass(frozen=True)
class MinHashParams:
    """Parameters that determine a signature: equal parameters give equal signatures."""

    num_perm: int = 128
    word_ngram: int = 3
    char_ngram: int = 4
    seed: int = 1

    def __post_init__(self) -> None:
        if self.num_perm < 1:
            raise ValueError(f"num_perm must be at least 1, got {self.num_perm}")
        if self.word_ngram < 1 or self.char_ngram < 1:
            raise ValueError(
                f"n-gram sizes must be at least 1, got word_ngram={self.word_ngram}, "
                f"char_ngram={self.char_ngram}"
            )

    def to_json(self) -> str:
        """Serialize the parameters and the hash scheme, to detect stale stored signatures."""
        return json.dumps({**asdict(self), "hash_scheme": HASH_SCHEME}, sort_keys=True)


def fmix64(values: np.ndarray) -> np.ndarray:
    """Apply the MurmurHash3 64-bit finalizer to a `uint64` array (modified in place)."""
    values ^= values >> _SHIFT_33
    values *= _FMIX_C1
    values ^= values >> _SHIFT_33
    values *= _FMIX_C2
    values ^= values >> _SHIFT_33
    return values


@functools.lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


@functools.lru_cache(maxsize=64)
def _position_weights(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, n])
    return rng.integers(0, 1 << 63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def shingle_mode(text: str) -> ShingleMode:
    """Return "char" when the text is mostly in an unspaced script (CJK, Thai, ...), else "word".

    The share counts non-ASCII characters and ASCII letters and digits, so whitespace and ASCII
    punctuation do not dilute it. Non-ASCII punctuation counts too, which keeps this a cheap
    vectorised count instead of a regular-expression pass over the text.
    """
    unspaced = 0
    word_chars = 0
    for start in range(0, len(text), TEXT_BLOCK_CHARS):
        block = text[start : start + TEXT_BLOCK_CHARS]
        code_points = np.frombuffer(block.encode("utf-32-le"), dtype="<u4")
        ascii_points = code_points[code_points < 128]
        word_chars += code_points.size - ascii_points.size
        word_chars += int(np.count_nonzero(_ASCII_ALNUM[ascii_points]))
        # An odd insertion index means the code point lies inside one of the half-open ranges.
        slots = np.searchsorted(_UNSPACED_BOUNDS, code_points, side="right")
        unspaced += int(np.count_nonzero(slots & 1))
    if word_chars and unspaced >= UNSPACED_SHARE * word_chars:
        return "char"
    return "word"


def _word_token_hashes(text: str) -> Iterator[np.ndarray]:
    """Yield xxh3-64 hashes of the lower-cased `\\w+` tokens, one array per text block."""
    start = 0
    while start < len(text):
        end = min(start + TEXT_BLOCK_CHARS, len(text))
        if end < len(text):
            # Extend the block to the next non-word character so no token is cut in two. A token
            # longer than 1024 characters may still be cut, and then counts as two tokens.
            match = _NON_WORD_CHAR_RE.search(text, end, end + 1024)
            end = match.start() if match else min(end + 1024, len(text))
        tokens = _WORD_RE.findall(text[start:end].lower())
        if tokens:
            hashes = map(xxhash.xxh3_64_intdigest, map(str.encode, tokens))
            yield np.fromiter(hashes, dtype=np.uint64, count=len(tokens))
        start = end


def _char_token_hashes(text: str) -> Iterator[np.ndarray]:
    """Yield mixed code points of the lower-cased word characters, one array per text block."""
    for start in range(0, len(text), TEXT_BLOCK_CHARS):
        block = _NON_WORD_RE.sub("", text[start : start + TEXT_BLOCK_CHARS].lower())
        if block:
            code_points = np.frombuffer(block.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
            yield fmix64(code_points)


def iter_shingle_keys(text: str, params: MinHashParams, mode: ShingleMode) -> Iterator[np.ndarray]:
    """Yield the 32-bit keys of the text's shingles in blocks of at most `HASH_BLOCK_SHINGLES`.

    A text with fewer tokens than the n-gram size yields one shingle of all its tokens, and a text
    without word characters yields nothing.
    """
    if mode == "word":
        n = params.word_ngram
        blocks = _word_token_hashes(text)
    else:
        n = params.char_ngram
        blocks = _char_token_hashes(text)
    weights = _position_weights(n, _MODE_SEEDS[mode])

    carry = np.empty(0, dtype=np.uint64)
    emitted = False
    for block in blocks:
        tokens = np.concatenate((carry, block)) if carry.size else block
        count = tokens.size - n + 1
        if count <= 0:
            carry = tokens
            continue
        for offset in range(0, count, HASH_BLOCK_SHINGLES):
            stop = min(offset + HASH_BLOCK_SHINGLES, count)
            combined = tokens[offset:stop] * weights[0]
            for position in range(1, n):
                combined += tokens[offset + position : stop + position] * weights[position]
            yield (fmix64(combined) >> _SHIFT_32).astype(np.uint32)
        emitted = True
        carry = tokens[count:].copy()

    if not emitted and carry.size:
        # Fewer tokens than the n-gram size: the whole text is one shingle.
        combined = np.array(
            [np.sum(carry * weights[: carry.size], dtype=np.uint64)], dtype=np.uint64
        )
        yield (fmix64(combined) >> _SHIFT_32).astype(np.uint32)


def compute_signature(text: str, params: MinHashParams) -> np.ndarray:
    """Compute the MinHash signature of `text`: a `uint32` array of `params.num_perm` values.

    A text without word characters gets a signature of `EMPTY_VALUE` only (see `is_empty`).
    """
    a, b = _permutations(params.num_perm, params.seed)
    signature = np.full(params.num_perm, EMPTY_VALUE, dtype=SIGNATURE_DTYPE)
    for keys in iter_shingle_keys(text, params, shingle_mode(text)):
        permuted = np.multiply.outer(keys, a)
        permuted += b
        np.minimum(signature, permuted.min(axis=0), out=signature)
    return signature


def is_empty(signature: np.ndarray) -> bool:
    """Return True for the signature of a text that has no shingles."""
    return bool(np.all(signature == EMPTY_VALUE))


def estimate_jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Estimate the Jaccard similarity of two shingle sets: the share of equal signature values."""
    if first.shape != second.shape:
        raise ValueError(f"signatures differ in length: {first.shape} vs {second.shape}")
    return float(np.count_nonzero(first == second)) / first.size
