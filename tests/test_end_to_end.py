"""End to end: YAML -> parse -> clean -> dedupe -> chunk -> embed -> Lance -> search, through the CLI."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import yaml

from conftest import CORPUS, REPO, chunk_rows, requires_corpus
from rag_pipeline.cli import main


def _cli_json(capsys, *argv: str):
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quickstart config with its workspace moved into a temporary folder, run once."""
    tmp_path = tmp_path_factory.mktemp("quickstart")
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    raw["workspace"] = str(tmp_path / "ws")
    for source in raw["sources"]:
        source["path"] = str((REPO / "configs" / source["path"]).resolve())
    config = tmp_path / "quickstart.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert main(["run", str(config), "--quiet"]) == 0
    return config


def test_quickstart_status_adds_up(quickstart, capsys):
    status = _cli_json(capsys, "status", str(quickstart), "--json")
    docs = status["documents"]
    expected_inputs = len(list((REPO / "examples" / "docs").iterdir())) + 3  # files + JSONL records
    assert docs["seen"] == expected_inputs
    assert docs["seen"] == docs["indexed"] + docs["unchanged"] + docs["duplicate"] + docs["filtered"] + docs["quarantined"]
    assert docs["quarantined"] == 0
    assert status["chunks"]["total"] > 0
    assert status["version"] is not None


