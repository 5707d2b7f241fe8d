"""Executors run the same operators in a local process pool or on a Ray cluster."""

from __future__ import annotations

from operators.context import EmbeddingCache
from rag_pipeline.config import LocalExecutorConfig, PipelineConfig
from rag_pipeline.executors.base import ExecutionResult, Executor


def make_executor(
    config: PipelineConfig,
    embedding_cache: EmbeddingCache | None = None,
    show_progress: bool = True,
    keep_open: bool = False,
) -> Executor:
    """Build the configured executor.

    With `keep_open`, a Ray executor keeps its Ray session between `execute` calls until `close`.
    The local executor starts a pool sized for each call either way.
    """
    settings = config.executor
    if isinstance(settings, LocalExecutorConfig):
        from rag_pipeline.executors.local import LocalExecutor

        return LocalExecutor(
            workers=settings.workers, batch_size=settings.batch_size,
            embedding_cache=embedding_cache, show_progress=show_progress,
        )
    try:
        from rag_pipeline.executors.ray_executor import RayExecutor
    except ImportError as err:
        raise RuntimeError(
            f"executor.type 'ray' needs Ray ({err}); install it with `pip install 'ragpipe[ray]'`"
        ) from err
    return RayExecutor(
        settings, embedding_cache=embedding_cache, show_progress=show_progress, keep_session=keep_open
    )


__all__ = ["ExecutionResult", "Executor", "make_executor"]
