"""The Ray executor on a real local Ray: parity with the local executor, failures, rejections.

One local Ray (2 CPUs, small object store) serves the whole module and is started the way the
executor starts its own, so the executors here reuse it. The network check runs a fresh process
that starts and stops a local Ray of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar

import lancedb
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from conftest import chunk_rows  # noqa: E402
from operators.base import GlobalOperator, Operator, OperatorArgs, register  # noqa: E402
from operators.context import RunContext  # noqa: E402
from operators.records import Document, Section  # noqa: E402
from rag_pipeline.config import ConfigError, RayExecutorConfig, config_from_dict  # noqa: E402
from rag_pipeline.executors import ray_executor  # noqa: E402
from rag_pipeline.executors.local import LocalExecutor  # noqa: E402
from rag_pipeline.executors.ray_executor import RayExecutor, check_runtime_envs_local, plan_ray_stages  # noqa: E402
from rag_pipeline.executors.ray_runtime import start_local_ray  # noqa: E402
from rag_pipeline.runner import RunError, RunOptions, run_pipeline  # noqa: E402
from rag_pipeline.state import Manifest  # noqa: E402

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "docs"
EXAMPLE_OPERATORS = REPO / "examples" / "custom_operators"

# Small files of different formats, run through every built-in operator. password.pdf is
# encrypted and gets quarantined, simple.zip expands into member documents, and the two umlauts
# files contain the same text in two encodings, so dedupe_exact marks one a duplicate.
PARITY_FILES = [
    "unstructured/pdf/password.pdf",
    "unstructured/pdf/fake-memo.pdf",
    "unstructured/example-steelJIS-datasheet.html",
    "unstructured/umlauts-utf8.md",
    "unstructured/umlauts-non-utf8.md",
    "unstructured/fake.docx",
    "unstructured/semicolon-delimited.csv",
    "unstructured/eml/fake-email.eml",
    "unstructured/simple.zip",
    "unstructured/language-docs/eng_spa_mult.txt",
]

# Classes defined in this module travel to Ray workers by value, because the workers cannot
# import a test module by name.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ---- operators for the tests ------------------------------------------------------------------


@register
class UpperOperator(Operator):
    name: ClassVar[str] = "test_ray_upper"

    def process(self, doc: Document) -> Document:
        doc.set_text(doc.text.upper())
        self.stats["uppercased"] += 1
        return doc


@register
class ExplodeOperator(Operator):
    """Emit two child documents after each document, like an archive with two members."""

    name: ClassVar[str] = "test_ray_explode"

    def process(self, doc: Document) -> list[Document]:
        children = [
            Document(
                doc_id=f"{doc.doc_id}!/part{i}", uri=f"{doc.uri}!/part{i}", source=doc.source,
                sections=[Section(f"shared part {i}")], parent_id=doc.doc_id,
            )
            for i in range(2)
        ]
        return [doc, *children]


@register
class KeepFirstOperator(GlobalOperator):
    """Mark every document whose text was seen before as a duplicate of the first one."""

    name: ClassVar[str] = "test_ray_keep_first"

    def begin(self, context: Any) -> None:
        self.first: dict[str, str] = {}

    def process(self, doc: Document) -> Document:
        keeper = self.first.setdefault(doc.text, doc.doc_id)
        if keeper != doc.doc_id:
            doc.mark_duplicate(keeper, "same text as an earlier document")
        return doc


def _length_and_pid(doc: Document) -> tuple[int, int]:
    if "unreadable" in doc.text.lower():
        raise ValueError(f"cannot measure {doc.doc_id}")
    return len(doc.text), os.getpid()


@register
class PreparedLengthOperator(GlobalOperator):
    """Record each text length, and the process that measured it, through `prepare_function`."""

    name: ClassVar[str] = "test_ray_prepared_length"

    def prepare_function(self):
        return _length_and_pid

    def process_prepared(self, docs: list[Document], results: list[Any]) -> list[Document]:
        for doc, result in zip(docs, results):
            if doc.is_pending:
                self.stats["in"] += 1
                doc.metadata["length"], doc.metadata["measured_by"] = result
                self.count_outcome(doc)
        return docs

    def process_batch(self, docs: list[Document]) -> list[Document]:
        return self.process_prepared(docs, [_length_and_pid(doc) if doc.is_pending else None for doc in docs])


class CrashArgs(OperatorArgs):
    marker_dir: str
    crash_doc: str
    crashes: int = 1  # how many attempts on `crash_doc` end the worker process


@register
class CrashOperator(Operator):
    """End the worker process on one document, for its first `crashes` attempts."""

    name: ClassVar[str] = "test_ray_crash"
    Args: ClassVar[type[OperatorArgs]] = CrashArgs

    def process(self, doc: Document) -> Document:
        if doc.doc_id == self.args.crash_doc:
            markers = Path(self.args.marker_dir)
            attempt = len(list(markers.glob("attempt-*")))
            (markers / f"attempt-{attempt}").touch()
            if attempt < self.args.crashes:
                os._exit(3)
        return doc


class SleepArgs(OperatorArgs):
    sleep_doc: str
    seconds: float
    timeout_s: float


@register
class SleepOperator(Operator):
    name: ClassVar[str] = "test_ray_sleep"
    Args: ClassVar[type[OperatorArgs]] = SleepArgs

    def document_timeout_s(self) -> float:
        return self.args.timeout_s

    def process(self, doc: Document) -> Document:
        if doc.doc_id == self.args.sleep_doc:
            time.sleep(self.args.seconds)
        return doc


@register
class EnvProbeOperator(Operator):
    """Record in metadata the environment variable that its `runtime_env` sets."""

    name: ClassVar[str] = "test_ray_env_probe"
    runtime_env: ClassVar[dict[str, Any] | None] = {"env_vars": {"RAGPIPE_TEST_STAGE": "probe"}}

    def process(self, doc: Document) -> Document:
        doc.metadata["stage_env"] = os.environ.get("RAGPIPE_TEST_STAGE")
        return doc


# ---- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """Start one quiet local Ray for the module, able to import the example operators."""
    if ray.is_initialized():
        pytest.fail("Ray is already initialized in this process; the module needs its own local Ray")
    sys.path.insert(0, str(EXAMPLE_OPERATORS))
    import acme_ops

    session = start_local_ray(num_cpus=2, object_store_memory=200 * 1024 * 1024, py_modules=[acme_ops])
    yield session
    session.shutdown()
    sys.path.remove(str(EXAMPLE_OPERATORS))


def _docs(texts: dict[str, str]) -> list[Document]:
    return [Document(doc_id=f"t:{name}", uri=f"mem://{name}", source="t", sections=[Section(text)]) for name, text in texts.items()]


def _execute(executor, operators: list[Operator], docs: list[Document]) -> tuple[list[Document], list[dict]]:
    finished: list[Document] = []
    result = executor.execute(docs, operators, RunContext(run_id="test"), finished.extend, total=len(docs))
    return finished, [dict(counter) for counter in result.stats]


def _ray_executor(**settings: Any) -> RayExecutor:
    return RayExecutor(RayExecutorConfig(batch_size=2, **settings), show_progress=False)


def _local_executor() -> LocalExecutor:
    return LocalExecutor(workers=2, batch_size=2, show_progress=False)


def _outcome(docs: list[Document]) -> dict[str, tuple]:
    return {
        d.doc_id: (d.state, d.text, d.duplicate_of, d.quarantine.error_class if d.quarantine else None)
        for d in docs
    }


def _pipeline_config(workspace: Path, executor: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "parity",
        "workspace": str(workspace),
        "sources": [{"type": "files", "name": "corpus", "path": str(CORPUS), "include": PARITY_FILES}],
        "executor": executor,
        "pipeline": [
            {"parse": {}},
            {"clean": {}},
            {"dedupe_exact": {}},
            {"dedupe_minhash": {}},
            {"chunk": {"max_tokens": 128, "overlap_tokens": 16}},
            {"embed": {"model": "all-MiniLM-L6-v2", "batch_size": 32}},
            {"dedupe_semantic": {}},
        ],
    }


def _sample_ray_pipeline(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Copy the bundled sample documents and return their folder and a Ray pipeline config."""
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "examples" / "docs", docs)
    raw = {
        "name": "sample",
        "workspace": str(tmp_path / "ws"),
        "sources": [{"type": "files", "name": "docs", "path": str(docs)}],
        "executor": {"type": "ray"},
        "pipeline": [{"parse": {}}, {"clean": {}}, {"chunk": {"max_tokens": 200}}, {"embed": {}}],
    }
    return docs, raw


