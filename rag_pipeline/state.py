"""Workspace state besides the chunks table: the document manifest and the embedding cache.

Both live as Lance tables next to `chunks`. The manifest is written after the chunks commit, so a
run killed in between leaves a manifest that is behind the index. The next run then re-processes
those documents. Chunk writes are upserts keyed by `chunk_id` and vectors come from the cache, so
nothing is duplicated or lost.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa

logger = logging.getLogger(__name__)

MANIFEST_TABLE = "documents"
CACHE_TABLE_PREFIX = "embedding_cache_"


@dataclass
class ManifestEntry:
    """The last known state of one input document."""

    doc_id: str
    uri: str
    source: str
    state: str
    content_hash: str = ""
    size_bytes: int = 0
    mtime_ns: int = 0
    reason: str | None = None
    duplicate_of: str | None = None
    similarity: float | None = None
    error_class: str | None = None
    error_message: str | None = None
    fix: str | None = None
    operator: str | None = None
    format: str | None = None
    chunks: int = 0
    text_hash: str | None = None
    parse_fp: str = ""
    chunk_fp: str = ""
    embed_fp: str = ""
    parent_id: str | None = None
    run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_MANIFEST_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("uri", pa.string()),
        ("source", pa.string()),
        ("state", pa.string()),
        ("content_hash", pa.string()),
        ("size_bytes", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("reason", pa.string()),
        ("duplicate_of", pa.string()),
        ("similarity", pa.float64()),
        ("error_class", pa.string()),
        ("error_message", pa.string()),
        ("fix", pa.string()),
        ("operator", pa.string()),
        ("format", pa.string()),
        ("chunks", pa.int64()),
        ("text_hash", pa.string()),
        ("parse_fp", pa.string()),
        ("chunk_fp", pa.string()),
        ("embed_fp", pa.string()),
        ("parent_id", pa.string()),
        ("run_id", pa.string()),
        ("extra", pa.string()),
    ]
)


class Manifest:
    """Every known document's last state, stored as the Lance table `documents`."""

    def __init__(self, db: lancedb.DBConnection) -> None:
        self.db = db

    def load(self) -> dict[str, ManifestEntry]:
        if MANIFEST_TABLE not in self.db.table_names():
            return {}
        table = self.db.open_table(MANIFEST_TABLE).to_arrow()
        entries = {}
        for row in table.to_pylist():
            row["extra"] = json.loads(row["extra"] or "{}")
            entries[row["doc_id"]] = ManifestEntry(**row)
        return entries

    def save(self, entries: dict[str, ManifestEntry]) -> None:
        rows = []
        for entry in sorted(entries.values(), key=lambda e: e.doc_id):
            row = asdict(entry)
            row["extra"] = json.dumps(row["extra"], ensure_ascii=False)
            rows.append(row)
        data = pa.Table.from_pylist(rows, schema=_MANIFEST_SCHEMA)
        if MANIFEST_TABLE in self.db.table_names():
            self.db.open_table(MANIFEST_TABLE).add(data, mode="overwrite")
        else:
            self.db.create_table(MANIFEST_TABLE, data=data, schema=_MANIFEST_SCHEMA)


