"""What runs on Ray workers: the row format of documents, map stages and model stages.

Documents travel through Ray Data as rows of four columns. `key` is the document's position in
the run and fixes the order. `doc` is the pickled `Document`, and `pending` tells whether
operators still have work on it. `stats` contains pickled operator counters; each batch carries
them on its first row, and the driver sums them. Before a global operator that has a
`prepare_function()`, a fifth column `prepared` carries that function's result per document.

A map stage runs as a Ray Data task per batch that hands the batch to a separate Ray task and
waits for it. When that task's worker dies (a parser segfault, the out-of-memory killer) Ray runs
it once more; if it dies again, or runs past the stage's time limit, the batch is re-run one
document at a time and only the document that fails alone is quarantined, with error class
`crash` or `timeout`, as in the local executor.
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pyarrow as pa
import ray
from ray.exceptions import (
    LocalRayletDiedError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    TaskCancelledError,
    WorkerCrashedError,
)

from operators.base import Operator
from operators.records import Document
from rag_pipeline.executors.base import prepare_documents
from rag_pipeline.executors.ray_cache import BrokeredCache

logger = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [("key", pa.string()), ("doc", pa.large_binary()), ("pending", pa.bool_()), ("stats", pa.large_binary())]
)
StageStats = dict[int, Counter]  # pipeline position of an operator -> its counters
# Optional fifth column: pickled results of a global operator's `prepare_function()`.
PREPARED_COLUMN = "prepared"

# Ray re-runs a task whose worker died this many times before the batch is split up.
_TASK_MAX_RETRIES = 1
# Failures that end a task's worker rather than raise inside the operator.
_WORKER_FAILURES = (
    WorkerCrashedError, OutOfMemoryError, NodeDiedError, LocalRayletDiedError, ObjectLostError, TaskCancelledError,
)
# Stages whose operators a worker keeps set up, so a tokenizer or model loads once per worker.
_MAX_CACHED_STAGES = 8


@dataclass(frozen=True)
class StageSpec:
    """The description of one stage that a worker needs to run it."""

    token: str  # unique per stage and run; keys the worker's cache of set-up operators
    names: str  # operator names joined by "+", for logs and task names
    indexes: tuple[int, ...]  # pipeline positions of the operators
    operators_ref: tuple[Any, ...]  # one ObjectRef in a tuple, so Ray passes it on unresolved
    runtime_env: dict[str, Any] | None
    document_timeout_s: float | None  # the stage's per-document time limit, or None
    batch_grace_s: float  # extra seconds a batch gets on top of its documents' limits
    single_grace_s: float  # extra seconds a one-document retry gets on top of its limit
    # A later global operator's `prepare_function()`, run on each document after the stage's
    # operators, with its results in the `prepared` column; None for most stages.
    prepare: Callable[[Document], Any] | None = None


# ---- rows ---------------------------------------------------------------------------------------


def input_key(position: int) -> str:
    """Return the key of the input document at `position`; keys sort as the run's order."""
    return f"{position:010d}"


def encode_rows(rows: Iterable[tuple[str, Document]], stats: StageStats | None = None) -> pa.Table:
    """Pickle documents into a table; `stats` goes on the first row."""
    return encode_blobs([(key, pickle.dumps(doc, protocol=5), doc.is_pending) for key, doc in rows], stats)


def encode_blobs(rows: list[tuple], stats: StageStats | None = None, prepared: bool = False) -> pa.Table:
    """Build a table from (key, pickled doc, pending) rows.

    With `prepared`, each row has a fourth item, the pickled `prepare_function()` result or b""
    for none, which goes into the `prepared` column.
    """
    stats_column = [b""] * len(rows)
    if stats and rows:
        stats_column[0] = pickle.dumps(stats, protocol=5)
    table = pa.table(
        {
            "key": [row[0] for row in rows],
            "doc": [row[1] for row in rows],
            "pending": [row[2] for row in rows],
            "stats": stats_column,
        },
        schema=SCHEMA,
    )
    if prepared:
        table = table.append_column(PREPARED_COLUMN, pa.array([row[3] for row in rows], type=pa.large_binary()))
    return table


def decode_docs(table: pa.Table) -> list[tuple[str, Document]]:
    return [(key, pickle.loads(blob)) for key, blob in zip(table.column("key").to_pylist(), table.column("doc").to_pylist())]


def decode_stats(table: pa.Table) -> StageStats:
    stats: StageStats = {}
    for blob in table.column("stats").to_pylist():
        if blob:
            merge_stats(stats, pickle.loads(blob))
    return stats