def _manifest_states(workspace: Path) -> dict[str, tuple]:
    entries = Manifest(lancedb.connect(str(workspace / "lance"))).load()
    return {
        doc_id: (e.state, e.duplicate_of, e.operator, e.error_class, e.error_message, e.chunks, e.parent_id)
        for doc_id, e in entries.items()
    }


# ---- parity -------------------------------------------------------------------------------------


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"third-party corpus not found at {CORPUS} (the ../shared folder is absent)")
def test_parity_with_local_executor(ray_cluster, tmp_path):
    missing = [name for name in PARITY_FILES if not (CORPUS / name).is_file()]
    assert not missing, f"parity files missing from the corpus: {missing}"
    summaries = {}
    for kind, executor in [
        ("local", {"type": "local", "workers": 2, "batch_size": 3}),
        ("ray", {"type": "ray", "batch_size": 3}),
    ]:
        config = config_from_dict(_pipeline_config(tmp_path / kind, executor), base_dir=tmp_path)
        summaries[kind] = run_pipeline(config, RunOptions(show_progress=False))

    local_rows = chunk_rows(tmp_path / "local")
    ray_rows = chunk_rows(tmp_path / "ray")
    assert local_rows, "the local run indexed no chunks"
    assert [r["chunk_id"] for r in ray_rows] == [r["chunk_id"] for r in local_rows]
    assert [r["text"] for r in ray_rows] == [r["text"] for r in local_rows]
    assert [r["doc_id"] for r in ray_rows] == [r["doc_id"] for r in local_rows]
    local_vectors = np.stack([np.asarray(r["vector"]) for r in local_rows])
    ray_vectors = np.stack([np.asarray(r["vector"]) for r in ray_rows])
    np.testing.assert_allclose(ray_vectors, local_vectors, atol=1e-5)

    local_states = _manifest_states(tmp_path / "local")
    ray_states = _manifest_states(tmp_path / "ray")
    assert ray_states == local_states
    states = [state for state, *_ in local_states.values()]
    assert "quarantined" in states, "the parity set should quarantine password.pdf"
    assert "duplicate" in states, "the parity set should mark one umlauts file a duplicate"
    assert any(parent for *_, parent in local_states.values()), "the parity set should expand simple.zip"

    assert summaries["ray"].documents == summaries["local"].documents
    assert summaries["ray"].operators == summaries["local"].operators


