"""Refresh cost on SciFact written as one file per document.

Scenarios: full build, no-change rerun, rerun after editing 1% of the files, rerun after deleting 1%.
Each rerun's wall time is reported as a share of the full build, with the chunks it embedded and
the number of chunk texts that really changed. Targets: no-change rerun at most 2% of the full
build; 1% edited at most 5%, embedding only the changed chunk texts.

    python -m benchmarks.incremental --docs 5183
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.common import machine, quickstart_pipeline, timer, write_scifact_files


def _chunk_texts(workspace: Path) -> Counter:
    from rag_pipeline.index import ChunkIndex

    return Counter(ChunkIndex(workspace / "lance").open_served().to_arrow().column("text").to_pylist())


def run_scenarios(docs_dir: Path, workspace: Path, seed: int = 13) -> dict:
    from operators.models import load_sentence_transformer
    from rag_pipeline.config import config_from_dict
    from rag_pipeline.runner import RunOptions, run_pipeline

    load_sentence_transformer("all-MiniLM-L6-v2", "cpu")  # same cache key as embed: load once, outside every timing
    config = config_from_dict(quickstart_pipeline(workspace, docs_dir), base_dir=workspace.parent)
    options = RunOptions(show_progress=False)
    results = {}

    with timer() as full:
        summary = run_pipeline(config, options)
    results["full_build"] = {"seconds": round(full["seconds"], 2), "embedded": summary.chunks["embedded"]}

    with timer() as rerun:
        summary = run_pipeline(config, options)
    results["no_change"] = {
        "seconds": round(rerun["seconds"], 3), "share_of_full": round(rerun["seconds"] / full["seconds"], 4),
        "embedded": summary.chunks["embedded"],
    }

    files = sorted(docs_dir.iterdir())
    rng = random.Random(seed)
    edited = rng.sample(files, max(1, len(files) // 100))
    before = _chunk_texts(workspace)
    for path in edited:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.rstrip() + " This sentence was added by the refresh benchmark.\n", encoding="utf-8")
    with timer() as edit:
        summary = run_pipeline(config, options)
    after = _chunk_texts(workspace)
    results["edit_1pct"] = {
        "files": len(edited), "seconds": round(edit["seconds"], 3),
        "share_of_full": round(edit["seconds"] / full["seconds"], 4),
        "embedded": summary.chunks["embedded"], "changed_chunk_texts": len(set(after) - set(before)),
    }

    remaining = [p for p in files if p not in edited]
    deleted = rng.sample(remaining, max(1, len(files) // 100))
    for path in deleted:
        path.unlink()
    with timer() as delete:
        summary = run_pipeline(config, options)
    results["delete_1pct"] = {
        "files": len(deleted), "seconds": round(delete["seconds"], 3),
        "share_of_full": round(delete["seconds"] / full["seconds"], 4),
        "embedded": summary.chunks["embedded"], "deleted": summary.documents["deleted"],
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5183, help="SciFact documents (default: all 5183)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        count = write_scifact_files(tmp_path / "docs", args.docs)
        results = run_scenarios(tmp_path / "docs", tmp_path / "ws")
    print(json.dumps({"machine": machine(), "documents": count, **results}, indent=2))


if __name__ == "__main__":
    main()