def merge_stats(into: StageStats, more: StageStats) -> None:
    for index, counter in more.items():
        into.setdefault(index, Counter()).update(counter)


def assign_keys(inputs: list[tuple[str, Document]], outputs: list[Document]) -> list[tuple[str, Document]]:
    """Key each output document, so sorting by key gives the order the operators returned.

    An input document keeps its key. A new document (an archive member, an attachment) gets the key
    of its parent, or else of the document before it, plus a suffix. Children therefore sort right
    after their parent, in the order they were produced, wherever the batch boundaries fall.
    """
    key_of_input = {id(doc): key for key, doc in inputs}
    key_by_doc_id = {doc.doc_id: key for key, doc in inputs}
    children_of: Counter[str] = Counter()
    previous = inputs[0][0] if inputs else input_key(0)
    keyed = []
    for doc in outputs:
        key = key_of_input.get(id(doc))
        if key is None:
            anchor = key_by_doc_id.get(doc.parent_id or "", previous)
            key = f"{anchor}.{children_of[anchor]:06d}"
            children_of[anchor] += 1
            key_by_doc_id.setdefault(doc.doc_id, key)
        keyed.append((key, doc))
        previous = key
    keyed.sort(key=lambda item: item[0])
    return keyed


# ---- operators on a worker ----------------------------------------------------------------------

_STAGE_OPERATORS: OrderedDict[str, list[Operator]] = OrderedDict()


def _stage_operators(spec: StageSpec) -> list[Operator]:
    operators = _STAGE_OPERATORS.get(spec.token)
    if operators is None:
        # As in the local executor's workers: pypdf logs every repaired object, while the
        # document's state already says whether it parsed.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
        operators = ray.get(spec.operators_ref[0])
        for op in operators:
            op.ensure_setup()
        _STAGE_OPERATORS[spec.token] = operators
        while len(_STAGE_OPERATORS) > _MAX_CACHED_STAGES:
            _STAGE_OPERATORS.popitem(last=False)
    return operators


@ray.remote
def _run_operators(spec: StageSpec, keys: list[str], blobs: list[bytes]) -> tuple[list[tuple[str, bytes, bool]], StageStats]:
    operators = _stage_operators(spec)
    inputs = [(key, pickle.loads(blob)) for key, blob in zip(keys, blobs)]
    docs = [doc for _, doc in inputs]
    stats: StageStats = {}
    for index, op in zip(spec.indexes, operators):
        docs = op.process_batch(docs)
        stats[index] = op.take_stats()
    keyed = assign_keys(inputs, docs)
    rows = [(key, pickle.dumps(doc, protocol=5), doc.is_pending) for key, doc in keyed]
    if spec.prepare is not None:
        results = prepare_documents(spec.prepare, [doc for _, doc in keyed])
        rows = [(*row, _encode_prepared(result)) for row, result in zip(rows, results)]
    return rows, stats


# ---- map stages -----------------------------------------------------------------------------------


class _TaskFailed(Exception):
    def __init__(self, error_class: str, detail: str) -> None:
        super().__init__(detail)
        self.error_class = error_class
        self.detail = detail


def map_stage_batch(batch: pa.Table, spec: StageSpec) -> pa.Table:
    """Run a map stage over one Ray Data batch (the Ray Data task function)."""
    stats = decode_stats(batch)
    keys = batch.column("key").to_pylist()
    blobs = batch.column("doc").to_pylist()
    pending = batch.column("pending").to_pylist()
    rows = [(key, blob, False) for key, blob, is_pending in zip(keys, blobs, pending) if not is_pending]
    todo_keys = [key for key, is_pending in zip(keys, pending) if is_pending]
    todo_blobs = [blob for blob, is_pending in zip(blobs, pending) if is_pending]
    if todo_keys:
        rows.extend(_run_isolating_failures(spec, todo_keys, todo_blobs, stats))
    rows.sort(key=lambda row: row[0])
    if spec.prepare is None:
        return encode_blobs(rows, stats)
    # Documents that were done before this stage, or quarantined by it, have no result.
    return encode_blobs([row if len(row) == 4 else (*row, b"") for row in rows], stats, prepared=True)