def test_refresh_reuses_cached_vectors(ray_cluster, tmp_path):
    """The embedding actors reach the driver's embedding cache through the broker."""
    docs, raw = _sample_ray_pipeline(tmp_path)
    config = config_from_dict(raw, base_dir=tmp_path)
    first = run_pipeline(config, RunOptions(show_progress=False))
    assert first.chunks["embedded"] > 0

    # Trailing blank lines change the files' bytes but not their cleaned text or chunks.
    with open(docs / "retrieval-basics.md", "a", encoding="utf-8") as handle:
        handle.write("\n\n")
    second = run_pipeline(config, RunOptions(show_progress=False))
    assert second.changes["changed"] == 1
    assert second.chunks["embedded"] == 0
    assert second.chunks["reused"] > 0


def test_work_groups_share_one_ray_session(ray_cluster, tmp_path, monkeypatch):
    """A refresh that both re-processes and re-chunks documents starts (or joins) Ray once."""
    import rag_pipeline.executors.ray_executor as ray_executor_module

    docs, raw = _sample_ray_pipeline(tmp_path)
    run_pipeline(config_from_dict(raw, base_dir=tmp_path), RunOptions(show_progress=False))

    connects: list[tuple] = []
    real_connect = ray_executor_module.connect

    def counting_connect(*args, **kwargs):
        connects.append(args)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(ray_executor_module, "connect", counting_connect)
    with open(docs / "retrieval-basics.md", "a", encoding="utf-8") as handle:
        handle.write("\n\nA new closing paragraph about refresh schedules.\n")
    raw["pipeline"][2] = {"chunk": {"max_tokens": 150}}
    second = run_pipeline(config_from_dict(raw, base_dir=tmp_path), RunOptions(show_progress=False))
    # The edited file is parsed again (first work group); the other seven are only re-chunked.
    assert second.changes["rechunk"] == 7, second.changes
    assert second.documents["indexed"] == 8, second.documents
    assert len(connects) == 1


