"""The operator contract and the registry that maps YAML names to operator classes.

Every operator takes a batch of `Document` records and returns a batch. An operator never knows
which executor runs it: executors decide where `process_batch` runs (a worker process, a Ray task
or actor, or the driver) from the operator's `kind`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from operators.records import Document

logger = logging.getLogger(__name__)

# Where an executor runs an operator:
# - "map": stateless per document; runs in worker processes or Ray tasks, fused with its neighbours.
# - "global": needs every document of the run in a deterministic order (deduplication); runs once.
# - "model": loads a large model; runs in the driver (local) or on a Ray actor pool.
OperatorKind = Literal["map", "global", "model"]


class OperatorArgs(BaseModel):
    """Base class for operator arguments.

    Unknown keys are rejected so typos fail at load time. Types are strict: YAML `true` is not a
    number and `"0.9"` is not a float, so a mistyped value fails instead of being coerced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Operator(ABC):
    """Base class of every pipeline step.

    Subclasses set `name`, `Args` and `kind`, and implement `process` (one document) or override
    `process_batch` (a batch). Counters in `stats` record documents in, out and dropped by reason.
    """

    name: ClassVar[str]
    Args: ClassVar[type[OperatorArgs]] = OperatorArgs
    kind: ClassVar[OperatorKind] = "map"
    # Bump when the operator's output changes for the same input, so stored results are redone.
    version: ClassVar[str] = "1"
    # Optional Ray `runtime_env` (pip packages, container image) for this operator's stage.
    runtime_env: ClassVar[dict[str, Any] | None] = None
    # Arguments that do not change the output of documents processed successfully (time limits,
    # passwords); they are left out of `fingerprint()` so changing them re-processes nothing.
    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, args: OperatorArgs | None = None, **kwargs: Any) -> None:
        if args is None:
            args = self.Args(**kwargs)
        elif kwargs:
            raise TypeError(f"{self.name}: pass either an Args instance or keyword arguments")
        self.args = args
        self.stats: Counter[str] = Counter()
        self._ready = False

    # ---- lifecycle ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Load heavy resources (models, tokenizers). Called once per process before the first batch."""

    def ensure_setup(self) -> None:
        if not self._ready:
            self.setup()
            self._ready = True

    # ---- processing ---------------------------------------------------------------------------

    def process(self, doc: Document) -> Document | list[Document]:
        """Process one pending document. Return it (changed in place or not) and any new children."""
        raise NotImplementedError(f"operator {self.name!r} implements neither process nor process_batch")

    def process_batch(self, docs: list[Document]) -> list[Document]:
        """Process a batch. Documents already in a terminal state pass through untouched."""
        self.ensure_setup()
        out: list[Document] = []
        for doc in docs:
            if not doc.is_pending:
                out.append(doc)
                continue
            self.stats["in"] += 1
            try:
                result = self.process(doc)
            except Exception as err:  # noqa: BLE001 - one bad document must not stop the run
                logger.exception("operator %s failed on %s", self.name, doc.uri)
                doc.mark_quarantined(
                    self.name, "operator_error", f"{type(err).__name__}: {err}",
                    fix="this is likely a bug in the operator; report it with the file attached",
                )
                result = doc
            produced = result if isinstance(result, list) else [result]
            for item in produced:
                if item is not doc and item.is_pending:
                    self.stats["children"] += 1
                out.append(item)
            self.count_outcome(doc)
        return out

    def count_outcome(self, doc: Document) -> None:
        """Record whether `doc` left this operator pending (out) or dropped, and why."""
        if doc.is_pending:
            self.stats["out"] += 1
        elif doc.quarantine is not None:
            self.stats[f"quarantined_{doc.quarantine.error_class}"] += 1
        else:
            self.stats[f"dropped_{doc.state}"] += 1

    # ---- identity -----------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Return a short hash of the operator's name, version and arguments."""
        payload = json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "args": self.args.model_dump(mode="json", exclude=set(self.fingerprint_exclude)),
                "extra": self.fingerprint_extra(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def fingerprint_extra(self) -> dict[str, Any]:
        """Return what else decides this operator's output, such as a tokenizer's content hash."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.args.model_dump(mode="json")}

    def take_stats(self) -> Counter[str]:
        """Return the counters gathered since the last call and reset them."""
        stats, self.stats = self.stats, Counter()
        return stats


class GlobalOperator(Operator):
    """An operator that must see every document of a run, in order, in a single place.

    The executor calls `begin(context)`, then `process_batch` on batches in document-id order, then
    `finish()`, which may change the state of documents it saw earlier (for example when a later
    document turns out to be the better keeper of a duplicate cluster).
    """

    kind: ClassVar[OperatorKind] = "global"
    # True when the operator decides each document as it arrives and `finish()` changes no
    # earlier decision; executors may then pass batches on at once instead of waiting for all.
    streaming: ClassVar[bool] = False
    # True when the operator never changes a document's text or sections (it may set the state and
    # metadata). Executors may then run a later global operator's `prepare_function()` before it.
    keeps_text: ClassVar[bool] = False

    def begin(self, context: Any) -> None:
        """Receive the run context (prior workspace state) before the first batch."""

    def finish(self) -> None:
        """Complete any decisions that needed all documents."""

    def prepare_function(self) -> Callable[[Document], Any] | None:
        """Return the per-document part of the work as a picklable pure function, or None.

        An executor that has documents spread over workers may run this function on each pending
        document where the document is, and then call `process_prepared(docs, results)` in place
        of `process_batch(docs)`. Both paths must give the same decisions. The function may read
        only the document's text and sections, because an executor may run it before earlier
        global operators that set `keeps_text`.
        """
        return None

    def process_prepared(self, docs: list[Document], results: list[Any]) -> list[Document]:
        """Process a batch whose `prepare_function()` results were computed elsewhere.

        `results[i]` belongs to `docs[i]` and is None for a document that was not pending.
        """
        raise NotImplementedError(f"operator {self.name!r} has no prepare_function")


# ---- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Operator]] = {}


class RegistryError(ValueError):
    """An operator name is unknown or registered twice."""


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator that registers an operator under its `name`."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise RegistryError(f"{cls.__qualname__} must set a string class attribute `name`")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise RegistryError(
            f"operator name {name!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}; choose another name for "
            f"{cls.__module__}.{cls.__qualname__}"
        )
    _REGISTRY[name] = cls
    return cls


def get_operator_class(name: str) -> type[Operator]:
    load_builtin_operators()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise RegistryError(f"unknown operator {name!r}; known operators: {known}") from None


def registered_names() -> list[str]:
    load_builtin_operators()
    return sorted(_REGISTRY)


def builtin_names() -> list[str]:
    """Return the names of the operators that ship with ragpipe, leaving out custom ones."""
    load_builtin_operators()
    return sorted(
        name for name, cls in _REGISTRY.items()
        if cls.__module__ in _BUILTIN_MODULES or cls.__module__.startswith("operators.parse.")
    )


_BUILTINS_LOADED = False
_BUILTIN_MODULES = (
    "operators.parse",
    "operators.clean",
    "operators.dedupe_exact",
    "operators.dedupe_minhash",
    "operators.dedupe_semantic",
    "operators.chunk",
    "operators.embed",
)


def load_builtin_operators() -> None:
    """Import the built-in operator modules so they register themselves."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib

    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            # Only a missing module of our own is tolerated (an operator not shipped yet).
            if err.name != module:
                raise