class LanceEmbeddingCache:
    """Vectors keyed by chunk text hash, one Lance table per embedding-model fingerprint.

    Writes are buffered and appended in blocks, so a run killed while embedding keeps most of its
    work: the next run finds those vectors here and does not embed them again.
    """

    def __init__(self, db: lancedb.DBConnection, flush_rows: int = 4096) -> None:
        self.db = db
        self.flush_rows = flush_rows
        self._pending: dict[str, dict[str, np.ndarray]] = {}
        self._tables: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0

    def _table(self, model_fp: str, dimension: int | None = None):
        if model_fp in self._tables:
            return self._tables[model_fp]
        name = CACHE_TABLE_PREFIX + model_fp
        if name in self.db.table_names():
            table = self.db.open_table(name)
        elif dimension is None:
            return None
        else:
            schema = pa.schema([("text_hash", pa.string()), ("vector", pa.list_(pa.float32(), dimension))])
            table = self.db.create_table(name, schema=schema)
        self._tables[model_fp] = table
        return table

    def get_many(self, model_fp: str, text_hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        pending = self._pending.get(model_fp, {})
        wanted = []
        for text_hash in text_hashes:
            if text_hash in pending:
                found[text_hash] = pending[text_hash]
            else:
                wanted.append(text_hash)
        table = self._table(model_fp)
        if table is not None and wanted:
            for start in range(0, len(wanted), 1000):
                block = wanted[start : start + 1000]
                quoted = ", ".join(f"'{h}'" for h in block)
                rows = table.to_lance().to_table(
                    columns=["text_hash", "vector"], filter=f"text_hash IN ({quoted})"
                )
                vectors = rows.column("vector").to_numpy(zero_copy_only=False)
                for text_hash, vector in zip(rows.column("text_hash").to_pylist(), vectors):
                    found[text_hash] = np.asarray(vector, dtype=np.float32)
        self.hits += len(found)
        self.misses += len(text_hashes) - len(found)
        return found

    def put_many(self, model_fp: str, vectors: dict[str, Any]) -> None:
        pending = self._pending.setdefault(model_fp, {})
        pending.update({h: np.asarray(v, dtype=np.float32) for h, v in vectors.items()})
        if len(pending) >= self.flush_rows:
            self.flush(model_fp)

    def flush(self, model_fp: str | None = None) -> None:
        for fp in [model_fp] if model_fp else list(self._pending):
            pending = self._pending.pop(fp, {})
            if not pending:
                continue
            dimension = len(next(iter(pending.values())))
            table = self._table(fp, dimension)
            data = pa.table(
                {
                    "text_hash": list(pending),
                    "vector": pa.array(
                        np.stack(list(pending.values())).tolist(), type=pa.list_(pa.float32(), dimension)
                    ),
                }
            )
            table.add(data)

    def count(self, model_fp: str) -> int:
        table = self._table(model_fp)
        return table.count_rows() if table is not None else 0

    def collect_garbage(self, model_fp: str, live_hashes: set[str]) -> int:
        """Delete cached vectors whose text no chunk uses any more; return how many were deleted."""
        self.flush()
        table = self._table(model_fp)
        if table is None:
            return 0
        stored = set(table.to_lance().to_table(columns=["text_hash"]).column("text_hash").to_pylist())
        unused = sorted(stored - live_hashes)
        for start in range(0, len(unused), 1000):
            quoted = ", ".join(f"'{h}'" for h in unused[start : start + 1000])
            table.delete(f"text_hash IN ({quoted})")
        if unused:
            table.optimize()
        return len(unused)


PARSED_TABLE = "parsed"

PARSED_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("content_hash", pa.string()),
        ("parse_fp", pa.string()),
        ("format", pa.string()),
        ("sections", pa.string()),  # JSON list of {"text", "metadata"}
        ("metadata", pa.string()),  # JSON object
    ]
)


class ParsedCache:
    """Cleaned document text (the output of the steps before `chunk`) of indexed documents.

    It lets a change of chunker settings re-chunk documents without parsing them again.
    """

    def __init__(self, db: lancedb.DBConnection) -> None:
        self.db = db

    def _table(self):
        if PARSED_TABLE not in self.db.table_names():
            return None
        return self.db.open_table(PARSED_TABLE)

    def keys(self, parse_fp: str) -> set[tuple[str, str]]:
        """Return (doc_id, content_hash) pairs cached under `parse_fp`."""
        table = self._table()
        if table is None:
            return set()
        rows = table.to_lance().to_table(
            columns=["doc_id", "content_hash"], filter=f"parse_fp = '{parse_fp}'"
        )
        return set(zip(rows.column("doc_id").to_pylist(), rows.column("content_hash").to_pylist()))

    def load(self, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        table = self._table()
        found: dict[str, dict[str, Any]] = {}
        if table is None:
            return found
        for start in range(0, len(doc_ids), 500):
            block = doc_ids[start : start + 500]
            quoted = ", ".join("'" + d.replace("'", "''") + "'" for d in block)
            for row in table.to_lance().to_table(filter=f"doc_id IN ({quoted})").to_pylist():
                row["sections"] = json.loads(row["sections"])
                row["metadata"] = json.loads(row["metadata"] or "{}")
                found[row["doc_id"]] = row
        return found

    def commit(self, staged, removed_doc_ids: set[str]) -> None:
        """Upsert the staged rows and drop the rows of removed documents."""
        table = self._table()
        if table is None:
            table = self.db.create_table(PARSED_TABLE, schema=PARSED_SCHEMA)
        source = staged.scanner().to_reader() if staged is not None else PARSED_SCHEMA.empty_table()
        builder = table.merge_insert("doc_id").when_matched_update_all().when_not_matched_insert_all()
        if removed_doc_ids:
            quoted = ", ".join("'" + d.replace("'", "''") + "'" for d in sorted(removed_doc_ids))
            builder = builder.when_not_matched_by_source_delete(f"doc_id IN ({quoted})")
        builder.execute(source)