def test_children_and_global_order_match_local(ray_cluster):
    operators = lambda: [ExplodeOperator(), UpperOperator(), KeepFirstOperator()]  # noqa: E731
    texts = {"c": "third", "a": "first", "b": "second", "d": "first"}
    local_docs, local_stats = _execute(_local_executor(), operators(), _docs(texts))
    ray_docs, ray_stats = _execute(_ray_executor(), operators(), _docs(texts))

    assert _outcome(ray_docs) == _outcome(local_docs)
    assert ray_stats == local_stats
    # The children of the first input document are the keepers; later children are duplicates.
    outcome = _outcome(ray_docs)
    assert outcome["t:c!/part0"][0] == "pending"
    assert outcome["t:a!/part0"][2] == "t:c!/part0"
    assert outcome["t:d"][2] == "t:a"


def test_output_reaches_sink_in_input_order(ray_cluster):
    texts = {f"{i:03d}": f"text {i}" for i in range(11)}
    docs, _ = _execute(_ray_executor(), [UpperOperator()], _docs(texts))
    assert [d.doc_id for d in docs] == [f"t:{i:03d}" for i in range(11)]


@pytest.mark.parametrize("after_map_stage", [True, False], ids=["fused", "own_tasks"])
def test_prepare_function_runs_on_workers(ray_cluster, after_map_stage):
    texts = {f"{i:02d}": "word " * (i + 1) for i in range(7)}
    texts["03"] = "an unreadable text"
    operators = [UpperOperator(), PreparedLengthOperator()] if after_map_stage else [PreparedLengthOperator()]
    docs, stats = _execute(_ray_executor(), operators, _docs(texts))

    by_id = {doc.doc_id: doc for doc in docs}
    assert [doc.doc_id for doc in docs] == [f"t:{name}" for name in texts]
    expected_text = "WORD " * 6 if after_map_stage else "word " * 6
    assert by_id["t:05"].metadata["length"] == len(expected_text)
    measured_by = {doc.metadata["measured_by"] for doc in docs if "measured_by" in doc.metadata}
    assert len(measured_by) >= 1
    assert os.getpid() not in measured_by, "the driver ran the prepare function itself"

    failed = by_id["t:03"]
    assert failed.state == "quarantined"
    assert failed.quarantine.operator == "test_ray_prepared_length"
    assert failed.quarantine.error_class == "operator_error"
    assert "cannot measure t:03" in failed.quarantine.message
    assert stats[-1] == {"in": 7, "out": 6, "quarantined_operator_error": 1}


def test_prepare_function_fuses_past_text_keeping_stages():
    from operators.dedupe_exact import DedupeExactOperator
    from operators.dedupe_minhash import DedupeMinHash

    operators = [UpperOperator(), DedupeExactOperator(), DedupeMinHash(), KeepFirstOperator(), PreparedLengthOperator()]
    stages = plan_ray_stages(operators)
    specs = [ray_executor.StageSpec("t", s.stage.names, tuple(s.stage.indexes), (), None, None, 0.0, 0.0) for s in stages]
    fused_specs, fused = ray_executor._fuse_prepare_functions(stages, specs)

    assert [stage.stage.names for stage in stages] == [
        "test_ray_upper", "dedupe_exact", "dedupe_minhash", "test_ray_keep_first", "test_ray_prepared_length",
    ]
    # dedupe_exact keeps the text, so the map stage computes the MinHash signatures. The keep-first
    # operator may change text, so the last operator's function runs in tasks of its own.
    assert fused == {2}
    assert fused_specs[0].prepare == operators[2].prepare_function()
    assert all(spec.prepare is None for spec in fused_specs[1:])


