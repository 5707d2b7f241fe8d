"""Hybrid search (vectors and BM25 full text) over the served table version."""

from __future__ import annotations

from typing import Any

from rag_pipeline.config import PipelineConfig
from rag_pipeline.index import ChunkIndex
from rag_pipeline.runner import workspace_for


def embed_query(config: PipelineConfig, query: str):
    from operators.models import load_sentence_transformer

    embed_args = next(step["embed"] for step in config.pipeline if "embed" in step)
    model = load_sentence_transformer(embed_args.model, getattr(embed_args, "device", "cpu"))
    return model.encode([query], normalize_embeddings=getattr(embed_args, "normalize", True))[0]


def search(config: PipelineConfig, query: str, k: int = 5, version: int | None = None) -> dict[str, Any]:
    """Return `{"version", "hits": [{"doc_id", "chunk_id", "uri", "score", "text", "metadata"}]}`."""
    if not query.strip():
        raise ValueError("the search query is empty")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    index = ChunkIndex(workspace_for(config).lance_dir)
    vector = embed_query(config, query)
    served, hits = index.search(vector, query, k, version=version)
    return {"version": served, "hits": hits}
