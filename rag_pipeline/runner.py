"""Run a pipeline: detect changes, process what changed, commit one table version, record everything.

Order of writes, and why: chunks are staged to a Parquet file under `staging/<run_id>/`, then
committed to the chunks table in one `merge_insert` (one version), then the `served` tag moves,
then the manifest and analytics are written. A run that fails or is killed before the commit
leaves the served version untouched. A run killed after the commit leaves a manifest that is
behind, so the next run re-processes those documents, with vectors from the embedding cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import lancedb

from operators.base import Operator
from operators.context import RunContext
from operators.records import DUPLICATE, FILTERED, INDEXED, QUARANTINED, Chunk, Document, Section
from rag_pipeline.analytics import Analytics
from rag_pipeline.changes import DELETED, RECHUNK, REEMBED, UNCHANGED, BackfillSelection, ChangePlan, plan_changes
from rag_pipeline.config import PipelineConfig
from rag_pipeline.executors import make_executor
from rag_pipeline.fingerprints import Fingerprints, chunk_position, compute_fingerprints, embed_position
from rag_pipeline.index import ChunkIndex
from rag_pipeline.sink import ChunkStager, manifest_entry_for
from rag_pipeline.sources import KnownFile, list_documents
from rag_pipeline.state import LanceEmbeddingCache, Manifest, ManifestEntry, ParsedCache

logger = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A run failed; nothing was committed."""


class WorkspaceBusyError(RunError):
    """Another run holds the workspace lock; this run did nothing and is not recorded."""


class MassDeleteError(RunError):
    """A run would delete more of the index than the configured share allows."""


@dataclass
class RunOptions:
    kind: str = "run"  # run | backfill
    backfill: BackfillSelection | None = None
    reason: str | None = None
    allow_mass_delete: bool = False
    show_progress: bool = True


@dataclass
class Workspace:
    root: Path

    @property
    def lance_dir(self) -> Path:
        return self.root / "lance"

    @property
    def analytics_path(self) -> Path:
        return self.root / "analytics.duckdb"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the workspace for one run; fail at once if another run holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "run.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceBusyError(
                    f"another run is using the workspace {self.root}; wait for it to finish "
                    "(runs of one pipeline must not overlap)"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def remove_stale_staging(self) -> None:
        """Delete staging folders left by killed runs. Only call while holding the run lock."""
        if self.staging_dir.exists():
            shutil.rmtree(self.staging_dir, ignore_errors=True)

    def connect(self) -> lancedb.DBConnection:
        self.root.mkdir(parents=True, exist_ok=True)
        return lancedb.connect(str(self.lance_dir))


