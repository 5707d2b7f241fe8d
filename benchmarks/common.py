"""Helpers shared by the benchmark scripts: corpora, machine description, timing."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCIFACT = SHARED / "eval" / "scifact"


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cores": str(os.cpu_count()), "cpu": cpu, "memory": memory, "python": platform.python_version()}


def write_scifact_files(folder: Path, limit: int | None = None) -> int:
    """Write SciFact abstracts as one text file per document (title, blank line, abstract)."""
    corpus = SCIFACT / "corpus.jsonl"
    if not corpus.exists():
        raise SystemExit(f"SciFact corpus not found at {corpus}; the ../shared folder is required")
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and count >= limit:
                break
            record = json.loads(line)
            text = f"{record.get('title', '').strip()}\n\n{record['text'].strip()}\n"
            (folder / f"{record['_id']}.txt").write_text(text, encoding="utf-8")
            count += 1
    return count


def peak_rss_mib() -> float:
    """Peak resident memory of this process and its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    result: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start


def quickstart_pipeline(workspace: Path, docs: Path, workers: int = 2) -> dict:
    return {
        "name": "bench",
        "workspace": str(workspace),
        "sources": [{"type": "files", "name": "docs", "path": str(docs)}],
        "executor": {"type": "local", "workers": workers, "batch_size": 32},
        "pipeline": [
            {"parse": {}},
            {"clean": {}},
            {"dedupe_exact": {}},
            {"chunk": {"max_tokens": 254, "overlap_tokens": 32}},
            {"embed": {"model": "all-MiniLM-L6-v2", "batch_size": 64}},
        ],
    }
