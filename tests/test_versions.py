"""Table versions: served pointer, tags, retention, rollback, backfill and the embedding cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import chunk_rows, make_config, pipeline_dict, run
from rag_pipeline.changes import BackfillSelection
from rag_pipeline.cli import main
from rag_pipeline.index import ChunkIndex, IndexError_, InvalidVersionError
from rag_pipeline.search import search


def _corpus(folder: Path) -> None:
    folder.mkdir()
    (folder / "alpha.txt").write_text("Alpha notes describe glaciers and the water cycle in mountain regions.\n")
    (folder / "beta.md").write_text("# Beta\n\nBeta notes describe compilers, parsers and abstract syntax trees.\n")
    (folder / "gamma.txt").write_text("Gamma notes describe sourdough bread, yeast and fermentation.\n")


@pytest.fixture
def setup(tmp_path):
    docs = tmp_path / "docs"
    _corpus(docs)
    config = make_config(pipeline_dict(tmp_path / "ws", docs), tmp_path)
    return config, docs, tmp_path / "ws"


def test_retention_keeps_tagged_version_for_rollback(setup):
    config, docs, workspace = setup
    first = run(config)
    index = ChunkIndex(workspace / "lance")
    index.tag(first.version, "before-edits")
    for i in range(5):
        (docs / f"extra{i}.txt").write_text(f"Extra document number {i} about a new topic {i * 13}.\n")
        run(config)
    result = index.apply_retention(keep_versions=2)
    remaining = {v.version for v in index.versions()}
    assert first.version in remaining
    assert result["versions_after"] < result["versions_before"]
    index.rollback("before-edits")
    hits = search(config, "fermentation of bread dough", k=3)
    assert hits["version"] == first.version
    assert hits["hits"][0]["doc_id"] == "docs:gamma.txt"
    assert not any(hit["doc_id"].startswith("docs:extra") for hit in search(config, "extra document topic", k=5)["hits"])


def test_served_version_moves_only_after_run(setup):
    config, docs, workspace = setup
    first = run(config)
    (docs / "delta.txt").write_text("Delta notes describe tidal energy and coastal engineering.\n")
    second = run(config)
    index = ChunkIndex(workspace / "lance")
    assert index.served_version() == second.version
    assert second.version == first.version + 1
    index.rollback(first.version)
    assert not [r for r in chunk_rows(workspace) if r["doc_id"] == "docs:delta.txt"]


def test_reserved_tag_names_rejected(setup):
    config, _, workspace = setup
    summary = run(config)
    index = ChunkIndex(workspace / "lance")
    with pytest.raises(IndexError_):
        index.tag(summary.version, "served")
    with pytest.raises(IndexError_):
        index.tag(9999, "later")


def test_backfill_reprocesses_selected_documents(setup):
    config, _, workspace = setup
    run(config)
    summary = run(config, kind="backfill", backfill=BackfillSelection(paths=["*.md"]), reason="parser fix")
    assert summary.changes["backfill"] == 1
    assert summary.documents["indexed"] == 1
    assert summary.documents["unchanged"] == 2
    assert summary.chunks["embedded"] == 0  # same text, vectors come from the cache
    everything = run(config, kind="backfill", backfill=BackfillSelection(everything=True))
    assert everything.changes["backfill"] == 3


def test_backfill_reason_recorded(setup):
    config, _, workspace = setup
    run(config)
    run(config, kind="backfill", backfill=BackfillSelection(everything=True), reason="tokenizer fix")
    import duckdb

    with duckdb.connect(str(workspace / "analytics.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT kind, reason, status FROM runs ORDER BY started_at").fetchall()
    assert rows[-1] == ("backfill", "tokenizer fix", "completed")


def test_embedding_cache_is_bounded(setup):
    config, docs, workspace = setup
    from rag_pipeline.runner import Workspace
    from rag_pipeline.state import LanceEmbeddingCache

    run(config)
    for i in range(3):
        (docs / "alpha.txt").write_text(f"Alpha revision {i}: " + " ".join(f"word{i}x{j}" for j in range(400)) + "\n")
        run(config)
    db = Workspace(workspace).connect()
    cache = LanceEmbeddingCache(db)
    embed_fp = chunk_rows(workspace)[0]["embed_fp"]
    live = {r["text_hash"] for r in chunk_rows(workspace)}
    removed = cache.collect_garbage(embed_fp, live)
    assert removed > 0
    assert cache.count(embed_fp) == len(live)


def test_rollback_rejects_untagged_version(setup):
    config, _, workspace = setup
    run(config)
    index = ChunkIndex(workspace / "lance")
    with pytest.raises(IndexError_) as info:
        index.rollback(1)  # the empty table created before the first commit
    assert "not committed by a run" in str(info.value)


def test_tag_rejects_version_without_run(setup):
    """Tagging the empty table must not open a way around the rollback check."""
    config, _, workspace = setup
    summary = run(config)
    index = ChunkIndex(workspace / "lance")
    for version in range(1, summary.version):
        with pytest.raises(InvalidVersionError) as info:
            index.tag(version, f"early-{version}")
        assert "not committed by a run" in str(info.value)
    assert index.served_version() == summary.version


def test_cli_rollback_prints_number_and_exits_2(setup, tmp_path, capsys):
    config, docs, workspace = setup
    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump(pipeline_dict(workspace, docs)))
    first = run(config)
    (docs / "delta.txt").write_text("Delta notes describe tidal energy and coastal engineering.\n")
    run(config)
    ChunkIndex(workspace / "lance").tag(first.version, "golden")
    capsys.readouterr()

    assert main(["rollback", str(config_path), "golden"]) == 0
    assert f"served version is now {first.version}" in capsys.readouterr().err
    assert main(["rollback", str(config_path), "1"]) == 2
    assert "not committed by a run" in capsys.readouterr().err
    assert main(["tag", str(config_path), "1", "empty"]) == 2
    assert main(["rollback", str(config_path), "no-such-tag"]) == 2
    assert ChunkIndex(workspace / "lance").served_version() == first.version


def test_retention_keeps_run_ids_of_kept_versions(setup):
    config, docs, workspace = setup
    first = run(config)
    index = ChunkIndex(workspace / "lance")
    index.tag(first.version, "golden")
    for i in range(3):
        (docs / f"more{i}.txt").write_text(f"More text number {i} about rivers and bridges {i * 3}.\n")
        run(config)
    index.apply_retention(keep_versions=1)
    versions = {v.version: v for v in index.versions()}
    assert versions[first.version].run_id == first.run_id
    assert len([v for v in versions.values() if v.run_id]) == 2
    with pytest.raises(IndexError_):
        index.apply_retention(keep_versions=0)


def test_same_source_failure_commits_nothing(tmp_path):
    docs = tmp_path / "docs"
    _corpus(docs)
    records = tmp_path / "records.jsonl"
    records.write_text('{"id": "a", "text": "A valid record about tides."}\n{bad json\n')
    raw = pipeline_dict(tmp_path / "ws", docs)
    raw["sources"].append({"type": "jsonl", "name": "rec", "path": str(records)})
    config = make_config(raw, tmp_path)
    first = run(config)
    assert first.documents["quarantined"] == 1
    second = run(config)
    assert second.version == first.version
    assert second.documents["quarantined"] == 1
    assert second.documents["seen"] == first.documents["seen"]