@pytest.mark.parametrize("after_map_stage", [True, False], ids=["fused", "own_tasks"])
def test_minhash_on_workers_matches_local(ray_cluster, monkeypatch, after_map_stage):
    from operators import dedupe_minhash
    from operators.dedupe_exact import DedupeExactOperator
    from operators.minhash.synthetic import generate_corpus

    def operators() -> list[Operator]:
        dedupe = dedupe_minhash.DedupeMinHash()
        return [UpperOperator(), DedupeExactOperator(), dedupe] if after_map_stage else [dedupe]

    corpus = generate_corpus(40, seed=5)
    texts = {doc.doc_id: doc.text for doc in corpus}
    texts["doc-copy"] = corpus[0].text  # an exact copy, which dedupe_exact marks first
    local_docs, local_stats = _execute(_local_executor(), operators(), _docs(texts))
    near_duplicates = [doc for doc in local_docs if doc.state == "duplicate" and doc.similarity is not None]
    assert near_duplicates, "the synthetic corpus should contain planted near-duplicates"

    def fail_in_driver(text, params):
        raise AssertionError("the driver computed a MinHash signature; Ray tasks should")

    monkeypatch.setattr(dedupe_minhash, "compute_signature", fail_in_driver)
    ray_docs, ray_stats = _execute(_ray_executor(), operators(), _docs(texts))

    assert [doc.doc_id for doc in ray_docs] == [doc.doc_id for doc in local_docs]
    assert [(doc.state, doc.duplicate_of) for doc in ray_docs] == [(doc.state, doc.duplicate_of) for doc in local_docs]
    assert [doc.similarity for doc in ray_docs] == [doc.similarity for doc in local_docs]
    assert ray_stats == local_stats


# ---- failures -----------------------------------------------------------------------------------


def test_worker_crash_is_retried(ray_cluster, tmp_path):
    texts = {"a": "alpha", "b": "beta", "c": "gamma", "d": "delta"}
    crash = CrashOperator(marker_dir=str(tmp_path), crash_doc="t:b", crashes=1)
    docs, stats = _execute(_ray_executor(), [crash, UpperOperator()], _docs(texts))

    assert len(list(tmp_path.glob("attempt-*"))) == 2, "the worker should have died once and run again"
    assert _outcome(docs) == {f"t:{k}": ("pending", v.upper(), None, None) for k, v in texts.items()}
    assert stats[0] == {"in": 4, "out": 4}
    assert stats[1] == {"in": 4, "out": 4, "uppercased": 4}


def test_document_that_always_crashes_is_quarantined(ray_cluster, tmp_path):
    crash = CrashOperator(marker_dir=str(tmp_path), crash_doc="t:b", crashes=100)
    docs, stats = _execute(_ray_executor(), [crash], _docs({"a": "alpha", "b": "beta", "c": "gamma"}))

    outcome = _outcome(docs)
    assert outcome["t:b"][0] == "quarantined"
    assert outcome["t:b"][3] == "crash"
    assert outcome["t:a"] == ("pending", "alpha", None, None)
    assert outcome["t:c"] == ("pending", "gamma", None, None)
    # The batch ran twice (one Ray retry), then "t:b" alone twice.
    assert len(list(tmp_path.glob("attempt-*"))) == 4
    assert stats[0] == {"in": 2, "out": 2, "quarantined_crash": 1}


def test_document_over_time_limit_is_quarantined(ray_cluster, monkeypatch):
    monkeypatch.setattr(ray_executor, "_TASK_GRACE_S", 2.0)
    monkeypatch.setattr(ray_executor, "_SINGLE_GRACE_S", 1.0)
    sleeper = SleepOperator(sleep_doc="t:b", seconds=120, timeout_s=1)
    started = time.monotonic()
    docs, stats = _execute(_ray_executor(), [sleeper], _docs({"a": "alpha", "b": "beta", "c": "gamma"}))

    assert time.monotonic() - started < 60
    outcome = _outcome(docs)
    assert outcome["t:b"][0] == "quarantined"
    assert outcome["t:b"][3] == "timeout"
    assert outcome["t:a"][0] == "pending"
    assert outcome["t:c"][0] == "pending"
    assert stats[0]["quarantined_timeout"] == 1


