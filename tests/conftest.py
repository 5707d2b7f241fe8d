"""Shared fixtures: small pipelines over real components in temporary folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "docs"
SCIFACT = SHARED / "eval" / "scifact"

requires_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"third-party corpus not found at {CORPUS} (the ../shared folder is absent)"
)


def pipeline_dict(
    workspace: Path,
    docs: Path,
    *,
    max_tokens: int = 64,
    overlap_tokens: int = 8,
    workers: int = 1,
    batch_size: int = 4,
    extra_steps: list[dict[str, Any]] | None = None,
    embed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"parse": {}}, {"clean": {}}, {"dedupe_exact": {}}]
    steps += extra_steps or []
    steps += [
        {"chunk": {"max_tokens": max_tokens, "overlap_tokens": overlap_tokens}},
        {"embed": embed or {"model": "all-MiniLM-L6-v2", "batch_size": 32}},
    ]
    return {
        "name": "test",
        "workspace": str(workspace),
        "sources": [{"type": "files", "name": "docs", "path": str(docs)}],
        "executor": {"type": "local", "workers": workers, "batch_size": batch_size},
        "pipeline": steps,
    }


def make_config(raw: dict[str, Any], base: Path):
    from rag_pipeline.config import config_from_dict

    return config_from_dict(raw, base_dir=base)


def run(config, **options):
    from rag_pipeline.runner import RunOptions, run_pipeline

    return run_pipeline(config, RunOptions(show_progress=False, **options))


def chunk_rows(workspace: Path, version: int | None = None) -> list[dict[str, Any]]:
    """Return the chunk rows of the served (or given) version, sorted by chunk_id."""
    from rag_pipeline.index import ChunkIndex

    index = ChunkIndex(Path(workspace) / "lance")
    table = index.open_served() if version is None else index.open()
    if version is not None:
        table.checkout(version)
    rows = table.to_arrow().to_pylist()
    return sorted(rows, key=lambda r: r["chunk_id"])
