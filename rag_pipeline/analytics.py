"""Run statistics in `analytics.duckdb`: runs, per-operator counters, document states, quarantine.

Each write opens the DuckDB file, writes in one transaction and closes it, so another process (the
HTTP service, a notebook) can open the file between runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

import duckdb

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    pipeline VARCHAR,
    kind VARCHAR,            -- run | backfill
    reason VARCHAR,
    status VARCHAR,          -- completed | failed
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    wall_seconds DOUBLE,
    version BIGINT,
    executor VARCHAR,
    error VARCHAR,
    summary JSON
);
CREATE TABLE IF NOT EXISTS operator_stats (
    run_id VARCHAR,
    ordinal INTEGER,
    operator VARCHAR,
    counter VARCHAR,
    value BIGINT
);
CREATE TABLE IF NOT EXISTS document_states (
    run_id VARCHAR,
    doc_id VARCHAR,
    uri VARCHAR,
    change VARCHAR,          -- new | changed | unchanged | moved | deleted | backfill | retry | rechunk | reembed | unreadable
    state VARCHAR,
    reason VARCHAR,
    duplicate_of VARCHAR,
    chunks INTEGER,
    similarity DOUBLE        -- estimated similarity to duplicate_of, for near-duplicates
);
-- Workspaces written before the similarity column existed get it here.
ALTER TABLE document_states ADD COLUMN IF NOT EXISTS similarity DOUBLE;
CREATE TABLE IF NOT EXISTS quarantine (
    run_id VARCHAR,
    doc_id VARCHAR,
    uri VARCHAR,
    format VARCHAR,
    operator VARCHAR,
    error_class VARCHAR,
    message VARCHAR,
    fix VARCHAR
);
"""


class Analytics:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if read_only and not Path(self.path).exists():
            raise FileNotFoundError(f"{self.path} does not exist yet: no run has finished in this workspace")
        connection = duckdb.connect(self.path, read_only=read_only)
        if not read_only:
            connection.execute(_SCHEMA)
        return connection

    def record_run(
        self,
        run: dict[str, Any],
        operator_stats: Iterable[tuple[int, str, dict[str, int]]],
        document_rows: list[tuple],
        quarantine_rows: list[tuple],
    ) -> None:
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM runs WHERE run_id = ?", [run["run_id"]])
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run["run_id"], run["pipeline"], run["kind"], run.get("reason"), run["status"],
                    run["started_at"], run["finished_at"], run["wall_seconds"], run.get("version"),
                    run.get("executor"), run.get("error"), json.dumps(run.get("summary", {})),
                ],
            )
            stats_rows = [
                (run["run_id"], ordinal, name, counter, int(value))
                for ordinal, name, counters in operator_stats
                for counter, value in sorted(counters.items())
            ]
            if stats_rows:
                con.executemany("INSERT INTO operator_stats VALUES (?, ?, ?, ?, ?)", stats_rows)
            if document_rows:
                con.executemany(
                    "INSERT INTO document_states (run_id, doc_id, uri, change, state, reason, duplicate_of, chunks, "
                    "similarity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    document_rows,
                )
            if quarantine_rows:
                con.executemany("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?)", quarantine_rows)
            con.execute("COMMIT")

    def last_run(self) -> dict[str, Any] | None:
        if not Path(self.path).exists():
            return None
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT run_id, status, version, summary, kind, reason, started_at, finished_at, error "
                "FROM runs ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        keys = ["run_id", "status", "version", "summary", "kind", "reason", "started_at", "finished_at", "error"]
        result = dict(zip(keys, row))
        result["summary"] = json.loads(result["summary"]) if result["summary"] else {}
        return result

    def run_document_states(self, run_id: str, state: str | None = None) -> list[dict[str, Any]]:
        with self.connect(read_only=True) as con:
            query = (
                "SELECT doc_id, uri, change, state, reason, duplicate_of, chunks, similarity "
                "FROM document_states WHERE run_id = ?"
            )
            params: list[Any] = [run_id]
            if state:
                query += " AND state = ?"
                params.append(state)
            rows = con.execute(query + " ORDER BY doc_id", params).fetchall()
        keys = ["doc_id", "uri", "change", "state", "reason", "duplicate_of", "chunks", "similarity"]
        return [dict(zip(keys, row)) for row in rows]
