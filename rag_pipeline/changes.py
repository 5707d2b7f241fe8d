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
from rag_pipeline.fingerprints import Fingerprints
from rag_pipeline.state import ManifestEntry

NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
MOVED = "moved"
DELETED = "deleted"
BACKFILL = "backfill"
RETRY = "retry"
RECHUNK = "rechunk"  # chunker settings changed: re-chunk from the cached parse output
REEMBED = "reembed"  # embedding model changed: re-embed the stored chunks


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
    to_process: list[Document] = field(default_factory=list)  # through the whole pipeline
    rechunk: list[ManifestEntry] = field(default_factory=list)  # from `chunk` on, children included
    reembed: list[ManifestEntry] = field(default_factory=list)  # from `embed` on, children included
    change_of: dict[str, str] = field(default_factory=dict)  # doc_id -> new | changed | moved | ...
    unchanged: list[ManifestEntry] = field(default_factory=list)  # carried forward as they are
    deleted: list[ManifestEntry] = field(default_factory=list)
    moved_from: dict[str, str] = field(default_factory=dict)  # new doc_id -> old doc_id
    terminal: list[Document] = field(default_factory=list)  # failed while listing (unreadable files)

    def removed_doc_ids(self, manifest: dict[str, ManifestEntry]) -> set[str]:
        """Ids whose stored chunks this run replaces or deletes, children included."""
        removed = self.replaced_text_doc_ids(manifest)
        removed |= {e.doc_id for e in self.rechunk} | {e.doc_id for e in self.reembed}
        return removed

    def replaced_text_doc_ids(self, manifest: dict[str, ManifestEntry]) -> set[str]:
        """Ids whose stored text this run replaces or deletes, children included.

        Unlike `removed_doc_ids`, this leaves out documents that are only re-chunked or re-embedded.
        """
        removed = {d.doc_id for d in self.to_process} | {e.doc_id for e in self.deleted}
        removed |= {d.doc_id for d in self.terminal if d.doc_id in manifest}
        removed |= set(self.moved_from.values())
        removed |= _descendants(manifest, removed)
        return removed

    def counts(self) -> dict[str, int]:
        counts = {NEW: 0, CHANGED: 0, MOVED: 0, BACKFILL: 0, RETRY: 0}
        for change in self.change_of.values():
            counts[change] = counts.get(change, 0) + 1
        counts[UNCHANGED] = len(self.unchanged)
        counts[DELETED] = len(self.deleted)
        counts[RECHUNK] = sum(1 for e in self.rechunk if e.parent_id is None)
        counts[REEMBED] = sum(1 for e in self.reembed if e.parent_id is None)
        counts[CHANGED] += counts[RECHUNK] + counts[REEMBED]
        return counts


def _descendants(manifest: dict[str, ManifestEntry], parents: set[str]) -> set[str]:
    found: set[str] = set()
    frontier = set(parents)
    while frontier:
        children = {doc_id for doc_id, e in manifest.items() if e.parent_id in frontier and doc_id not in found}
        found |= children
        frontier = children
    return found


def plan_changes(
    listed: list[Document],
    manifest: dict[str, ManifestEntry],
    fingerprints: Fingerprints,
    backfill: BackfillSelection | None = None,
    cached_parse: set[tuple[str, str]] | None = None,
) -> ChangePlan:
    """Classify every listed document against the manifest.

    `cached_parse` contains the (doc_id, content_hash) pairs whose parse output is cached under the
    current `parse_fp`; only those can be re-chunked without parsing again.
    """
    cached_parse = cached_parse or set()
    plan = ChangePlan()
    listed_ids = {d.doc_id for d in listed}
    top_level = {k: e for k, e in manifest.items() if e.parent_id is None}
    gone = {k: e for k, e in top_level.items() if k not in listed_ids}
    gone_by_hash: dict[str, str] = {}
    for doc_id, entry in sorted(gone.items()):
        gone_by_hash.setdefault(entry.content_hash, doc_id)

    for doc in listed:
        if not doc.is_pending:
            previous = manifest.get(doc.doc_id)
            same_failure = (
                previous is not None and previous.state == QUARANTINED
                and doc.quarantine is not None and previous.error_message == doc.quarantine.message
            )
            if same_failure:
                plan.unchanged.append(previous)
            else:
                plan.terminal.append(doc)
            continue
        change = _classify(doc, manifest.get(doc.doc_id), fingerprints, backfill)
        if change == RECHUNK and (doc.doc_id, doc.content_hash) not in cached_parse:
            change = CHANGED
        if change == NEW and doc.content_hash in gone_by_hash:
            old_id = gone_by_hash.pop(doc.content_hash)
            plan.moved_from[doc.doc_id] = old_id
            change = MOVED
        if change in (UNCHANGED, RECHUNK, REEMBED):
            entry = manifest[doc.doc_id]
            {UNCHANGED: plan.unchanged, RECHUNK: plan.rechunk, REEMBED: plan.reembed}[change].append(entry)
            doc.sections = []  # JSONL stubs carry their text; these need none
        else:
            plan.to_process.append(doc)
            plan.change_of[doc.doc_id] = change

    moved_old = set(plan.moved_from.values())
    plan.deleted = [entry for doc_id, entry in sorted(gone.items()) if doc_id not in moved_old]
    _retry_orphaned_duplicates(plan, manifest, listed)
    _carry_children(plan, manifest)
    return plan