def _run_isolating_failures(spec: StageSpec, keys: list[str], blobs: list[bytes], stats: StageStats):
    limit = spec.document_timeout_s
    timeout = None if limit is None else limit * len(keys) + spec.batch_grace_s
    try:
        return _run_task(spec, keys, blobs, timeout, stats)
    except _TaskFailed as failure:
        if len(keys) == 1:
            return [_quarantine(spec, keys[0], blobs[0], failure, stats)]
        logger.warning(
            "stage %s: a batch of %d documents failed (%s); retrying them one at a time",
            spec.names, len(keys), failure.detail,
        )
    rows = []
    single_timeout = None if limit is None else limit + spec.single_grace_s
    for key, blob in zip(keys, blobs):
        try:
            rows.extend(_run_task(spec, [key], [blob], single_timeout, stats))
        except _TaskFailed as failure:
            rows.append(_quarantine(spec, key, blob, failure, stats))
    return rows


def _run_task(spec: StageSpec, keys: list[str], blobs: list[bytes], timeout: float | None, stats: StageStats):
    task = _run_operators.options(
        num_cpus=1,
        runtime_env=spec.runtime_env or None,
        max_retries=_TASK_MAX_RETRIES,
        retry_exceptions=False,
        name=f"ragpipe:{spec.names}",
    )
    ref = task.remote(spec, keys, blobs)
    # NOTE: the limit counts from submission, so it includes waiting for a free worker.
    ready, _ = ray.wait([ref], timeout=timeout)
    if not ready:
        ray.cancel(ref, force=True)
        raise _TaskFailed("timeout", f"timed out after {timeout:.0f} s")
    try:
        rows, task_stats = ray.get(ref)
    except _WORKER_FAILURES as err:
        raise _TaskFailed("crash", f"{type(err).__name__}: {_first_line(err)}") from err
    merge_stats(stats, task_stats)
    return rows


def _quarantine(spec: StageSpec, key: str, blob: bytes, failure: _TaskFailed, stats: StageStats):
    doc: Document = pickle.loads(blob)
    operator = spec.names.split("+")[0]
    if failure.error_class == "timeout":
        logger.error("stage %s: %s %s; quarantined", spec.names, doc.uri, failure.detail)
        doc.mark_quarantined(
            operator, "timeout",
            f"processing {doc.uri} took longer than {spec.document_timeout_s:.0f} s",
            fix="raise `timeout_s` of the operator if the file is just large, or remove the file",
        )
    else:
        logger.error("stage %s: the Ray worker died on %s (%s); quarantined", spec.names, doc.uri, failure.detail)
        doc.mark_quarantined(
            operator, "crash",
            f"the Ray worker process died while processing {doc.uri} ({failure.detail})",
            fix="the file likely triggers a bug in a parser library; check it opens in its own application",
        )
    stats.setdefault(spec.indexes[0], Counter())[f"quarantined_{failure.error_class}"] += 1
    return key, pickle.dumps(doc, protocol=5), False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no details"


# ---- the parallel part of global stages -----------------------------------------------------------

def prepare_stage_batch(batch: pa.Table, function: Callable[[Document], Any]) -> pa.Table:
    """Add the `prepared` column: a global operator's `prepare_function()` result per row, pickled.

    Runs as a Ray Data task where the batch is, for a global operator that no map stage can run
    the function for (see `StageSpec.prepare`).
    """
    docs = [doc for _, doc in decode_docs(batch)]
    results = prepare_documents(function, docs)
    column = pa.array([_encode_prepared(result) for result in results], type=pa.large_binary())
    return batch.append_column(PREPARED_COLUMN, column)


def decode_prepared(table: pa.Table) -> list[Any] | None:
    """Return the unpickled `prepared` column (None where a row has no result), or None without it."""
    if PREPARED_COLUMN not in table.column_names:
        return None
    return [pickle.loads(blob) if blob else None for blob in table.column(PREPARED_COLUMN).to_pylist()]


def _encode_prepared(result: Any) -> bytes:
    return b"" if result is None else pickle.dumps(result, protocol=5)


# ---- model stages -------------------------------------------------------------------------------


class ModelStage:
    """A Ray Data actor that loads a model operator once and runs it on every batch it gets."""

    def __init__(self, spec: StageSpec, broker: Any = None) -> None:
        self.spec = spec
        (self.op,) = ray.get(spec.operators_ref[0])
        if broker is not None and hasattr(self.op, "attach_cache"):
            self.op.attach_cache(BrokeredCache(broker))
        self.op.ensure_setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        stats = decode_stats(batch)
        rows = decode_docs(batch)
        pending = [(key, doc) for key, doc in rows if doc.is_pending]
        done = [(key, doc) for key, doc in rows if not doc.is_pending]
        if pending:
            outputs = self.op.process_batch([doc for _, doc in pending])
            done.extend(assign_keys(pending, outputs))
            merge_stats(stats, {self.spec.indexes[0]: self.op.take_stats()})
        done.sort(key=lambda item: item[0])
        return encode_rows(done, stats)