# ---- runtime environments and custom operators ----------------------------------------------------


def test_stage_runtime_env_reaches_workers(ray_cluster):
    operators = [UpperOperator(), EnvProbeOperator(), UpperOperator()]
    stages = plan_ray_stages(operators)
    assert [stage.stage.indexes for stage in stages] == [[0], [1], [2]]
    assert stages[1].runtime_env == {"env_vars": {"RAGPIPE_TEST_STAGE": "probe"}}

    docs, _ = _execute(_ray_executor(), operators, _docs({"a": "alpha"}))
    assert docs[0].metadata["stage_env"] == "probe"
    assert docs[0].text == "ALPHA"


def test_local_check_names_unmet_runtime_env(caplog, monkeypatch):
    monkeypatch.delenv("RAGPIPE_TEST_STAGE", raising=False)
    messages = check_runtime_envs_local([UpperOperator(), EnvProbeOperator()])
    assert len(messages) == 1
    assert "test_ray_env_probe" in messages[0]
    assert "RAGPIPE_TEST_STAGE" in messages[0]
    assert messages[0] in caplog.text

    monkeypatch.setenv("RAGPIPE_TEST_STAGE", "probe")
    assert check_runtime_envs_local([EnvProbeOperator()]) == []


def test_local_check_reads_installed_pip_versions():
    class NeedsPackages(UpperOperator):
        runtime_env = {"pip": ["numpy>=1.0", "surely-not-installed-package==1.0"]}

    messages = check_runtime_envs_local([NeedsPackages()])
    assert len(messages) == 1
    assert "pip requirements not installed here: surely-not-installed-package==1.0)" in messages[0]


def test_example_custom_operator_on_both_executors(ray_cluster, caplog):
    from rag_pipeline.config import load_config

    config = load_config(REPO / "configs" / "custom-operator.yaml")
    assert config.executor.type == "ray"
    assert config.custom_operators == ["acme_ops"]

    def redact_operator() -> Operator:
        (op,) = [op for op in config.build_operators() if op.name == "redact_emails"]
        return op

    assert any("redact_emails" in message for message in check_runtime_envs_local([redact_operator()]))
    texts = {"a": "write to ops@example.com or j.doe+rag@mail.example.org", "b": "no address here"}
    local_docs, local_stats = _execute(_local_executor(), [redact_operator()], _docs(texts))
    ray_docs, ray_stats = _execute(_ray_executor(), [redact_operator()], _docs(texts))

    assert _outcome(ray_docs) == _outcome(local_docs)
    assert _outcome(ray_docs)["t:a"][1] == "write to [email] or [email]"
    assert ray_stats == local_stats
    assert ray_stats[0]["emails_redacted"] == 2


# ---- rejected configs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key"),
    [({"embed_num_gpus": 1.0}, "executor.embed_num_gpus"), ({"embed_actors": 4}, "executor.embed_actors")],
)
def test_unrunnable_settings_are_rejected(ray_cluster, tmp_path, settings, key):
    raw = {
        "name": "rejected",
        "workspace": str(tmp_path / "ws"),
        "sources": [{"type": "files", "name": "docs", "path": str(REPO / "examples" / "docs")}],
        "executor": {"type": "ray", **settings},
        "pipeline": [{"parse": {}}, {"chunk": {"max_tokens": 128}}, {"embed": {}}],
    }
    with pytest.raises(RunError) as error:
        run_pipeline(config_from_dict(raw, base_dir=tmp_path), RunOptions(show_progress=False))
    assert key in str(error.value)
    assert Manifest(lancedb.connect(str(tmp_path / "ws" / "lance"))).load() == {}


