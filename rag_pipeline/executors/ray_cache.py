"""The driver's embedding cache, made reachable from Ray actors.

The embedding cache is a Lance table in the workspace, written only by the driver (the run's one
writer). Embedding actors may run on nodes that cannot see the workspace, so they reach the
driver's cache through a small broker actor. An actor's `get_many` or `put_many` call waits in the
broker until a thread in the driver takes it, runs it on the real cache and returns the result.
Lookups, the cache's write buffer and its hit counters therefore behave as with the local
executor, at the cost of one round trip through the broker per embedded batch.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from typing import Any

import ray

from operators.context import EmbeddingCache

logger = logging.getLogger(__name__)

_ALLOWED_METHODS = ("get_many", "put_many")
# How long the driver thread waits for requests before it checks whether it should stop.
_POLL_S = 0.5


@ray.remote(num_cpus=0, max_restarts=0)
class CacheBroker:
    """A queue of cache calls from embedding actors, which the driver takes and returns results for."""

    def __init__(self) -> None:
        self._requests: asyncio.Queue = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()

    async def call(self, method: str, args: tuple) -> Any:
        """Queue a call for the driver and return its result (called by embedding actors)."""
        future = asyncio.get_running_loop().create_future()
        request_id = next(self._ids)
        self._waiting[request_id] = future
        await self._requests.put((request_id, method, args))
        return await future

    async def take(self, wait_s: float) -> list[tuple[int, str, tuple]]:
        """Return the queued calls, waiting up to `wait_s` seconds for the first (called by the driver)."""
        try:
            first = await asyncio.wait_for(self._requests.get(), wait_s)
        except asyncio.TimeoutError:
            return []
        requests = [first]
        while not self._requests.empty():
            requests.append(self._requests.get_nowait())
        return requests

    async def answer(self, request_id: int, result: Any, error: str | None) -> None:
        future = self._waiting.pop(request_id, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(RuntimeError(error))
        else:
            future.set_result(result)


class BrokeredCache:
    """An `EmbeddingCache` for a Ray actor that forwards every call to the driver's cache."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    def get_many(self, model_fp: str, text_hashes: list[str]) -> dict[str, Any]:
        return ray.get(self._broker.call.remote("get_many", (model_fp, text_hashes)))

    def put_many(self, model_fp: str, vectors: dict[str, Any]) -> None:
        # Waiting keeps a later lookup from this actor behind its own write.
        ray.get(self._broker.call.remote("put_many", (model_fp, vectors)))


class CacheServer:
    """A broker actor plus the driver thread that runs its queued calls on `cache`."""

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache
        self.broker = CacheBroker.remote()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ragpipe-embedding-cache", daemon=True)
        self.calls = 0
        self.failure: BaseException | None = None

    def start(self) -> CacheServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=_POLL_S * 4 + 5)
        ray.kill(self.broker)
        logger.info("embedding cache broker handled %d calls", self.calls)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                requests = ray.get(self.broker.take.remote(_POLL_S))
            except Exception as err:  # noqa: BLE001 - the broker died; embedding calls fail and the run reports them
                if not self._stop.is_set():
                    logger.error("the embedding cache broker failed: %s", err)
                    self.failure = err
                return
            for request_id, method, args in requests:
                self._answer(request_id, method, args)

    def _answer(self, request_id: int, method: str, args: tuple) -> None:
        self.calls += 1
        if method not in _ALLOWED_METHODS:
            self.broker.answer.remote(request_id, None, f"unknown embedding cache method {method!r}")
            return
        try:
            result = getattr(self.cache, method)(*args)
        except Exception as err:  # noqa: BLE001 - reported to the calling actor, which raises it
            logger.exception("embedding cache %s failed", method)
            self.broker.answer.remote(request_id, None, f"embedding cache {method} failed: {type(err).__name__}: {err}")
            return
        self.broker.answer.remote(request_id, result, None)
