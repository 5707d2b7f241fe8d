"""The versioned chunks table in LanceDB: one commit per run, a served pointer, search and rollback.

Every run that changes the index writes exactly one new table version through a single
`merge_insert` (upserts keyed by `chunk_id`, deletes scoped to the documents the run touched), and
tags it `run-<run_id>`. The tag `served` points at the version that searches read. It moves only
after a run has completed, and `rollback` points it at an earlier version.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable

import lancedb
import pyarrow as pa
import pyarrow.dataset as pads

logger = logging.getLogger(__name__)

CHUNKS_TABLE = "chunks"
SERVED_TAG = "served"
RUN_TAG_PREFIX = "run-"


class IndexError_(RuntimeError):
    """The index cannot do what was asked (no such version, nothing indexed yet)."""


class InvalidVersionError(IndexError_):
    """A user-given version number or tag name is invalid.

    It names no version a run committed, or the tag name is reserved or already in use.
    """


def chunk_schema(dimension: int, metadata: dict[str, Any] | None = None) -> pa.Schema:
    fields = [
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("uri", pa.string()),
        pa.field("source", pa.string()),
        pa.field("text", pa.string()),
        pa.field("vector", pa.list_(pa.float32(), dimension)),
        pa.field("ordinal", pa.int32()),
        pa.field("char_start", pa.int32()),
        pa.field("char_end", pa.int32()),
        pa.field("token_count", pa.int32()),
        pa.field("content_hash", pa.string()),  # sha256 of the document's raw bytes
        pa.field("text_hash", pa.string()),  # sha256 of the chunk text
        pa.field("parse_fp", pa.string()),  # fingerprint of the steps before chunk
        pa.field("chunk_fp", pa.string()),  # fingerprint of chunk and later steps except embed
        pa.field("embed_fp", pa.string()),  # fingerprint of the embedding model
        pa.field("metadata", pa.string()),  # JSON: pages, title, duplicates, ...
        pa.field("run_id", pa.string()),
    ]
    encoded = {k.encode(): json.dumps(v).encode() for k, v in (metadata or {}).items()}
    return pa.schema(fields, metadata=encoded)


@dataclass
class VersionInfo:
    version: int
    run_id: str | None
    created_at: str
    served: bool
    tags: list[str]
    chunks: int
    documents: int | None = None


class ChunkIndex:
    """The `chunks` table of a workspace."""

    def __init__(self, lance_dir: str | Path) -> None:
        self.lance_dir = str(lance_dir)
        self.db = lancedb.connect(self.lance_dir)

    # ---- opening ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return CHUNKS_TABLE in self.db.table_names()

    def open(self):
        if not self.exists():
            raise IndexError_(
                f"no chunks table in {self.lance_dir}: nothing has been indexed yet; run `ragpipe run CONFIG` first"
            )
        return self.db.open_table(CHUNKS_TABLE)

    def open_served(self):
        """Open the table checked out at the served version (the latest if none is tagged yet)."""
        table = self.open()
        if SERVED_TAG in table.tags.list():
            table.checkout(SERVED_TAG)
        return table

    def open_or_create(self, dimension: int, metadata: dict[str, Any]):
        if self.exists():
            table = self.db.open_table(CHUNKS_TABLE)
            existing = table.schema.field("vector").type.list_size
            if existing != dimension:
                raise IndexError_(
                    f"the chunks table stores {existing}-dimensional vectors but the embedding model "
                    f"gives {dimension}; use a new `workspace` for a model of another dimension"
                )
            return table
        return self.db.create_table(CHUNKS_TABLE, schema=chunk_schema(dimension, metadata))

    # ---- writing ------------------------------------------------------------------------------

    def commit(
        self,
        table,
        staged: pads.Dataset | None,
        replace_doc_ids: Iterable[str],
        run_id: str,
    ) -> int:
        """Upsert the staged chunks and delete other chunks of `replace_doc_ids`, as one version.

        Return the new version number. Chunks of documents not named in `replace_doc_ids` are
        never deleted, whatever is staged.
        """
        doc_ids = sorted(set(replace_doc_ids))
        schema = table.schema
        if staged is not None:
            source = staged.scanner().to_reader()
        else:
            source = schema.empty_table()
        self.ensure_text_index(table)
        builder = table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all()
        if doc_ids:
            builder = builder.when_not_matched_by_source_delete(_in_filter("doc_id", doc_ids))
        result = builder.execute(source)
        if not _has_text_index(table) and table.count_rows() > 0:
            # The first commit with rows also builds the full-text index, so the run's tagged
            # version is the one with the index; the version before it stays untagged.
            self.ensure_text_index(table)
        version = table.version
        table.tags.create(f"{RUN_TAG_PREFIX}{run_id}", version)
        logger.info(
            "run %s committed version %d: %d inserted, %d updated, %d deleted",
            run_id, version, result.num_inserted_rows, result.num_updated_rows, result.num_deleted_rows,
        )
        return version

    def stores_any(self, table, doc_ids: Iterable[str]) -> bool:
        """Return whether the latest version contains a chunk of any of `doc_ids`."""
        ids = sorted(set(doc_ids))
        for start in range(0, len(ids), 500):
            if table.count_rows(_in_filter("doc_id", ids[start : start + 500])) > 0:
                return True
        return False

    def set_served(self, table, version: int) -> None:
        tags = table.tags.list()
        if SERVED_TAG in tags:
            table.tags.update(SERVED_TAG, version)
        else:
            table.tags.create(SERVED_TAG, version)

    # ---- reading ------------------------------------------------------------------------------

    def served_version(self) -> int | None:
        if not self.exists():
            return None
        tags = self.open().tags.list()
        return tags[SERVED_TAG]["version"] if SERVED_TAG in tags else None

    def versions(self) -> list[VersionInfo]:
        table = self.open()
        tags = table.tags.list()
        by_version: dict[int, list[str]] = {}
        for name, info in tags.items():
            by_version.setdefault(info["version"], []).append(name)
        served = tags.get(SERVED_TAG, {}).get("version")
        infos = []
        for item in table.list_versions():
            version = item["version"]
            names = sorted(by_version.get(version, []))
            run_tags = [n for n in names if n.startswith(RUN_TAG_PREFIX)]
            run_id = run_tags[0][len(RUN_TAG_PREFIX):] if run_tags else None
            rows = item.get("metadata", {}).get("total_rows")
            infos.append(
                VersionInfo(
                    version=version,
                    run_id=run_id,
                    created_at=item["timestamp"].isoformat(),
                    served=version == served,
                    tags=names,
                    chunks=int(rows) if rows is not None else -1,
                )
            )
        return infos

    def load_chunks(self, doc_ids: list[str]) -> dict[str, list[Any]]:
        """Return the stored chunks (without vectors) of documents, by doc_id, in ordinal order."""
        from operators.records import Chunk

        found: dict[str, list[Any]] = {}
        if not self.exists() or not doc_ids:
            return found
        dataset = self.open().to_lance()
        columns = ["chunk_id", "doc_id", "text", "ordinal", "char_start", "char_end", "token_count", "metadata"]
        for start in range(0, len(doc_ids), 500):
            rows = dataset.to_table(columns=columns, filter=_in_filter("doc_id", doc_ids[start : start + 500]))
            for row in rows.to_pylist():
                found.setdefault(row["doc_id"], []).append(
                    Chunk(
                        chunk_id=row["chunk_id"], text=row["text"], ordinal=row["ordinal"],
                        char_start=row["char_start"], char_end=row["char_end"],
                        token_count=row["token_count"], metadata=json.loads(row["metadata"] or "{}"),
                    )
                )
        for chunks in found.values():
            chunks.sort(key=lambda c: c.ordinal)
        return found

    def count_documents(self, version: int) -> int:
        table = self.open()
        table.checkout(version)
        return len(table.to_lance().to_table(columns=["doc_id"]).column("doc_id").unique())

    def rollback(self, version: int | str) -> int:
        """Point the served tag at a version number or at the version another tag names.

        Return the version number now served. Only versions a run committed can be served.
        """
        table = self.open()
        if isinstance(version, str):
            tags = table.tags.list()
            if version not in tags:
                raise InvalidVersionError(f"no tag named {version!r}; tags: {sorted(tags)}")
            version = tags[version]["version"]
        self._check_committed_by_run(table, version)
        self.set_served(table, version)
        logger.info("served version set to %d", version)
        return version

    def _check_committed_by_run(self, table, version: int) -> None:
        """Raise `InvalidVersionError` unless a run committed `version` and it still exists."""
        known = {v["version"] for v in table.list_versions()}
        tags = table.tags.list()
        committed = sorted(
            {info["version"] for name, info in tags.items() if name.startswith(RUN_TAG_PREFIX)} & known
        )
        if version not in known:
            raise InvalidVersionError(
                f"version {version} does not exist (or was removed by retention); "
                f"versions committed by runs: {committed}"
            )
        if version not in committed:
            raise InvalidVersionError(
                f"version {version} was not committed by a run: it was written while a run was in "
                f"progress (the new empty table, or the chunks before the full-text index was built); "
                f"versions committed by runs: {committed}"
            )

    def search(
        self, query_vector, query_text: str, k: int, version: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """Return the served (or given) version and its top `k` chunks for a query.

        Candidates come from vector search and, where the version has a full-text index, from
        BM25 full-text search; they are fused by reciprocal rank. A chunk that contains the whole
        query verbatim (12 characters or more, case and spacing ignored) ranks first, so a copied
        sentence finds its source even when its chunk's vector is dominated by other text.
        """
        table = self.open_served() if version is None else self._open_version(version)
        pool = max(50, k * 10)
        columns = ["chunk_id", "doc_id", "uri", "text", "metadata", "vector"]
        vector_rows = (
            table.search(query_vector, vector_column_name="vector").metric("cosine")
            .limit(pool).select(columns + ["_distance"]).to_list()
        )
        text_rows = self._full_text_candidates(table, query_text, pool, columns)
        return table.version, fuse_candidates(query_vector, query_text, vector_rows, text_rows, k)

    def _open_version(self, version: int):
        table = self.open()
        known = {v["version"] for v in table.list_versions()}
        if version not in known:
            raise IndexError_(f"version {version} does not exist; available versions: {sorted(known)}")
        table.checkout(version)
        return table

    @staticmethod
    def _full_text_candidates(table, query_text: str, pool: int, columns: list[str]) -> list[dict[str, Any]]:
        if not _has_text_index(table):
            return []
        try:
            query = table.search(query_text, query_type="fts", fts_columns="text").limit(pool)
            return query.select(columns + ["_score"]).to_list()
        except (ValueError, RuntimeError, OSError) as err:
            # A query the full-text parser rejects still gets vector results.
            logger.warning("full-text search failed for query %r: %s", query_text[:80], err)
            return []

    def ensure_text_index(self, table) -> None:
        """Create the BM25 full-text index on `text`, or fold unindexed rows into it.

        Rows added since the last index update are still found (Lance scans them), so the index
        is only updated once more than a fifth of the rows are unindexed.
        """
        from lancedb.index import FTS

        if not _has_text_index(table):
            if table.count_rows() == 0:
                return  # Lance cannot build a usable full-text index over no rows
            table.create_index("text", config=FTS())
            logger.info("created the full-text index on chunks.text")
            return
        stats = table.index_stats(_FTS_INDEX_NAME)
        total = stats.num_indexed_rows + stats.num_unindexed_rows
        if stats.num_unindexed_rows > 1000 and stats.num_unindexed_rows > total / 5:
            table.to_lance().optimize.optimize_indices()
            logger.info("folded %d unindexed rows into the full-text index", stats.num_unindexed_rows)

    # ---- retention ----------------------------------------------------------------------------

    def apply_retention(self, keep_versions: int) -> dict[str, int]:
        """Remove table versions except the newest `keep_versions` run versions and tagged ones.

        The served version and versions a user tagged always stay restorable, with their run tags.
        Run tags (`run-<id>`) of other versions are dropped first, because Lance keeps every tagged
        version; untagged versions (index builds) go too, except the latest.
        """
        if keep_versions < 1:
            raise IndexError_(f"keep_versions must be at least 1, got {keep_versions}")
        table = self.open()
        versions = sorted(v["version"] for v in table.list_versions())
        tags = table.tags.list()
        run_versions = sorted({info["version"] for name, info in tags.items() if name.startswith(RUN_TAG_PREFIX)})
        protected = {info["version"] for name, info in tags.items() if not name.startswith(RUN_TAG_PREFIX)}
        survivors = set(run_versions[-keep_versions:]) | protected
        removed_tags = 0
        for name, info in tags.items():
            if name.startswith(RUN_TAG_PREFIX) and info["version"] not in survivors:
                table.tags.delete(name)
                removed_tags += 1
        # NOTE: no compaction here: the served version is an older, tagged version whose files
        # must stay, so compacting would add a version without shrinking what searches read.
        stats = table.to_lance().cleanup_old_versions(
            older_than=timedelta(seconds=0), retain_versions=1, error_if_tagged_old_versions=False
        )
        remaining = [v["version"] for v in self.open().list_versions()]
        logger.info(
            "retention kept %d of %d versions (%d bytes removed, %d run tags dropped)",
            len(remaining), len(versions), stats.bytes_removed, removed_tags,
        )
        return {
            "versions_before": len(versions),
            "versions_after": len(remaining),
            "bytes_removed": int(stats.bytes_removed),
            "removed_run_tags": removed_tags,
        }

    def tag(self, version: int, name: str) -> None:
        """Tag a version so retention never removes it."""
        if name == SERVED_TAG or name.startswith(RUN_TAG_PREFIX):
            raise InvalidVersionError(
                f"tag name {name!r} is reserved for the engine (`{SERVED_TAG}` and names starting with "
                f"{RUN_TAG_PREFIX!r}); choose another name"
            )
        table = self.open()
        self._check_committed_by_run(table, version)
        existing = table.tags.list()
        if name in existing:
            raise InvalidVersionError(
                f"tag {name!r} already points at version {existing[name]['version']}; choose another name"
            )
        table.tags.create(name, version)


_FTS_INDEX_NAME = "text_idx"
_RRF_K = 60
_EXACT_MIN_CHARS = 12


def _has_text_index(table) -> bool:
    return any(index.index_type == "FTS" for index in table.list_indices())


def _normalize_for_match(text: str) -> str:
    return " ".join(text.casefold().split())


def fuse_candidates(query_vector, query_text, vector_rows, text_rows, k) -> list[dict[str, Any]]:
    """Fuse vector and full-text candidates by reciprocal rank; verbatim matches rank first."""
    import numpy as np

    query = np.asarray(query_vector, dtype=np.float32)
    candidates: dict[str, dict[str, Any]] = {}
    for source, rows in (("vector_rank", vector_rows), ("text_rank", text_rows)):
        for rank, row in enumerate(rows, start=1):
            entry = candidates.setdefault(row["chunk_id"], {"row": row, "fused": 0.0})
            entry[source] = rank
            entry["fused"] += 1.0 / (_RRF_K + rank)
    needle = _normalize_for_match(query_text)
    hits = []
    for chunk_id, entry in candidates.items():
        row = entry["row"]
        vector = np.asarray(row["vector"], dtype=np.float32)
        similarity = float(vector @ query / ((np.linalg.norm(vector) * np.linalg.norm(query)) or 1.0))
        exact = len(needle) >= _EXACT_MIN_CHARS and needle in _normalize_for_match(row["text"])
        hits.append(
            {
                "doc_id": row["doc_id"],
                "chunk_id": chunk_id,
                "uri": row["uri"],
                "score": round(similarity, 6),
                "text": row["text"],
                "metadata": json.loads(row.get("metadata") or "{}"),
                "match": {
                    "exact": exact,
                    "vector_rank": entry.get("vector_rank"),
                    "text_rank": entry.get("text_rank"),
                    "fused_score": round(entry["fused"], 6),
                },
                "_order": (not exact, -entry["fused"], -similarity),
            }
        )
    hits.sort(key=lambda hit: hit["_order"])
    for hit in hits:
        del hit["_order"]
    return hits[:k]


def _in_filter(column: str, values: list[str]) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"{column} IN ({quoted})"
