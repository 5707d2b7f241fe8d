"""`dedupe_semantic`: drop or mark chunks whose embedding nearly equals that of a kept chunk.

Runs after `embed`. Chunks are visited in doc-id order, then in chunk order. A chunk within
`max_distance` cosine distance (1 - cosine similarity) of a kept chunk is a duplicate:
`action: drop` removes it from `doc.chunks`, `action: mark` sets
`chunk.metadata["semantic_duplicate_of"]` to the kept chunk's id. Every other chunk with a vector
is kept, and later chunks are compared with it. A kept chunk of this run counts the chunks it
stands for in `chunk.metadata["duplicates"]`, as far as they come before it is stored: matches
with an indexed chunk, or with a chunk of an earlier work group of the run (new documents come
before re-chunked and re-embedded ones), are counted only in the operator's stats.

Two indexes are searched:

- chunks already indexed, through `context.chunks_table` (LanceDB, cosine distance). Rows of
  documents in `context.removed_doc_ids`, and rows of the document being processed, are skipped.
  An indexed match wins over a match in this run, because the indexed chunk is already stored.
- chunks kept earlier in this run, through `SimHashIndex`: random-hyperplane LSH with banding,
  whose candidates are verified with the exact cosine similarity. Every decision depends only on
  the chunks before it, so the result does not depend on how the executor batches documents.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from operators.base import GlobalOperator, OperatorArgs, register
from operators.records import Chunk, Document

logger = logging.getLogger(__name__)

# Probability that a pair exactly at `max_distance` shares at least one band of the in-run index.
# Closer pairs share one with higher probability.
TARGET_RECALL = 0.99
MAX_BANDS = 32
MAX_ROWS = 24
# Rows fetched per chunk from the indexed table. Wider searches run only when no acceptable row
# was found and a row of a skipped document was within `max_distance`.
TABLE_SEARCH_LIMIT = 4
# Row limits of the wider searches that follow, before a search with a SQL filter.
WIDE_SEARCH_LIMITS = (64, 1024)
HYPERPLANE_SEED = 20240531


def choose_bands(max_distance: float) -> tuple[int, int]:
    """Return `(bands, rows)` of hyperplane bits for the in-run index.

    A random hyperplane separates two vectors at angle theta with probability theta / pi, so a
    pair at `max_distance` agrees on a band of r bits with probability p**r, p = 1 - theta / pi.
    The choice is the largest r (fewest false candidates) for which at most `MAX_BANDS` bands
    reach `TARGET_RECALL`.
    """
    angle = math.acos(min(max(1.0 - max_distance, -1.0), 1.0))
    agree = 1.0 - angle / math.pi
    for rows in range(MAX_ROWS, 0, -1):
        band_agree = agree**rows
        if band_agree >= 1.0:
            return 1, rows
        if band_agree <= 0.0:
            continue
        bands = math.ceil(math.log(1.0 - TARGET_RECALL) / math.log(1.0 - band_agree))
        if bands <= MAX_BANDS:
            return bands, rows
    # NOTE: for very large max_distance even 1-bit bands miss TARGET_RECALL within MAX_BANDS.
    return MAX_BANDS, 1


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Return the rows scaled to unit length as float64, leaving all-zero rows zero."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class SimHashIndex:
    """An incremental approximate cosine index: LSH over random-hyperplane sign bits.

    `band_keys` hashes vectors, `add` stores a unit vector under its keys, and `nearest` returns
    the closest stored vector among those sharing a band with the query.
    """

    def __init__(self, dimension: int, bands: int, rows: int, seed: int = HYPERPLANE_SEED) -> None:
        self.dimension = dimension
        self.bands = bands
        self.rows = rows
        rng = np.random.default_rng([seed, dimension])
        self.hyperplanes = rng.standard_normal((dimension, bands * rows))
        self._weights = np.left_shift(np.uint64(1), np.arange(rows, dtype=np.uint64))
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
        self._vectors = np.empty((64, dimension), dtype=np.float32)
        self.size = 0

    def band_keys(self, unit_vectors: np.ndarray) -> np.ndarray:
        """Return a `(vectors, bands)` array of `uint64` keys (float64 keeps sign bits stable)."""
        bits = (unit_vectors @ self.hyperplanes) > 0.0
        bits = bits.reshape(len(unit_vectors), self.bands, self.rows).astype(np.uint64)
        return (bits * self._weights).sum(axis=2, dtype=np.uint64)

    def nearest(self, unit_vector: np.ndarray, keys: np.ndarray) -> tuple[int, float] | None:
        """Return `(position, cosine similarity)` of the best candidate, or None without candidates.

        Ties go to the earliest added vector.
        """
        candidates: set[int] = set()
        for band, key in enumerate(keys.tolist()):
            bucket = self._buckets[band].get(key)
            if bucket:
                candidates.update(bucket)
        if not candidates:
            return None
        positions = np.fromiter(sorted(candidates), dtype=np.int64, count=len(candidates))
        similarities = self._vectors[positions].astype(np.float64) @ unit_vector
        best = int(np.argmax(similarities))
        return int(positions[best]), float(similarities[best])

    def add(self, unit_vector: np.ndarray, keys: np.ndarray) -> int:
        """Store a unit vector under its band keys and return its position."""
        if self.size == len(self._vectors):
            grown = np.empty((2 * len(self._vectors), self.dimension), dtype=np.float32)
            grown[: self.size] = self._vectors[: self.size]
            self._vectors = grown
        position = self.size
        self._vectors[position] = unit_vector
        self.size += 1
        for band, key in enumerate(keys.tolist()):
            self._buckets[band].setdefault(key, []).append(position)
        return position


class _Match:
    """The kept chunk that a duplicate chunk matched."""

    __slots__ = ("chunk_id", "doc_id", "similarity", "kept")

    def __init__(self, chunk_id: str, doc_id: str, similarity: float, kept: Chunk | None) -> None:
        self.chunk_id = chunk_id
        self.doc_id = doc_id
        self.similarity = similarity
        self.kept = kept  # the kept Chunk object for in-run matches, None for indexed ones


@register
class DedupeSemantic(GlobalOperator):
    """Drop or mark chunks whose embedding is within `max_distance` of an already kept chunk.

    With `action: drop`, a document that loses all its chunks is marked as a duplicate of the
    document that contains the match of its first chunk.
    """

    name: ClassVar[str] = "dedupe_semantic"
    version: ClassVar[str] = "1"

    class Args(OperatorArgs):
        max_distance: float = Field(
            0.05,
            ge=0.0,
            lt=1.0,
            description="Maximum cosine distance (1 - cosine similarity) of a duplicate chunk.",
        )
        action: Literal["drop", "mark"] = Field(
            "drop",
            description=(
                "drop: remove duplicate chunks from the document; mark: keep them and set "
                "metadata['semantic_duplicate_of']."
            ),
        )

    def __init__(self, args: OperatorArgs | None = None, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self.bands, self.rows = choose_bands(self.args.max_distance)
        self._min_similarity = 1.0 - self.args.max_distance
        self.begin(None)

    def begin(self, context: Any) -> None:
        """Take the indexed chunks table from the context and reset the in-run index.

        A run passes its documents in work groups (fully processed, then re-chunked, then
        re-embedded), each with its own `begin()`. The in-run index carries over between groups
        of one run, so a re-chunked document is compared with the chunks that earlier groups kept
        and whose rows are not in the table yet.
        """
        run_id = getattr(context, "run_id", None)
        same_run = run_id is not None and run_id == getattr(self, "_run_id", None)
        self._run_id = run_id
        self._table = getattr(context, "chunks_table", None)
        self._removed: set[str] = set(getattr(context, "removed_doc_ids", ()) or ())
        if same_run:
            return
        self._index: SimHashIndex | None = None
        self._kept_chunks: list[Chunk] = []
        self._kept_doc_ids: list[str] = []

    def finish(self) -> None:
        """Log what this run matched. Every decision was made in `process_batch` already."""
        logger.info(
            "%s: %d chunks kept, %d matched chunks of this run, %d matched indexed chunks, "
            "%d documents marked as duplicates",
            self.name,
            len(self._kept_chunks),
            self.stats["chunks_matched_run"],
            self.stats["chunks_matched_indexed"],
            self.stats["dropped_duplicate"],
        )

    def process_batch(self, docs: list[Document]) -> list[Document]:
        """Decide every chunk of the batch in order. Documents pass through, possibly marked."""
        self.ensure_setup()
        entries = [
            (doc, chunk)
            for doc in docs
            if doc.is_pending
            for chunk in doc.chunks
            if chunk.vector is not None
        ]
        matches: dict[int, _Match] = {}
        if entries:
            matches = self._decide_chunks(entries)
        for doc in docs:
            if not doc.is_pending:
                continue
            self.stats["in"] += 1
            self._apply(doc, matches)
            self.count_outcome(doc)
        return docs

    def _decide_chunks(self, entries: list[tuple[Document, Chunk]]) -> dict[int, _Match]:
        """Keep or match each chunk in order and return the matches keyed by `id(chunk)`."""
        unit_vectors = normalize(np.stack([np.asarray(c.vector).ravel() for _, c in entries]))
        index = self._ensure_index(unit_vectors.shape[1])
        keys = index.band_keys(unit_vectors)
        indexed_matches = self._search_table(unit_vectors, [doc.doc_id for doc, _ in entries])
        matches: dict[int, _Match] = {}
        for position, (doc, chunk) in enumerate(entries):
            if not unit_vectors[position].any():
                self.stats["chunks_zero_vector"] += 1
                continue
            match = indexed_matches[position] or self._search_run(
                unit_vectors[position], keys[position]
            )
            if match is None:
                self._keep(chunk, doc.doc_id, unit_vectors[position], keys[position])
            else:
                matches[id(chunk)] = match
                self._record(chunk, match)
        return matches

    # ---- searching ----------------------------------------------------------------------------

    def _ensure_index(self, dimension: int) -> SimHashIndex:
        if self._index is None:
            self._index = SimHashIndex(dimension, self.bands, self.rows)
        elif self._index.dimension != dimension:
            raise ValueError(
                f"{self.name}: chunk vectors have dimension {dimension}, but earlier chunks of "
                f"this run had {self._index.dimension}; all chunks must come from one model"
            )
        return self._index

    def _search_run(self, unit_vector: np.ndarray, keys: np.ndarray) -> _Match | None:
        found = self._index.nearest(unit_vector, keys)
        if found is None or found[1] < self._min_similarity:
            return None
        position, similarity = found
        kept = self._kept_chunks[position]
        return _Match(kept.chunk_id, self._kept_doc_ids[position], similarity, kept)

    def _search_table(self, unit_vectors: np.ndarray, doc_ids: list[str]) -> list[_Match | None]:
        """Return the nearest acceptable indexed chunk per vector, if within `max_distance`."""
        matches: list[_Match | None] = [None] * len(unit_vectors)
        if self._table is None:
            return matches
        rows = (
            self._table.search([vector.astype(np.float32) for vector in unit_vectors])
            .distance_type("cosine")
            .limit(TABLE_SEARCH_LIMIT)
            .select(["chunk_id", "doc_id", "vector", "_distance"])
            .to_arrow()
        )
        if not rows.num_rows:
            return matches
        if "query_index" in rows.column_names:
            queries = rows.column("query_index").to_numpy().astype(np.int64)
        else:
            queries = np.zeros(rows.num_rows, dtype=np.int64)
        similarities = np.einsum(
            "ij,ij->i", normalize(_vectors_to_numpy(rows.column("vector"))), unit_vectors[queries]
        )
        chunk_ids = rows.column("chunk_id").to_pylist()
        row_doc_ids = rows.column("doc_id").to_pylist()

        # Queries with a row of a skipped document within max_distance.
        needs_filtered_search = set()
        for row, query in enumerate(queries.tolist()):
            similarity = float(similarities[row])
            if similarity < self._min_similarity:
                continue
            if row_doc_ids[row] in self._removed or row_doc_ids[row] == doc_ids[query]:
                needs_filtered_search.add(query)
                continue
            best = matches[query]
            if best is None or similarity > best.similarity:
                matches[query] = _Match(chunk_ids[row], row_doc_ids[row], similarity, None)

        # Skipped rows within max_distance may have pushed acceptable rows past the limit, so
        # search once more without the skipped documents.
        rows_per_query = np.bincount(queries, minlength=len(unit_vectors))
        for query in sorted(needs_filtered_search):
            if matches[query] is None and rows_per_query[query] >= TABLE_SEARCH_LIMIT:
                matches[query] = self._search_table_filtered(unit_vectors[query], doc_ids[query])
        return matches

    def _search_table_filtered(self, unit_vector: np.ndarray, doc_id: str) -> _Match | None:
        """Search for the nearest chunk outside the skipped documents.

        Wider searches filtered in Python come first, because the SQL filter lists every skipped
        doc_id and a run that reprocesses many documents skips many. The SQL prefilter runs only
        when more than `WIDE_SEARCH_LIMITS[-1]` rows of skipped documents are within
        `max_distance`.
        """
        self.stats["table_filtered_searches"] += 1
        for limit in WIDE_SEARCH_LIMITS:
            rows = (
                self._table.search(unit_vector.astype(np.float32))
                .distance_type("cosine")
                .limit(limit)
                .select(["chunk_id", "doc_id", "vector", "_distance"])
                .to_arrow()
            )
            if not rows.num_rows:
                return None
            similarities = normalize(_vectors_to_numpy(rows.column("vector"))) @ unit_vector
            doc_ids = rows.column("doc_id").to_pylist()
            for row, similarity in enumerate(similarities.tolist()):
                if similarity < self._min_similarity:
                    # Rows come nearest first, so no later row is within max_distance.
                    return None
                if doc_ids[row] not in self._removed and doc_ids[row] != doc_id:
                    chunk_id = rows.column("chunk_id")[row].as_py()
                    return _Match(chunk_id, doc_ids[row], similarity, None)
            if rows.num_rows < limit:
                return None

        excluded = sorted(self._removed | {doc_id})
        quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in excluded)
        self.stats["table_sql_filtered_searches"] += 1
        rows = (
            self._table.search(unit_vector.astype(np.float32))
            .distance_type("cosine")
            .where(f"doc_id NOT IN ({quoted})", prefilter=True)
            .limit(1)
            .select(["chunk_id", "doc_id", "vector", "_distance"])
            .to_arrow()
        )
        if not rows.num_rows:
            return None
        vector = normalize(_vectors_to_numpy(rows.column("vector")))[0]
        similarity = float(vector @ unit_vector)
        if similarity < self._min_similarity:
            return None
        return _Match(
            rows.column("chunk_id")[0].as_py(), rows.column("doc_id")[0].as_py(), similarity, None
        )

    # ---- decisions ----------------------------------------------------------------------------

    def _keep(self, chunk: Chunk, doc_id: str, unit_vector: np.ndarray, keys: np.ndarray) -> None:
        self._index.add(unit_vector, keys)
        self._kept_chunks.append(chunk)
        self._kept_doc_ids.append(doc_id)

    def _record(self, chunk: Chunk, match: _Match) -> None:
        if match.kept is not None:
            # NOTE: a kept chunk of an earlier work group of the run is already staged, so a
            # match from a later group (re-chunked or re-embedded documents) is not counted.
            match.kept.metadata["duplicates"] = match.kept.metadata.get("duplicates", 0) + 1
            self.stats["chunks_matched_run"] += 1
        else:
            self.stats["chunks_matched_indexed"] += 1
        if self.args.action == "mark":
            chunk.metadata["semantic_duplicate_of"] = match.chunk_id

    def _apply(self, doc: Document, matches: dict[int, _Match]) -> None:
        """Drop the document's duplicate chunks, and mark it a duplicate when none remain."""
        if self.args.action != "drop" or not doc.chunks:
            return
        first_match = matches.get(id(doc.chunks[0]))
        remaining = [chunk for chunk in doc.chunks if id(chunk) not in matches]
        self.stats["chunks_dropped"] += len(doc.chunks) - len(remaining)
        keepers = {matches[id(chunk)].doc_id for chunk in doc.chunks if id(chunk) in matches}
        doc.depends_on = sorted(keepers - {doc.doc_id})
        if remaining:
            doc.chunks = remaining
            return
        doc.mark_duplicate(
            first_match.doc_id,
            f"all {len(doc.chunks)} chunks are semantic duplicates; the first matches chunk "
            f"{first_match.chunk_id} of {first_match.doc_id}",
            similarity=first_match.similarity,
        )


def _vectors_to_numpy(column: Any) -> np.ndarray:
    """Convert a pyarrow column of equal-length float lists to a 2-D float64 array."""
    array = column.combine_chunks()
    values = array.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    return values.reshape(len(array), -1)
