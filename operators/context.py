"""The run and workspace state the engine passes to operators.

Operators stay independent of executors and storage: global operators receive a `RunContext` in
`begin()`, and the `embed` operator may be given an `EmbeddingCache`. Both are plain interfaces so
tests can build them in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class EmbeddingCache(Protocol):
    """Vectors keyed by (model fingerprint, chunk text hash)."""

    def get_many(self, model_fp: str, text_hashes: list[str]) -> dict[str, Any]:
        """Return the cached vectors (numpy float32 arrays) for the hashes that are present."""
        ...

    def put_many(self, model_fp: str, vectors: dict[str, Any]) -> None:
        """Store vectors for text hashes; called once per embedded batch."""
        ...


@dataclass
class RunContext:
    run_id: str
    workspace: Path | None = None
    # Normalized-text hash -> doc_id, for documents already indexed that this run does not reprocess.
    indexed_text_hashes: dict[str, str] = field(default_factory=dict)
    # Document ids whose stored chunks this run replaces or removes (changed, deleted, moved away,
    # re-chunked or re-embedded).
    removed_doc_ids: set[str] = field(default_factory=set)
    # The subset of `removed_doc_ids` whose text this run replaces or removes; None means all of
    # them. Re-chunked and re-embedded documents keep their text and skip document-level
    # operators such as dedupe, so their stored text hashes and signatures stay valid.
    replaced_text_doc_ids: set[str] | None = None
    # The LanceDB chunks table of the workspace, or None on the first run (read-only use).
    chunks_table: Any = None
    # True when the run processes only part of the corpus (a refresh or a backfill).
    incremental: bool = False