def test_cuda_embedding_without_gpus_is_rejected():
    from operators.embed import EmbedOperator
    from rag_pipeline.executors.ray_checks import check_model_device

    with pytest.raises(ConfigError) as error:
        check_model_device(EmbedOperator(device="cuda"), gpus_per_actor=0)
    assert "executor.embed_num_gpus" in str(error.value)
    assert "embed.device" in str(error.value)
    check_model_device(EmbedOperator(device="cuda"), gpus_per_actor=1)
    check_model_device(EmbedOperator(device="cpu"), gpus_per_actor=0)


def test_malformed_address_is_rejected_at_load(tmp_path):
    raw = {
        "name": "bad",
        "workspace": "ws",
        "sources": [{"type": "files", "path": "docs"}],
        "executor": {"type": "ray", "address": "ray://head-without-port"},
        "pipeline": [{"parse": {}}, {"chunk": {}}, {"embed": {}}],
    }
    with pytest.raises(ConfigError) as error:
        config_from_dict(raw, base_dir=tmp_path)
    assert "executor.address" in str(error.value)


def test_unreachable_address_is_rejected(ray_cluster, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below, so nothing listens there
    raw = {
        "name": "unreachable",
        "workspace": str(tmp_path / "ws"),
        "sources": [{"type": "files", "name": "docs", "path": str(REPO / "examples" / "docs")}],
        "executor": {"type": "ray", "address": f"ray://127.0.0.1:{port}"},
        "pipeline": [{"parse": {}}, {"chunk": {"max_tokens": 128}}, {"embed": {}}],
    }
    with pytest.raises(RunError) as error:
        run_pipeline(config_from_dict(raw, base_dir=tmp_path), RunOptions(show_progress=False))
    assert "executor.address" in str(error.value)
    assert f"127.0.0.1:{port}" in str(error.value)
    assert Manifest(lancedb.connect(str(tmp_path / "ws" / "lance"))).load() == {}


# ---- a local Ray of its own ------------------------------------------------------------------------

_LOOPBACK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from typing import ClassVar
    import ray
    from operators.base import Operator
    from operators.context import RunContext
    from operators.records import Document, Section
    from rag_pipeline.config import RayExecutorConfig
    from rag_pipeline.executors.ray_executor import RayExecutor

    class Upper(Operator):
        name: ClassVar[str] = "upper"

        def process(self, doc):
            doc.set_text(doc.text.upper())
            return doc

    if __name__ == "__main__":
        docs = [Document(doc_id=f"t:{i}", uri=f"mem://{i}", source="t", sections=[Section(f"text {i}")]) for i in range(4)]
        out = []
        executor = RayExecutor(RayExecutorConfig(num_cpus=1, batch_size=2), show_progress=False)
        executor.execute(docs, [Upper()], RunContext(run_id="loopback"), out.extend)
        print(json.dumps({"texts": [d.text for d in out], "initialized_after": ray.is_initialized()}))
    """
)


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-e", "trace=none", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="strace is not installed or ptrace is not permitted here")
def test_local_ray_connects_only_to_loopback(tmp_path):
    """Trace every connect/sendto of a run that starts and stops its own local Ray."""
    script = tmp_path / "loopback_run.py"
    script.write_text(_LOOPBACK_SCRIPT)
    trace = tmp_path / "trace.txt"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace), sys.executable, str(script)],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["texts"] == ["TEXT 0", "TEXT 1", "TEXT 2", "TEXT 3"]
    assert output["initialized_after"] is False, "the executor should shut down the Ray it started"

    inet_calls = [line for line in trace.read_text().splitlines() if "sin_addr" in line or "sin6_addr" in line]
    assert inet_calls, "the trace shows no network calls at all; is strace following the Ray processes?"
    outside = [line for line in inet_calls if not _is_loopback_call(line)]
    assert outside == []
    assert not (home / ".ray").exists(), "Ray should not write an auth token under HOME"
    assert not (home / "ray_bootstrap_config.yaml").exists()


def _is_loopback_call(line: str) -> bool:
    return any(address in line for address in ('inet_addr("127.', '"::1"', '"::ffff:127.'))
