"""Local executor: a process pool for CPU operators, models in the driver.

Map stages run in a pebble process pool (forkserver start, so workers never inherit the driver's
model threads). A task processes one batch; if the task times out or its worker dies (a parser
segfault, the out-of-memory killer), the batch is re-run one document at a time and only the
document that fails again is quarantined, with error class `timeout` or `crash`.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import Counter, deque
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Iterable, Iterator

from pebble import ProcessExpired, ProcessPool

from operators.base import Operator
from operators.context import EmbeddingCache, RunContext
from operators.records import Document
from rag_pipeline.executors.base import (
    ExecutionResult,
    Executor,
    Sink,
    Stage,
    attach_cache,
    batched,
    rebatch_by_chunks,
    run_global_stage,
    split_stages,
    stream_global_stage,
)
from rag_pipeline.executors.runtime_envs import check_runtime_envs_local
from rag_pipeline.progress import Progress

logger = logging.getLogger(__name__)

# Extra seconds a batch task gets on top of its documents' limits, for worker start-up and imports.
_TASK_GRACE_S = 60.0
# Chunks per call to a model operator. The model sorts each call's texts by length before
# batching, so larger calls pad less; the operator batches further inside.
_MODEL_GROUP_CHUNKS = 1024

# ---- worker side ------------------------------------------------------------------------------

_WORKER_OPERATORS: list[Operator] = []


def _init_worker(operators: list[Operator]) -> None:
    global _WORKER_OPERATORS
    _WORKER_OPERATORS = operators
    logging.getLogger().setLevel(logging.WARNING)
    # pypdf warns about every repaired object and missing optional font tool; the document's
    # state already records whether it parsed, so these would only bury the progress bar.
    logging.getLogger("pypdf").setLevel(logging.ERROR)


def _run_map_task(indexes: list[int], docs: list[Document]) -> tuple[list[Document], dict[int, Counter]]:
    stats: dict[int, Counter] = {}
    for index in indexes:
        op = _WORKER_OPERATORS[index]
        docs = op.process_batch(docs)
        stats[index] = op.take_stats()
    return docs, stats


# ---- driver side ------------------------------------------------------------------------------


class LocalExecutor(Executor):
    def __init__(
        self,
        workers: int = 2,
        batch_size: int = 16,
        embedding_cache: EmbeddingCache | None = None,
        show_progress: bool = True,
    ) -> None:
        super().__init__(embedding_cache)
        self.workers = workers
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._pool: ProcessPool | None = None

    def execute(
        self,
        docs: Iterable[Document],
        operators: list[Operator],
        context: RunContext,
        sink: Sink,
        total: int | None = None,
    ) -> ExecutionResult:
        check_runtime_envs_local(operators)  # warns about declared environments it cannot provide
        stats = [Counter() for _ in operators]
        stages = split_stages(operators)
        attach_cache(operators, self.embedding_cache)
        progress = Progress(total=total, enabled=self.show_progress)
        map_operators = [op for op in operators if op.kind == "map"]
        if map_operators:
            # A refresh of a few documents needs one worker, not a pool that imports everything twice.
            batches = -(-total // self.batch_size) if total else self.workers
            self._start_pool(operators, max(1, min(self.workers, batches)))
        try:
            stream: Iterator[list[Document]] = batched(docs, self.batch_size)
            for stage in stages:
                stream = self._stage_stream(stage, stream, context, stats)
            for batch in stream:
                sink(batch)
                progress.update(batch)
        finally:
            progress.close()
            self.close()
        return ExecutionResult(stats=stats)

    def _stage_stream(
        self, stage: Stage, stream: Iterator[list[Document]], context: RunContext, stats: list[Counter]
    ) -> Iterator[list[Document]]:
        if stage.kind == "map":
            return self._map_stage(stage, stream, stats)
        if stage.kind == "global":
            return self._global_stage(stage, stream, context, stats)
        return self._model_stage(stage, stream, stats)

    def _global_stage(self, stage, stream, context, stats) -> Iterator[list[Document]]:
        if getattr(stage.operators[0], "streaming", False):
            # Documents arrive in doc-id order (the pool returns batches in submission order).
            yield from stream_global_stage(stage, stream, context, stats)
            return
        # NOTE: a global stage is a barrier: it keeps every document of the run (text included)
        # in memory until finish(). Spilling to disk would bound memory for very large corpora.
        docs = run_global_stage(stage, stream, context, stats)
        yield from batched(docs, self.batch_size)

    def _model_stage(self, stage, stream, stats) -> Iterator[list[Document]]:
        op = stage.operators[0]
        op.ensure_setup()
        for group in rebatch_by_chunks(stream, _MODEL_GROUP_CHUNKS):
            out = op.process_batch(group)
            stats[stage.indexes[0]].update(op.take_stats())
            yield out

    # ---- map stages in the pool ---------------------------------------------------------------

    def _start_pool(self, operators: list[Operator], workers: int) -> None:
        context = multiprocessing.get_context("forkserver")
        # The fork server imports the operator modules once; each worker then forks with them
        # loaded. This takes effect only where the fork server has not started yet.
        modules = sorted({type(op).__module__ for op in operators if op.kind == "map"})
        context.set_forkserver_preload([__name__, *modules])
        # Workers get only the map operators: a model operator may hold a loaded model.
        worker_operators = [op if op.kind == "map" else None for op in operators]
        self._pool = ProcessPool(
            max_workers=workers, max_tasks=200, initializer=_init_worker,
            initargs=(worker_operators,), context=context,
        )
        self._pool_workers = workers
        logger.info("started %d worker processes", workers)

    def _map_stage(self, stage: Stage, stream: Iterator[list[Document]], stats: list[Counter]) -> Iterator[list[Document]]:
        assert self._pool is not None
        limit = stage.document_timeout_s()
        in_flight: deque = deque()
        max_in_flight = self._pool_workers * 2
        for batch in stream:
            pending = [d for d in batch if d.is_pending]
            in_flight.append((batch, self._submit(stage, pending, limit)))
            while len(in_flight) >= max_in_flight:
                yield self._collect(stage, *in_flight.popleft(), limit, stats)
        while in_flight:
            yield self._collect(stage, *in_flight.popleft(), limit, stats)

    def _submit(self, stage: Stage, docs: list[Document], limit: float | None):
        if not docs:
            return None
        timeout = None if limit is None else limit * len(docs) + _TASK_GRACE_S
        return self._pool.schedule(_run_map_task, args=(stage.indexes, docs), timeout=timeout)

    def _collect(self, stage, batch, future, limit, stats) -> list[Document]:
        done = [d for d in batch if not d.is_pending]
        if future is None:
            return done
        pending = [d for d in batch if d.is_pending]
        try:
            processed, task_stats = future.result()
        except (FutureTimeoutError, ProcessExpired) as err:
            logger.warning(
                "stage %s: a batch of %d documents failed (%s); retrying them one at a time",
                stage.names, len(pending), type(err).__name__,
            )
            processed = self._retry_one_by_one(stage, pending, limit, stats)
            return done + processed
        for index, counter in task_stats.items():
            stats[index].update(counter)
        return done + processed

    def _retry_one_by_one(self, stage, docs, limit, stats) -> list[Document]:
        results: list[Document] = []
        for doc in docs:
            timeout = None if limit is None else limit + 5.0
            future = self._pool.schedule(_run_map_task, args=(stage.indexes, [doc]), timeout=timeout)
            try:
                processed, task_stats = future.result()
            except FutureTimeoutError:
                logger.error("stage %s: %s timed out after %.0f s; quarantined", stage.names, doc.uri, timeout)
                doc.mark_quarantined(
                    stage.operators[0].name, "timeout",
                    f"processing {doc.uri} took longer than {limit:.0f} s",
                    fix="raise `timeout_s` of the operator if the file is just large, or remove the file",
                )
                stats[stage.indexes[0]]["quarantined_timeout"] += 1
                results.append(doc)
                continue
            except ProcessExpired as err:
                logger.error("stage %s: worker died on %s (exit code %s); quarantined", stage.names, doc.uri, err.exitcode)
                doc.mark_quarantined(
                    stage.operators[0].name, "crash",
                    f"the worker process died while processing {doc.uri} (exit code {err.exitcode})",
                    fix="the file likely triggers a bug in a parser library; check it opens in its own application",
                )
                stats[stage.indexes[0]]["quarantined_crash"] += 1
                results.append(doc)
                continue
            for index, counter in task_stats.items():
                stats[index].update(counter)
            results.extend(processed)
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
