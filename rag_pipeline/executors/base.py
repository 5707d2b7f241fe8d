"""What every executor shares: splitting a pipeline into stages and merging operator counters.

An executor decides where each operator runs. Consecutive `map` operators fuse into one stage that
runs in workers; a `global` operator is a barrier that sees every document in doc-id order in one
place; a `model` operator runs where its model is loaded once. Executors stream documents in
bounded batches and hand finished batches to a sink.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from operators.base import GlobalOperator, Operator
from operators.context import EmbeddingCache, RunContext
from operators.records import Document

logger = logging.getLogger(__name__)

Sink = Callable[[list[Document]], None]


@dataclass
class Stage:
    kind: str  # "map" | "global" | "model"
    operators: list[Operator]
    indexes: list[int]  # positions of the operators in the pipeline

    @property
    def names(self) -> str:
        return "+".join(op.name for op in self.operators)

    def document_timeout_s(self) -> float | None:
        """Return the sum of the per-document time limits its operators declare, or None."""
        limits = [op.document_timeout_s() for op in self.operators if hasattr(op, "document_timeout_s")]
        limits = [limit for limit in limits if limit]
        return float(sum(limits)) if limits else None


def split_stages(operators: list[Operator]) -> list[Stage]:
    stages: list[Stage] = []
    for index, op in enumerate(operators):
        if op.kind == "map" and stages and stages[-1].kind == "map":
            stages[-1].operators.append(op)
            stages[-1].indexes.append(index)
        else:
            stages.append(Stage(op.kind, [op], [index]))
    return stages


@dataclass
class ExecutionResult:
    stats: list[Counter] = field(default_factory=list)  # one Counter per pipeline operator


class Executor(ABC):
    """Runs a pipeline over a stream of documents."""

    def __init__(self, embedding_cache: EmbeddingCache | None = None) -> None:
        self.embedding_cache = embedding_cache

    @abstractmethod
    def execute(
        self,
        docs: Iterable[Document],
        operators: list[Operator],
        context: RunContext,
        sink: Sink,
        total: int | None = None,
    ) -> ExecutionResult:
        """Run `operators` over `docs` and pass every document, in any terminal state, to `sink`."""

    def close(self) -> None:
        """Release workers and clusters."""


def batched(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def rebatch_by_chunks(batches: Iterable[list[Document]], min_chunks: int) -> Iterator[list[Document]]:
    """Group document batches so each group carries at least `min_chunks` chunks (the last may carry fewer)."""
    group: list[Document] = []
    count = 0
    for batch in batches:
        for doc in batch:
            group.append(doc)
            count += len(doc.chunks)
            if count >= min_chunks:
                yield group
                group, count = [], 0
    if group:
        yield group


def run_global_stage(
    stage: Stage, batches: Iterable[list[Document]], context: RunContext, stats: list[Counter]
) -> list[Document]:
    """Run a global operator over all documents in order; return them after `finish()`."""
    op = stage.operators[0]
    assert isinstance(op, GlobalOperator), f"{op.name} is not a GlobalOperator"
    op.ensure_setup()
    op.begin(context)
    seen: list[Document] = []
    for batch in batches:
        seen.extend(op.process_batch(batch))
    op.finish()
    stats[stage.indexes[0]].update(op.take_stats())
    logger.info("global stage %s done over %d documents", op.name, len(seen))
    return seen


@dataclass(frozen=True)
class PrepareFailure:
    """The error of a `prepare_function()` call on one document, as a worker reports it."""

    error: str


def prepare_documents(function: Callable[[Document], Any], docs: list[Document]) -> list[Any]:
    """Run a global operator's `prepare_function()` on each pending document of a batch.

    Returns one result per document: None for a document that is not pending, and a
    `PrepareFailure` where the function raised, so one bad document does not fail the batch.
    """
    results: list[Any] = []
    for doc in docs:
        if not doc.is_pending:
            results.append(None)
            continue
        try:
            results.append(function(doc))
        except Exception as err:  # noqa: BLE001 - one bad document must not stop the run
            logger.exception("preparing %s for a global operator failed", doc.uri)
            results.append(PrepareFailure(f"{type(err).__name__}: {err}"))
    return results


def run_prepared_global_stage(
    stage: Stage,
    batches: Iterable[tuple[list[Document], list[Any]]],
    context: RunContext,
    stats: list[Counter],
) -> list[Document]:
    """Run a global operator over documents whose `prepare_function()` results are known.

    `batches` yields documents in order with one result each. A document whose result is a
    `PrepareFailure` is quarantined with error class `operator_error`, as `process_batch` does.
    """
    op = stage.operators[0]
    assert isinstance(op, GlobalOperator), f"{op.name} is not a GlobalOperator"
    op.ensure_setup()
    op.begin(context)
    seen: list[Document] = []
    for docs, results in batches:
        for doc, result in zip(docs, results, strict=True):
            if isinstance(result, PrepareFailure):
                op.stats["in"] += 1
                doc.mark_quarantined(
                    op.name, "operator_error", result.error,
                    fix="this is likely a bug in the operator; report it with the file attached",
                )
                op.count_outcome(doc)
        results = [None if isinstance(result, PrepareFailure) else result for result in results]
        seen.extend(op.process_prepared(docs, results))
    op.finish()
    stats[stage.indexes[0]].update(op.take_stats())
    logger.info("global stage %s done over %d documents", op.name, len(seen))
    return seen


def stream_global_stage(
    stage: Stage, batches: Iterable[list[Document]], context: RunContext, stats: list[Counter]
) -> Iterator[list[Document]]:
    """Run a streaming global operator in order, passing each batch on as soon as it is decided."""
    op = stage.operators[0]
    op.ensure_setup()
    op.begin(context)
    for batch in batches:
        yield op.process_batch(batch)
    op.finish()
    stats[stage.indexes[0]].update(op.take_stats())


def attach_cache(operators: list[Operator], cache: EmbeddingCache | None) -> None:
    if cache is None:
        return
    for op in operators:
        if hasattr(op, "attach_cache"):
            op.attach_cache(cache)
