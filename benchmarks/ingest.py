"""Full-pipeline throughput against the embedding floor on the same chunks.

The floor is the bundled model encoding exactly the chunk texts the pipeline produced, with the same
batch size, in this process. The target is a full pipeline at most 1.15x the floor.

    python -m benchmarks.ingest --docs 1000
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from benchmarks.common import machine, peak_rss_mib, quickstart_pipeline, timer, write_scifact_files


def measure(docs_dir: Path, workspace: Path, workers: int) -> dict:
    from operators.models import load_sentence_transformer
    from rag_pipeline.config import config_from_dict
    from rag_pipeline.index import ChunkIndex
    from rag_pipeline.runner import RunOptions, run_pipeline

    config = config_from_dict(quickstart_pipeline(workspace, docs_dir, workers), base_dir=workspace.parent)
    with timer() as load:
        model = load_sentence_transformer("all-MiniLM-L6-v2", "cpu")  # same cache key as the embed step
    with timer() as full:
        summary = run_pipeline(config, RunOptions(show_progress=False))
    texts = ChunkIndex(workspace / "lance").open().to_arrow().column("text").to_pylist()
    with timer() as floor:
        model.encode(texts, batch_size=64, normalize_embeddings=True)
    documents = summary.documents["seen"]
    return {
        "documents": documents,
        "chunks": len(texts),
        "full_seconds": round(full["seconds"], 2),
        "floor_seconds": round(floor["seconds"], 2),
        "model_load_seconds": round(load["seconds"], 2),
        "documents_per_second": round(documents / full["seconds"], 1),
        "chunks_per_second": round(len(texts) / full["seconds"], 1),
        "ratio_to_floor": round(full["seconds"] / floor["seconds"], 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents to index (default 1000)")
    parser.add_argument("--folder", type=Path, help="index this folder instead of SciFact")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        docs_dir = args.folder or tmp_path / "docs"
        if args.folder is None:
            write_scifact_files(docs_dir, args.docs)
        result = measure(docs_dir, tmp_path / "ws", args.workers)
    print(json.dumps({"machine": machine(), "corpus": str(args.folder or f"scifact[:{args.docs}]"), **result}, indent=2))


if __name__ == "__main__":
    main()
