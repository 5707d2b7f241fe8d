"""Change detection: which documents a run must process, and which it must remove.

Each listed document is new, changed (raw bytes or pipeline settings), moved (same bytes at a new
path), unchanged, or selected by a backfill; each manifest entry no longer listed is deleted.
File times alone never make a document changed, because identity is the sha256 of its raw bytes.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime

from operators.records import DUPLICATE, INDEXED, QUARANTINED, Document
from rag_pipeline.state import ManifestEntry

NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
MOVED = "moved"
DELETED = "deleted"
BACKFILL = "backfill"
RETRY = "retry"


@dataclass
class BackfillSelection:
    """Documents a backfill re-processes whatever their hashes."""

    paths: list[str] = field(default_factory=list)  # globs matched against doc_id, uri and relative path
    since: datetime | None = None  # file modification time at or after this
    everything: bool = False

    def matches(self, doc: Document) -> bool:
        if self.everything:
            return True
        if self.since is not None and doc.mtime and doc.mtime >= self.since.timestamp():
            return True
        relative = doc.doc_id.split(":", 1)[-1]
        return any(
            fnmatch.fnmatch(candidate, pattern)
            for pattern in self.paths
            for candidate in (doc.doc_id, doc.uri, relative)
        )


@dataclass
class ChangePlan:
    to_process: list[Document] = field(default_factory=list)
    change_of: dict[str, str] = field(default_factory=dict)  # doc_id -> new | changed | moved | ...
    unchanged: list[ManifestEntry] = field(default_factory=list)  # carried forward as they are
    deleted: list[ManifestEntry] = field(default_factory=list)
    moved_from: dict[str, str] = field(default_factory=dict)  # new doc_id -> old doc_id
    terminal: list[Document] = field(default_factory=list)  # failed while listing (unreadable files)

    def removed_doc_ids(self, manifest: dict[str, ManifestEntry]) -> set[str]:
        """Ids whose stored chunks this run replaces or deletes, children included."""
        removed = {d.doc_id for d in self.to_process} | {e.doc_id for e in self.deleted}
        removed |= set(self.moved_from.values())
        removed |= {doc_id for doc_id, entry in manifest.items() if entry.parent_id in removed}
        return removed

    def counts(self) -> dict[str, int]:
        counts = {NEW: 0, CHANGED: 0, MOVED: 0, BACKFILL: 0, RETRY: 0}
        for change in self.change_of.values():
            counts[change] = counts.get(change, 0) + 1
        counts[UNCHANGED] = len(self.unchanged)
        counts[DELETED] = len(self.deleted)
        return counts


def plan_changes(
    listed: list[Document],
    manifest: dict[str, ManifestEntry],
    pipeline_fp: str,
    embed_fp: str,
    retry_key: str,
    backfill: BackfillSelection | None = None,
) -> ChangePlan:
    plan = ChangePlan()
    listed_ids = {d.doc_id for d in listed}
    top_level = {k: e for k, e in manifest.items() if e.parent_id is None}
    gone = {k: e for k, e in top_level.items() if k not in listed_ids}
    gone_by_hash: dict[str, str] = {}
    for doc_id, entry in sorted(gone.items()):
        gone_by_hash.setdefault(entry.content_hash, doc_id)

    for doc in listed:
        if not doc.is_pending:
            plan.terminal.append(doc)
            continue
        change = _classify(doc, manifest.get(doc.doc_id), pipeline_fp, embed_fp, retry_key, backfill)
        if change == NEW and doc.content_hash in gone_by_hash:
            old_id = gone_by_hash.pop(doc.content_hash)
            plan.moved_from[doc.doc_id] = old_id
            change = MOVED
        if change == UNCHANGED:
            plan.unchanged.append(manifest[doc.doc_id])
            doc.sections = []  # JSONL stubs carry their text; unchanged ones need none
        else:
            plan.to_process.append(doc)
            plan.change_of[doc.doc_id] = change

    moved_old = set(plan.moved_from.values())
    plan.deleted = [entry for doc_id, entry in sorted(gone.items()) if doc_id not in moved_old]
    _retry_orphaned_duplicates(plan, manifest, listed)
    _carry_children(plan, manifest)
    return plan


def _classify(doc, previous, pipeline_fp, embed_fp, retry_key, backfill) -> str:
    if backfill is not None and backfill.matches(doc):
        return BACKFILL
    if previous is None:
        return NEW
    if previous.content_hash != doc.content_hash:
        return CHANGED
    if previous.pipeline_fp != pipeline_fp:
        return CHANGED
    if previous.state == INDEXED and previous.embed_fp != embed_fp:
        return CHANGED
    if previous.state == QUARANTINED and previous.extra.get("retry_key") != retry_key:
        return RETRY
    return UNCHANGED


def _retry_orphaned_duplicates(plan: ChangePlan, manifest, listed) -> None:
    """Re-process duplicates whose keeper is deleted or re-processed, so no content disappears."""
    removed = {d.doc_id for d in plan.to_process} | {e.doc_id for e in plan.deleted}
    removed |= set(plan.moved_from.values())
    by_id = {d.doc_id: d for d in listed}
    keep = []
    for entry in plan.unchanged:
        if entry.state == DUPLICATE and entry.duplicate_of in removed and entry.doc_id in by_id:
            plan.to_process.append(by_id[entry.doc_id])
            plan.change_of[entry.doc_id] = RETRY
        else:
            keep.append(entry)
    plan.unchanged = keep
    plan.to_process.sort(key=lambda d: d.doc_id)


def _carry_children(plan: ChangePlan, manifest: dict[str, ManifestEntry]) -> None:
    """Archive members and attachments follow their parent: unchanged with it, or redone with it."""
    unchanged_parents = {e.doc_id for e in plan.unchanged}
    for doc_id, entry in sorted(manifest.items()):
        if entry.parent_id is not None and entry.parent_id in unchanged_parents:
            plan.unchanged.append(entry)
            unchanged_parents.add(doc_id)  # children sort after their parent, so nesting works
