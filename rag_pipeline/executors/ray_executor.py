"""Ray executor: the same operators as the local executor, on a local Ray or a Ray cluster.

Stages run on Ray Data. Consecutive map operators run as `map_batches` tasks over blocks of
documents (see `ray_stages` for how a worker crash or a time-out is isolated to one document). A
model operator (`embed`) runs on a fixed pool of actors, each of which loads the model once. A
global operator (deduplication) is a barrier: every document is collected in the driver, sorted
into the run's order and passed through the operator there, exactly as the local executor does,
before the following stages continue on Ray. When the operator has a `prepare_function()` (the
MinHash signature of `dedupe_minhash`), the map stage before it runs that function in its Ray
tasks, past global operators that keep the text, so the driver only clusters the results.

Order is deterministic: Ray Data keeps block order (`preserve_order`) and every document carries a
key that sorts as the local executor's order, so global operators and the sink see the documents
in the same order on both executors. The sink and the Lance commit stay in the driver.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
import uuid
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import ray
from ray.data import ActorPoolStrategy, DataContext
from ray.util.annotations import RayDeprecationWarning

from operators.base import Operator
from operators.context import EmbeddingCache, RunContext
from operators.records import Document
from rag_pipeline.config import RayExecutorConfig
from rag_pipeline.executors.base import (
    ExecutionResult,
    Executor,
    Sink,
    Stage,
    batched,
    run_global_stage,
    run_prepared_global_stage,
    split_stages,
)
from rag_pipeline.executors.ray_cache import CacheServer
from rag_pipeline.executors.ray_checks import check_cluster, check_runtime_env_syntax
from rag_pipeline.executors.ray_runtime import RaySession, connect
from rag_pipeline.executors.ray_stages import (
    PREPARED_COLUMN,
    ModelStage,
    StageSpec,
    StageStats,
    assign_keys,
    decode_docs,
    decode_prepared,
    decode_stats,
    encode_rows,
    input_key,
    map_stage_batch,
    prepare_stage_batch,
)
from rag_pipeline.executors.runtime_envs import (
    check_runtime_envs_local,
    code_modules_to_ship,
    runtime_env_identity,
)
from rag_pipeline.progress import Progress

logger = logging.getLogger(__name__)

__all__ = ["RayExecutor", "check_runtime_envs_local", "plan_ray_stages"]

# Documents per batch of a model stage: larger than map batches, so each forward pass of the
# model gets enough chunks even when documents are short.
_MODEL_BATCH_MIN_DOCS = 64
# Extra seconds a map batch gets on top of its documents' limits, for worker start-up and imports.
_TASK_GRACE_S = 60.0
# Extra seconds a one-document retry gets on top of its limit, as in the local executor.
_SINGLE_GRACE_S = 5.0
# Times Ray restarts a dead embedding actor, and re-runs the batch it had, before the run fails.
_ACTOR_MAX_RESTARTS = 2
# Times Ray Data re-runs a map task whose own worker died (the one that waits for the operators).
_MAP_TASK_MAX_RETRIES = 3

Keyed = list[tuple[str, Document]]

# Ray Data loggers that print plan and start-up lines on the console, and the level they get here.
_RAY_DATA_CONSOLE_LOGGERS = {
    "ray.data._internal.execution.streaming_executor": logging.WARNING,
    "ray.data._internal.progress": logging.ERROR,  # "Progress bars disabled", which is intended
}


@dataclass
class RayStage:
    """A stage as the Ray executor runs it: a base `Stage` plus its Ray `runtime_env`."""

    stage: Stage
    runtime_env: dict | None

    @property
    def kind(self) -> str:
        return self.stage.kind


def plan_ray_stages(operators: list[Operator]) -> list[RayStage]:
    """Split the pipeline into stages; map operators fuse only when their `runtime_env` is equal."""
    planned: list[RayStage] = []
    for stage in split_stages(operators):
        if stage.kind != "map":
            planned.append(RayStage(stage, stage.operators[0].runtime_env))
            continue
        for op, index in zip(stage.operators, stage.indexes):
            previous = planned[-1] if planned else None
            if (
                previous is not None
                and previous.kind == "map"
                and previous.stage.indexes[-1] == index - 1
                and runtime_env_identity(previous.stage.operators[0]) == runtime_env_identity(op)
            ):
                previous.stage.operators.append(op)
                previous.stage.indexes.append(index)
            else:
                planned.append(RayStage(Stage("map", [op], [index]), op.runtime_env))
    return planned


class RayExecutor(Executor):
    def __init__(
        self,
        settings: RayExecutorConfig,
        embedding_cache: EmbeddingCache | None = None,
        show_progress: bool = True,
        object_store_memory: int | None = None,
        keep_session: bool = False,
    ) -> None:
        super().__init__(embedding_cache)
        self.settings = settings
        self.show_progress = show_progress
        self.object_store_memory = object_store_memory
        # With keep_session, `execute` leaves Ray running for the next call and `close` stops it,
        # so a run with several work groups (new, re-chunked, re-embedded) starts Ray once.
        self.keep_session = keep_session
        self._session: RaySession | None = None
        self._shipped: frozenset[str] = frozenset()

    def execute(
        self,
        docs: Iterable[Document],
        operators: list[Operator],
        context: RunContext,
        sink: Sink,
        total: int | None = None,
    ) -> ExecutionResult:
        stats = [Counter() for _ in operators]
        items: Keyed = [(input_key(position), doc) for position, doc in enumerate(docs)]
        if not items:
            return ExecutionResult(stats=stats)
        stages = plan_ray_stages(operators)
        check_runtime_env_syntax(operators)
        self._connect(code_modules_to_ship(operators))
        cache_server: CacheServer | None = None
        progress = Progress(total=total, enabled=self.show_progress)
        try:
            specs = [self._stage_spec(stage) for stage in stages]
            check_cluster(self.settings, stages, specs)
            if self.embedding_cache is not None and any(stage.kind == "model" for stage in stages):
                cache_server = CacheServer(self.embedding_cache).start()
            broker = cache_server.broker if cache_server is not None else None
            with _ray_data_context():
                self._run(items, stages, specs, broker, context, sink, stats, progress)
            if cache_server is not None and cache_server.failure is not None:
                raise RuntimeError(f"the embedding cache broker failed: {cache_server.failure}")
        finally:
            progress.close()
            if cache_server is not None:
                cache_server.stop()
            if not self.keep_session:
                self.close()
        return ExecutionResult(stats=stats)

    def _connect(self, modules: list[str]) -> None:
        """Start or join Ray, unless the open session already ships every module in `modules`."""
        if self._session is not None and set(modules) <= self._shipped:
            logger.debug("reusing the Ray session of the previous work group")
            return
        self.close()
        self._session = connect(
            self.settings.address, self.settings.num_cpus, self.settings.include_dashboard,
            self.object_store_memory, [sys.modules[name] for name in modules],
        )
        self._shipped = frozenset(modules)

    def close(self) -> None:
        """Stop the local Ray that `execute` started, or disconnect from the cluster it joined."""
        if self._session is not None:
            session, self._session = self._session, None
            self._shipped = frozenset()
            session.shutdown()

    # ---- running the stages ---------------------------------------------------------------------

    def _run(self, items, stages, specs, broker, context, sink, stats, progress) -> None:
        specs, fused = _fuse_prepare_functions(stages, specs)
        distributed: list[tuple[RayStage, StageSpec]] = []
        prepared: dict[str, object] = {}
        for position, (stage, spec) in enumerate(zip(stages, specs)):
            if stage.kind != "global":
                distributed.append((stage, spec))
                continue
            if distributed:
                items, prepared = self._collect(self._dataset(items, distributed, broker), stats)
                distributed = []
            prepare = stage.stage.operators[0].prepare_function()
            if prepare is None:
                items = self._global_stage(stage, items, context, stats)
                continue
            if position in fused:
                results = [prepared.get(key) for key, _ in items]
            else:
                results = self._prepare_on_workers(stage, items, prepare)
            items = self._prepared_global_stage(stage, items, results, context, stats)
        if distributed:
            outputs = self._stream(self._dataset(items, distributed, broker), stats)
        else:
            outputs = batched((doc for _, doc in items), self.settings.batch_size)
        for batch in outputs:
            sink(batch)
            progress.update(batch)

    def _dataset(self, items: Keyed, stages: list[tuple[RayStage, StageSpec]], broker) -> ray.data.Dataset:
        size = self.settings.batch_size
        blocks = [encode_rows(items[start : start + size]) for start in range(0, len(items), size)]
        dataset = ray.data.from_arrow(blocks)
        # NOTE: Ray Data 2.60 deprecates Ray task and actor options such as max_retries and plans
        # to remove them in Ray 2.64, with no replacement. Without them, Ray retries a worker that
        # crashes on every attempt forever.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RayDeprecationWarning)
            for stage, spec in stages:
                if stage.kind == "map":
                    dataset = dataset.map_batches(
                        map_stage_batch, batch_size=size, batch_format="pyarrow", fn_kwargs={"spec": spec},
                        num_cpus=1, max_retries=_MAP_TASK_MAX_RETRIES,
                    )
                else:
                    dataset = dataset.map_batches(
                        ModelStage, batch_size=max(size, _MODEL_BATCH_MIN_DOCS), batch_format="pyarrow",
                        fn_constructor_kwargs={"spec": spec, "broker": broker},
                        compute=ActorPoolStrategy(size=self.settings.embed_actors),
                        num_cpus=1, num_gpus=self.settings.embed_num_gpus or None,
                        runtime_env=spec.runtime_env or None,
                        max_restarts=_ACTOR_MAX_RESTARTS, max_task_retries=_ACTOR_MAX_RESTARTS,
                    )
        return dataset

    def _stream(self, dataset: ray.data.Dataset, stats: list[Counter]) -> Iterator[list[Document]]:
        """Yield the documents of each output block in order, adding the block's counters to `stats`."""
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            _add_stats(stats, decode_stats(block))
            docs = [doc for _, doc in decode_docs(block)]
            if docs:
                yield docs

    def _collect(self, dataset: ray.data.Dataset, stats: list[Counter]) -> tuple[Keyed, dict[str, object]]:
        """Gather the dataset in the driver, sorted by key, with the `prepared` results by key."""
        items: Keyed = []
        prepared: dict[str, object] = {}
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            _add_stats(stats, decode_stats(block))
            rows = decode_docs(block)
            items.extend(rows)
            results = decode_prepared(block)
            if results is not None:
                prepared.update((key, result) for (key, _), result in zip(rows, results) if result is not None)
        items.sort(key=lambda item: item[0])
        return items, prepared

    def _global_stage(self, stage: RayStage, items: Keyed, context: RunContext, stats: list[Counter]) -> Keyed:
        if stage.runtime_env:
            check_runtime_envs_local(stage.stage.operators, "the driver (where the Ray executor runs global operators)")
        batches = batched((doc for _, doc in items), self.settings.batch_size)
        outputs = run_global_stage(stage.stage, batches, context, stats)
        return assign_keys(items, outputs)

    def _prepare_on_workers(self, stage: RayStage, items: Keyed, prepare) -> list[object]:
        """Run a `prepare_function()` in Ray tasks over documents that are in the driver.

        Used when no map stage runs right before the global operator to compute it there.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RayDeprecationWarning)
            dataset = self._dataset(items, [], None).map_batches(
                prepare_stage_batch, batch_size=self.settings.batch_size, batch_format="pyarrow",
                fn_kwargs={"function": prepare}, num_cpus=1, max_retries=_MAP_TASK_MAX_RETRIES,
                **({"runtime_env": stage.runtime_env} if stage.runtime_env else {}),
            )
        prepared: dict[str, object] = {}
        for block in dataset.select_columns(["key", PREPARED_COLUMN]).iter_batches(batch_size=None, batch_format="pyarrow"):
            keys = block.column("key").to_pylist()
            prepared.update(zip(keys, decode_prepared(block)))
        return [prepared.get(key) for key, _ in items]

    def _prepared_global_stage(
        self, stage: RayStage, items: Keyed, results: list[object], context: RunContext, stats: list[Counter]
    ) -> Keyed:
        """Run a global operator in the driver on `prepare_function()` results computed on Ray."""
        if stage.runtime_env:
            check_runtime_envs_local(stage.stage.operators, "the driver (where the Ray executor runs global operators)")
        docs = [doc for _, doc in items]
        size = self.settings.batch_size
        batches = ((docs[start : start + size], results[start : start + size]) for start in range(0, len(docs), size))
        outputs = run_prepared_global_stage(stage.stage, batches, context, stats)
        return assign_keys(items, outputs)

    # ---- preparing the stages ---------------------------------------------------------------------

    def _stage_spec(self, stage: RayStage) -> StageSpec:
        # Ship fresh copies built from the arguments, because the driver's instances may contain a
        # loaded model (the runner calls `embed.dimension()`) or an attached embedding cache.
        fresh = [type(op)(op.args) for op in stage.stage.operators]
        return StageSpec(
            token=uuid.uuid4().hex,
            names=stage.stage.names,
            indexes=tuple(stage.stage.indexes),
            operators_ref=(ray.put(fresh),) if stage.kind != "global" else (),
            runtime_env=stage.runtime_env,
            document_timeout_s=stage.stage.document_timeout_s(),
            batch_grace_s=_TASK_GRACE_S,
            single_grace_s=_SINGLE_GRACE_S,
        )


def _fuse_prepare_functions(stages: list[RayStage], specs: list[StageSpec]) -> tuple[list[StageSpec], set[int]]:
    """Give each global operator's `prepare_function()` to the map stage that runs before it.

    Global operators in between must set `keeps_text`, so the documents' text is final when the
    map stage computes the function. Returns the new specs and the positions of the global
    stages whose function a map stage now runs.
    """
    specs = list(specs)
    fused: set[int] = set()
    for position, stage in enumerate(stages):
        if stage.kind != "global":
            continue
        prepare = stage.stage.operators[0].prepare_function()
        if prepare is None:
            continue
        before = position - 1
        while before >= 0 and stages[before].kind == "global" and stages[before].stage.operators[0].keeps_text:
            before -= 1
        if before >= 0 and stages[before].kind == "map" and specs[before].prepare is None:
            specs[before] = dataclasses.replace(specs[before], prepare=prepare)
            fused.add(position)
    return specs, fused


def _add_stats(stats: list[Counter], more: StageStats) -> None:
    for index, counter in more.items():
        stats[index].update(counter)


@contextmanager
def _ray_data_context():
    """Use Ray Data settings for this run only: ordered output, no Ray progress bars or plan logs.

    ragpipe shows its own progress bar over documents; Ray Data's logs stay in the Ray session's
    `logs/ray-data` folder.
    """
    previous = DataContext.get_current()
    context = copy.deepcopy(previous)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    DataContext._set_current(context)
    quieted = {name: logging.getLogger(name) for name in _RAY_DATA_CONSOLE_LOGGERS}
    levels = {name: log.level for name, log in quieted.items()}
    for name, log in quieted.items():
        log.setLevel(max(log.getEffectiveLevel(), _RAY_DATA_CONSOLE_LOGGERS[name]))
    try:
        yield context
    finally:
        DataContext._set_current(previous)
        for name, log in quieted.items():
            log.setLevel(levels[name])