def _classify(doc, previous, fingerprints: Fingerprints, backfill) -> str:
    if backfill is not None and backfill.matches(doc):
        return BACKFILL
    if previous is None:
        return NEW
    if previous.content_hash != doc.content_hash or previous.parse_fp != fingerprints.parse_fp:
        return CHANGED
    if previous.state == QUARANTINED and previous.extra.get("retry_key") != fingerprints.retry_key:
        return RETRY
    if previous.state != INDEXED:
        return UNCHANGED
    if previous.chunk_fp != fingerprints.chunk_fp:
        return RECHUNK
    if previous.embed_fp != fingerprints.embed_fp:
        return REEMBED
    return UNCHANGED


def _retry_orphaned_duplicates(plan: ChangePlan, manifest, listed) -> None:
    """Re-process documents that left content to a keeper this run changes, so none disappears.

    That is a duplicate whose keeper is deleted, moved or re-processed, and a document whose
    dropped chunks matched chunks of a document this run deletes, re-processes, re-chunks or
    re-embeds (`depends_on`). An archive member is re-processed through its top-level document.
    Re-processing a keeper can orphan further documents, so this repeats until nothing changes.
    """
    by_id = {d.doc_id: d for d in listed}
    groups = (plan.unchanged, plan.rechunk, plan.reembed)
    text_replaced = {d.doc_id for d in plan.to_process} | {e.doc_id for e in plan.deleted}
    text_replaced |= set(plan.moved_from.values())
    chunks_replaced = text_replaced | {e.doc_id for e in plan.rechunk} | {e.doc_id for e in plan.reembed}

    while True:
        gone_text = text_replaced | _descendants(manifest, text_replaced)
        gone_chunks = chunks_replaced | _descendants(manifest, chunks_replaced)

        def is_orphaned(entry: ManifestEntry) -> bool:
            if entry.state == DUPLICATE and entry.duplicate_of in gone_text:
                return True
            return not gone_chunks.isdisjoint(entry.extra.get("depends_on") or ())

        grouped = {e.doc_id for group in groups for e in group}
        retry = {
            root
            for entry in manifest.values()
            if is_orphaned(entry) and (root := _root_id(manifest, entry.doc_id)) in grouped and root in by_id
        }
        if not retry:
            break
        for group in groups:
            group[:] = [e for e in group if e.doc_id not in retry]
        for doc_id in sorted(retry):
            plan.to_process.append(by_id[doc_id])
            plan.change_of[doc_id] = RETRY
        text_replaced |= retry
        chunks_replaced |= retry
    plan.to_process.sort(key=lambda d: d.doc_id)


def _root_id(manifest: dict[str, ManifestEntry], doc_id: str) -> str:
    """Return the id of the top-level document that `doc_id` belongs to (itself if top-level)."""
    seen = set()
    while doc_id in manifest and manifest[doc_id].parent_id is not None and doc_id not in seen:
        seen.add(doc_id)
        doc_id = manifest[doc_id].parent_id
    return doc_id


def _carry_children(plan: ChangePlan, manifest: dict[str, ManifestEntry]) -> None:
    """Archive members and attachments follow their parent: unchanged, re-chunked or re-embedded with it.

    Children of a parent that goes through the whole pipeline are produced again by `parse`.
    """
    groups = (plan.unchanged, plan.rechunk, plan.reembed)
    parent_group = {e.doc_id: group for group in groups for e in group}
    for doc_id, entry in sorted(manifest.items()):  # children sort after their parent
        group = parent_group.get(entry.parent_id) if entry.parent_id is not None else None
        if group is None:
            continue
        if group is not plan.unchanged and entry.state != INDEXED:
            group = plan.unchanged  # a duplicate or quarantined member has no chunks to redo
        group.append(entry)
        parent_group[doc_id] = group