@dataclass
class RunSummary:
    run_id: str
    version: int | None
    documents: dict[str, int]
    changes: dict[str, int]
    chunks: dict[str, int]
    operators: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0
    kind: str = "run"

    def to_status(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "version": self.version,
            "documents": self.documents,
            "changes": self.changes,
            "chunks": self.chunks,
            "wall_seconds": round(self.wall_seconds, 3),
        }


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when `RAGPIPE_FAULT_INJECT` names this point (crash tests)."""
    if os.environ.get("RAGPIPE_FAULT_INJECT") == name:
        logger.warning("fault injection: killing the run at %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def run_pipeline(config: PipelineConfig, options: RunOptions | None = None) -> RunSummary:
    """Run `config` once. Raise `RunError` when the run fails; nothing is committed then."""
    options = options or RunOptions()
    run_id = new_run_id()
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    workspace = Workspace(Path(config.workspace))
    analytics = Analytics(workspace.analytics_path)
    logger.info("run %s of pipeline %s started (%s)", run_id, config.name, options.kind)
    try:
        with workspace.run_lock():
            workspace.remove_stale_staging()
            summary, records = _run(config, options, run_id, workspace)
    except Exception as err:
        wall = time.monotonic() - clock
        logger.error("run %s failed after %.1f s: %s", run_id, wall, err)
        if isinstance(err, WorkspaceBusyError):
            raise  # the run that holds the lock owns the staging folder and the analytics
        shutil.rmtree(workspace.staging_dir / run_id, ignore_errors=True)
        _record_failure(analytics, config, options, run_id, started, wall, err)
        if isinstance(err, RunError):
            raise
        raise RunError(f"run {run_id} failed: {type(err).__name__}: {err}") from err
    summary.wall_seconds = time.monotonic() - clock
    run_row = {
        "run_id": run_id, "pipeline": config.name, "kind": options.kind, "reason": options.reason,
        "status": "completed", "started_at": started, "finished_at": datetime.now(timezone.utc),
        "wall_seconds": summary.wall_seconds, "version": summary.version,
        "executor": config.executor.type, "summary": summary.to_status(),
    }
    analytics.record_run(run_row, *records)
    logger.info(
        "run %s completed in %.1f s: version %s, documents %s, chunks %s",
        run_id, summary.wall_seconds, summary.version, summary.documents, summary.chunks,
    )
    return summary


def _record_failure(analytics, config, options, run_id, started, wall, err) -> None:
    try:
        analytics.record_run(
            {
                "run_id": run_id, "pipeline": config.name, "kind": options.kind, "reason": options.reason,
                "status": "failed", "started_at": started, "finished_at": datetime.now(timezone.utc),
                "wall_seconds": wall, "version": None, "executor": config.executor.type,
                "error": f"{type(err).__name__}: {err}", "summary": {},
            },
            [], [], [],
        )
    except Exception:  # noqa: BLE001 - the original error matters more than the failed record
        logger.exception("could not record the failure of run %s in analytics", run_id)


def _run(config: PipelineConfig, options: RunOptions, run_id: str, workspace: Workspace):
    db = workspace.connect()
    manifest_store = Manifest(db)
    manifest = manifest_store.load()
    parsed_cache = ParsedCache(db)
    index = ChunkIndex(workspace.lance_dir)
    operators = config.build_operators()
    embed_op = operators[embed_position(operators)]
    fingerprints = compute_fingerprints(operators)

    known = {
        doc_id: KnownFile(entry.size_bytes, entry.mtime_ns, entry.content_hash)
        for doc_id, entry in manifest.items()
        if entry.parent_id is None
    }
    listed = list_documents(config, known)
    plan = plan_changes(listed, manifest, fingerprints, options.backfill, parsed_cache.keys(fingerprints.parse_fp))
    _guard_mass_delete(plan, manifest, config, options)
    logger.info("run %s plan: %s", run_id, plan.counts())

    removed = plan.removed_doc_ids(manifest)
    replaced_text = plan.replaced_text_doc_ids(manifest)
    table = index.open_or_create(embed_op.dimension(), _table_metadata(operators, fingerprints))
    context = RunContext(
        run_id=run_id,
        workspace=workspace.root,
        indexed_text_hashes={
            e.text_hash: e.doc_id for e in manifest.values()
            if e.state == INDEXED and e.text_hash and e.doc_id not in replaced_text
        },
        removed_doc_ids=removed,
        replaced_text_doc_ids=replaced_text,
        chunks_table=table if table.count_rows() else None,
        incremental=bool(manifest),
    )
    cache = LanceEmbeddingCache(db)
    stager = ChunkStager(workspace.staging_dir / run_id, embed_op.dimension(), run_id, fingerprints)
    processed: list[ManifestEntry] = [manifest_entry_for(doc, run_id, fingerprints) for doc in plan.terminal]

    def sink(batch: list[Document]) -> None:
        # Keep only the manifest entry of each finished document, so memory does not grow with text.
        for doc in batch:
            if doc.is_pending:
                if doc.chunks:
                    doc.state = INDEXED
                else:
                    doc.mark_filtered("pipeline", "no chunks were produced")
            if doc.state == INDEXED:
                stager.add(doc)
                fault_point("after_first_staged_document")
            processed.append(manifest_entry_for(doc, run_id, fingerprints))

    stats = [Counter() for _ in operators]
    executor = make_executor(config, embedding_cache=cache, show_progress=options.show_progress, keep_open=True)
    try:
        for docs, first_step in _work_groups(plan, operators, parsed_cache, index):
            result = executor.execute(docs, operators[first_step:], context, sink, total=len(docs))
            for offset, counter in enumerate(result.stats):
                stats[first_step + offset].update(counter)
    finally:
        executor.close()
    cache.flush()
    staged = stager.finish()
    staged_parsed = stager.parsed.finish()

    fault_point("before_commit")
    version = index.served_version()
    # A run whose documents all ended without chunks (new duplicates, quarantined files) changes
    # no chunk, so it commits no version. `removed` names every re-processed document, including
    # new ones, because a run killed after its commit can leave chunks the manifest does not know.
    if staged is not None or version is None or (removed and index.stores_any(table, removed)):
        version = index.commit(table, staged, removed, run_id)
        index.set_served(table, version)
    parse_removed = removed - {e.doc_id for e in plan.reembed}
    parsed_cache.commit(staged_parsed, parse_removed)
    shutil.rmtree(workspace.staging_dir / run_id, ignore_errors=True)

    fault_point("after_commit")
    new_manifest = _next_manifest(manifest, plan, processed)
    manifest_store.save(new_manifest)
    _collect_cache_garbage(cache, index, fingerprints.embed_fp)
    _apply_retention(index, config)

    stats = [dict(counter) for counter in stats]
    summary = _summarize(run_id, version, plan, processed, stats, operators, index, options)
    records = _analytics_rows(run_id, plan, processed, stats, operators)
    return summary, records


def _work_groups(plan: ChangePlan, operators, parsed_cache: ParsedCache, index: ChunkIndex):
    """Yield (documents, index of the first operator to run) for each kind of work in the plan."""
    if plan.to_process:
        yield plan.to_process, 0
    if plan.rechunk:
        yield _restore_parsed(plan.rechunk, parsed_cache), chunk_position(operators)
    if plan.reembed:
        yield _restore_chunks(plan.reembed, index), embed_position(operators)


def _stub(entry: ManifestEntry) -> Document:
    doc = Document(
        doc_id=entry.doc_id, uri=entry.uri, source=entry.source, content_hash=entry.content_hash,
        size_bytes=entry.size_bytes, format=entry.format, parent_id=entry.parent_id,
    )
    doc.metadata["mtime_ns"] = entry.mtime_ns
    if entry.text_hash:
        doc.metadata["text_hash"] = entry.text_hash
    return doc


def _restore_parsed(entries: list[ManifestEntry], parsed_cache: ParsedCache) -> list[Document]:
    rows = parsed_cache.load([e.doc_id for e in entries])
    docs = []
    for entry in entries:
        doc = _stub(entry)
        row = rows.get(entry.doc_id)
        if row is None:
            # NOTE: the planner checks the cache for top-level documents only; a member whose cached
            # text is missing is reported rather than silently dropped.
            doc.mark_quarantined(
                "pipeline", "cache_missing", f"the cached parse output of {entry.uri} is missing",
                fix=f"run `ragpipe backfill CONFIG --paths '{entry.doc_id.split('#')[0].split('!/')[0]}'`",
            )
        else:
            doc.sections = [Section(text=s["text"], metadata=s.get("metadata") or {}) for s in row["sections"]]
            doc.metadata.update(row["metadata"])
        docs.append(doc)
    return docs


def _restore_chunks(entries: list[ManifestEntry], index: ChunkIndex) -> list[Document]:
    stored = index.load_chunks([e.doc_id for e in entries])
    docs = []
    for entry in entries:
        doc = _stub(entry)
        doc.chunks = stored.get(entry.doc_id, [])
        docs.append(doc)
    return docs


def _guard_mass_delete(plan: ChangePlan, manifest, config: PipelineConfig, options: RunOptions) -> None:
    indexed = sum(1 for e in manifest.values() if e.parent_id is None)
    if not indexed or not plan.deleted or options.allow_mass_delete:
        return
    share = len(plan.deleted) / indexed
    if share > config.refresh.max_delete_fraction:
        raise MassDeleteError(
            f"this run would delete {len(plan.deleted)} of {indexed} documents ({share:.0%}), more than "
            f"refresh.max_delete_fraction={config.refresh.max_delete_fraction:.0%}. If a source folder is "
            "missing, unmounted or empty, fix it and run again; if the deletions are intended, rerun with "
            "--allow-mass-delete. Nothing was changed."
        )


def _table_metadata(operators: list[Operator], fingerprints: Fingerprints) -> dict[str, Any]:
    embed_op = next(op for op in operators if op.name == "embed")
    chunk_op = next(op for op in operators if op.name == "chunk")
    return {
        "ragpipe.embedding": {
            "model": embed_op.args.model,
            "revision": embed_op.model_revision() if hasattr(embed_op, "model_revision") else None,
            "dimension": embed_op.dimension(),
            "normalize": getattr(embed_op.args, "normalize", True),
            "fingerprint": fingerprints.embed_fp,
        },
        "ragpipe.chunker": chunk_op.describe()["args"],
        "ragpipe.pipeline": [op.describe() for op in operators],
        "ragpipe.fingerprints": {"parse": fingerprints.parse_fp, "chunk": fingerprints.chunk_fp},
    }


def _next_manifest(manifest, plan, processed: list[ManifestEntry]) -> dict[str, ManifestEntry]:
    removed = plan.removed_doc_ids(manifest)
    entries = {doc_id: e for doc_id, e in manifest.items() if doc_id not in removed}
    for entry in plan.deleted:
        entries.pop(entry.doc_id, None)
    for entry in processed:
        entries[entry.doc_id] = entry
    return entries


def _collect_cache_garbage(cache: LanceEmbeddingCache, index: ChunkIndex, embed_fp: str) -> None:
    """Drop cached vectors no chunk uses once the cache has 1.5x more entries than the table."""
    try:
        cached = cache.count(embed_fp)
        live_table = index.open_served()
        if cached <= 1.5 * live_table.count_rows() + 1000:
            return
        live = set(live_table.to_lance().to_table(columns=["text_hash"]).column("text_hash").to_pylist())
        logger.info("embedding cache: %d vectors no chunk uses were removed", cache.collect_garbage(embed_fp, live))
    except Exception:  # noqa: BLE001 - housekeeping must not fail a committed run
        logger.exception("embedding cache clean-up failed; it is retried after the next run")


def _apply_retention(index: ChunkIndex, config: PipelineConfig) -> None:
    try:
        if len(index.open().list_versions()) > config.retention.keep_versions * 2:
            logger.info("retention: %s", index.apply_retention(config.retention.keep_versions))
    except Exception:  # noqa: BLE001 - retention is housekeeping; a failure must not fail the run
        logger.exception("retention failed; old versions are kept until the next run")


def _summarize(run_id, version, plan, processed, stats, operators, index, options) -> RunSummary:
    states = Counter()
    for entry in plan.unchanged:
        states[UNCHANGED if entry.state == INDEXED else entry.state] += 1
    for entry in processed:
        states[entry.state] += 1
    documents = {
        "seen": sum(states.values()),
        "indexed": states[INDEXED],
        "unchanged": states[UNCHANGED],
        "duplicate": states[DUPLICATE],
        "filtered": states[FILTERED],
        "quarantined": states[QUARANTINED],
        "deleted": len(plan.deleted),
    }
    embed_stats = next((stats[i] for i, op in enumerate(operators) if op.name == "embed"), {})
    total_chunks = 0
    if version is not None:
        table = index.open()
        table.checkout(version)
        total_chunks = table.count_rows()
    chunks = {
        "total": total_chunks,
        "embedded": int(embed_stats.get("chunks_embedded", 0)),
        "reused": int(embed_stats.get("chunks_reused", 0)),
        "cache_hits": int(embed_stats.get("chunks_reused", 0)),
    }
    operator_rows = [{"operator": op.name, **stats[i]} for i, op in enumerate(operators)]
    return RunSummary(run_id, version, documents, plan.counts(), chunks, operator_rows, kind=options.kind)


def _analytics_rows(run_id, plan, processed, stats, operators):
    operator_stats = [(i, op.name, stats[i]) for i, op in enumerate(operators)]
    document_rows = []
    for entry in plan.unchanged:
        document_rows.append(
            (run_id, entry.doc_id, entry.uri, UNCHANGED, entry.state, entry.reason, entry.duplicate_of, entry.chunks,
             entry.similarity)
        )
    for entry in plan.deleted:
        document_rows.append((run_id, entry.doc_id, entry.uri, DELETED, DELETED, None, None, 0, None))
    quarantine_rows = []
    change_of = {e.doc_id: RECHUNK for e in plan.rechunk} | {e.doc_id: REEMBED for e in plan.reembed}
    change_of |= plan.change_of
    for entry in processed:
        change = change_of.get(entry.doc_id)
        if change is None:
            # Archive members take their parent's change; a document that failed while listing has none.
            change = change_of.get(entry.parent_id, "new") if entry.parent_id else "unreadable"
        document_rows.append(
            (run_id, entry.doc_id, entry.uri, change, entry.state, entry.reason, entry.duplicate_of, entry.chunks,
             entry.similarity)
        )
        if entry.state == QUARANTINED:
            quarantine_rows.append(
                (run_id, entry.doc_id, entry.uri, entry.format, entry.operator, entry.error_class,
                 entry.error_message, entry.fix)
            )
    return operator_stats, document_rows, quarantine_rows


def workspace_for(config: PipelineConfig) -> Workspace:
    return Workspace(Path(config.workspace))


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


os.environ.setdefault("HF_HUB_OFFLINE", "1")