def test_quickstart_documents_lists_each_input_once(quickstart, capsys):
    rows = _cli_json(capsys, "documents", str(quickstart), "--json")
    ids = [row["doc_id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert "faq:faq-002" in ids
    assert "docs:model-upgrade-guide.pdf" in ids
    assert all(row["state"] == "indexed" for row in rows)


@pytest.mark.parametrize(
    ("query", "expected_doc"),
    [
        ("how do I roll back a bad embedding model upgrade?", "docs:model-upgrade-guide.pdf"),
        ("which team owns the embedding models?", "docs:team-contacts.csv"),
        ("stale search results after a refresh", "docs:incident-review.docx"),
        ("如何只处理修改过的文档？", "docs:pipeline-overview.zh.txt"),
        ("中文近似重复文档的分片方法", "docs:dedupe-notes.zh-gb18030.txt"),
        ("Where are run statistics stored?", "faq:faq-002"),
    ],
)
def test_quickstart_search_finds_document(quickstart, capsys, query, expected_doc):
    result = _cli_json(capsys, "search", str(quickstart), query, "-k", "3", "--json")
    assert result["version"] is not None
    assert expected_doc in [hit["doc_id"] for hit in result["hits"]]


def test_quickstart_html_has_no_script_text(quickstart):
    workspace = Path(yaml.safe_load(quickstart.read_text())["workspace"])
    rows = [r for r in chunk_rows(workspace) if r["doc_id"] == "docs:data-quality.html"]
    assert rows
    assert not any("window.analytics" in r["text"] or "font-family" in r["text"] for r in rows)


def test_versions_and_rollback(quickstart, capsys):
    versions = _cli_json(capsys, "versions", str(quickstart), "--json")
    served = [v for v in versions if v["served"]]
    assert len(served) == 1
    assert served[0]["run_id"]
    assert served[0]["documents"] > 0
    untagged = [v["version"] for v in versions if not v["tags"]]
    assert untagged, "the empty table created before the first commit has no tag"
    assert main(["rollback", str(quickstart), str(untagged[0])]) == 2  # usage error: no run committed it
    assert main(["rollback", str(quickstart), str(served[0]["version"])]) == 0
    result = _cli_json(capsys, "search", str(quickstart), "vector search", "--json")
    assert result["version"] == served[0]["version"]
    assert main(["rollback", str(quickstart), "9999"]) == 2


# ---- the shared third-party corpus -------------------------------------------------------------


# Embedding these five large files (about 2,000 pages together) takes several minutes on two
# cores, so the default suite leaves them out; `make test-full` runs the whole corpus.
LARGE_FILES = [
    "unstructured/book-war-and-peace-1225p.txt",
    "unstructured/pdf/DA-619p.pdf",
    "unstructured/handbook-872p.docx",
    "unstructured/example-10k.html",
    "debian/debian-reference.zh-cn.pdf",
]


def _corpus_exclusions() -> list[str]:
    return [] if os.environ.get("RAGPIPE_FULL_CORPUS") == "1" else LARGE_FILES


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    if not CORPUS.is_dir():
        pytest.skip(f"third-party corpus not found at {CORPUS} (the ../shared folder is absent)")
    tmp_path = tmp_path_factory.mktemp("corpus")
    exclude = _corpus_exclusions()
    raw = {
        "name": "corpus",
        "workspace": str(tmp_path / "ws"),
        "sources": [{"type": "files", "name": "corpus", "path": str(CORPUS), "exclude": exclude}],
        "executor": {"type": "local", "workers": 2, "batch_size": 4},
        "pipeline": [
            {"parse": {}},
            {"clean": {}},
            {"dedupe_exact": {}},
            {"chunk": {"max_tokens": 254, "overlap_tokens": 32}},
            {"embed": {"model": "all-MiniLM-L6-v2", "batch_size": 64}},
        ],
    }
    config = tmp_path / "corpus.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["run", str(config), "--quiet"]) == 0
    return config


@requires_corpus
@pytest.mark.slow
def test_corpus_every_file_listed_once(corpus_run, capsys):
    rows = _cli_json(capsys, "documents", str(corpus_run), "--json")
    top_level = [row for row in rows if "#" not in row["doc_id"] and "!/" not in row["doc_id"]]
    excluded = set(yaml.safe_load(corpus_run.read_text())["sources"][0]["exclude"])
    files = sorted(
        p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*")
        if p.is_file() and p.relative_to(CORPUS).as_posix() not in excluded
    )
    assert sorted(row["doc_id"].split(":", 1)[1] for row in top_level) == files
    for row in rows:
        if row["state"] == "quarantined":
            assert row["reason"], row
        if row["state"] == "duplicate":
            assert row["duplicate_of"], row


@requires_corpus
@pytest.mark.slow
def test_corpus_status_adds_up(corpus_run, capsys):
    docs = _cli_json(capsys, "status", str(corpus_run), "--json")["documents"]
    excluded = yaml.safe_load(corpus_run.read_text())["sources"][0]["exclude"]
    assert docs["seen"] >= 70 - len(excluded)
    assert docs["seen"] == docs["indexed"] + docs["unchanged"] + docs["duplicate"] + docs["filtered"] + docs["quarantined"]
    assert docs["indexed"] > 30


@requires_corpus
@pytest.mark.slow
def test_corpus_sentence_query_returns_its_document(corpus_run, capsys):
    """A sentence copied from an indexed document finds it (or its keeper) among the first three hits."""
    rows = _cli_json(capsys, "documents", str(corpus_run), "--json")
    duplicate_of = {row["doc_id"]: row["duplicate_of"] for row in rows}
    workspace = Path(yaml.safe_load(corpus_run.read_text())["workspace"])
    chunks = chunk_rows(workspace)
    by_doc: dict[str, list[dict]] = {}
    for chunk in chunks:
        by_doc.setdefault(chunk["doc_id"], []).append(chunk)
    rng = random.Random(7)
    misses = []
    checked = 0
    for doc_id in sorted(by_doc):
        chunk = rng.choice(by_doc[doc_id])
        sentences = [s.strip() for s in chunk["text"].replace("\n", " ").split(". ") if len(s.strip()) > 60]
        if not sentences:
            continue
        query = sentences[0][:300]
        hits = _cli_json(capsys, "search", str(corpus_run), query, "-k", "3", "--json")["hits"]
        wanted = {doc_id, duplicate_of.get(doc_id)}
        checked += 1
        if not wanted & {hit["doc_id"] for hit in hits}:
            misses.append((doc_id, query[:80]))
    assert checked >= 20
    assert not misses


@requires_corpus
@pytest.mark.slow
def test_corpus_chinese_query_finds_chinese_documents(corpus_run, capsys):
    hits = _cli_json(capsys, "search", str(corpus_run), "软件包管理系统的基本概念", "-k", "5", "--json")["hits"]
    assert any("zh" in hit["doc_id"] for hit in hits), [hit["doc_id"] for hit in hits]
