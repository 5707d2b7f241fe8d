"""Incremental refresh: re-process only what changed, never lose or duplicate a chunk."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import lancedb
import pytest

from conftest import chunk_rows, make_config, pipeline_dict, run
from rag_pipeline.analytics import Analytics
from rag_pipeline.runner import MassDeleteError
from rag_pipeline.state import Manifest

PARAGRAPHS = [
    f"Paragraph {i} explains topic number {i}. " + " ".join(
        f"Sentence {j} about subject {i} adds detail {i * 7 + j} to the discussion." for j in range(6)
    )
    for i in range(12)
]


def _write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "long.txt").write_text("\n\n".join(PARAGRAPHS), encoding="utf-8")
    (folder / "short.md").write_text("# Short note\n\nA short note about vector indexes and recall.\n", encoding="utf-8")
    (folder / "third.txt").write_text("Lance stores each table version as a manifest over data fragments.\n", encoding="utf-8")
    (folder / "fourth.txt").write_text("DuckDB reads the analytics tables written after every run.\n", encoding="utf-8")


@pytest.fixture
def corpus(tmp_path):
    docs = tmp_path / "docs"
    _write_corpus(docs)
    return docs


def _config(tmp_path, docs, **kwargs):
    return make_config(pipeline_dict(tmp_path / "ws", docs, **kwargs), tmp_path)


def _texts(rows):
    return Counter(row["text"] for row in rows)


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 1), (2, 3), (2, 16)])
def test_unchanged_rerun_embeds_nothing(tmp_path, corpus, workers, batch_size):
    config = _config(tmp_path, corpus, workers=workers, batch_size=batch_size)
    first = run(config)
    assert first.chunks["embedded"] > 0
    second = run(config)
    assert second.chunks["embedded"] == 0
    assert second.documents["unchanged"] == 4
    assert second.version == first.version
    assert chunk_rows(tmp_path / "ws") == chunk_rows(tmp_path / "ws", first.version)


def test_touch_embeds_nothing(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    run(config)
    later = time.time() + 10
    for path in corpus.iterdir():
        os.utime(path, (later, later))
    second = run(config)
    assert second.chunks["embedded"] == 0
    assert second.changes["changed"] == 0


def test_edit_one_paragraph_embeds_only_changed_chunks(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    run(config)
    before = _texts(chunk_rows(tmp_path / "ws"))
    edited = list(PARAGRAPHS)
    edited[5] = "Paragraph five was rewritten completely with new wording about embeddings and recall."
    (corpus / "long.txt").write_text("\n\n".join(edited), encoding="utf-8")
    second = run(config)
    after = _texts(chunk_rows(tmp_path / "ws"))
    new_texts = set(after) - set(before)
    assert second.changes["changed"] == 1
    assert new_texts, "the edit should produce at least one new chunk text"
    assert second.chunks["embedded"] == len(new_texts)
    assert second.chunks["reused"] > 0


def test_delete_paragraph_removes_its_chunks(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    run(config)
    shrunk = PARAGRAPHS[:6]
    (corpus / "long.txt").write_text("\n\n".join(shrunk), encoding="utf-8")
    run(config)
    rows = [r for r in chunk_rows(tmp_path / "ws") if r["doc_id"] == "docs:long.txt"]
    text = "\n\n".join(shrunk)
    assert rows
    for row in rows:
        assert row["text"] in text
    assert not any("Paragraph 11" in row["text"] for row in rows)
    ids = [row["chunk_id"] for row in chunk_rows(tmp_path / "ws")]
    assert len(ids) == len(set(ids))


def test_delete_file_removes_all_its_chunks(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    run(config)
    (corpus / "third.txt").unlink()
    second = run(config)
    assert second.documents["deleted"] == 1
    assert not [r for r in chunk_rows(tmp_path / "ws") if r["doc_id"] == "docs:third.txt"]


def test_rename_embeds_nothing_and_changes_uri(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    run(config)
    (corpus / "fourth.txt").rename(corpus / "renamed.txt")
    second = run(config)
    assert second.changes["moved"] == 1
    assert second.documents["deleted"] == 0
    assert second.chunks["embedded"] == 0
    rows = chunk_rows(tmp_path / "ws")
    assert not [r for r in rows if r["doc_id"] == "docs:fourth.txt"]
    moved = [r for r in rows if r["doc_id"] == "docs:renamed.txt"]
    assert moved
    assert moved[0]["uri"].endswith("renamed.txt")


def test_chunkless_additions_commit_no_version(tmp_path, corpus):
    """A new exact copy and a new empty file change no chunk, so the served version stays."""
    config = _config(tmp_path, corpus)
    first = run(config)
    shutil.copy(corpus / "third.txt", corpus / "third-copy.txt")
    (corpus / "empty.txt").write_bytes(b"")
    second = run(config)
    assert second.changes["new"] == 2
    assert second.documents["duplicate"] == 1
    assert second.documents["quarantined"] == 1
    assert second.version == first.version
    table = lancedb.connect(str(tmp_path / "ws" / "lance")).open_table("chunks")
    assert table.version == first.version
    entries = Manifest(lancedb.connect(str(tmp_path / "ws" / "lance"))).load()
    assert entries["docs:third-copy.txt"].duplicate_of == "docs:third.txt"


def _operator_counter(summary, name: str, counter: str) -> int:
    row = next(row for row in summary.operators if row["operator"] == name)
    return int(row.get(counter, 0))


def test_chunker_change_rechunks_without_parsing(tmp_path, corpus):
    run(_config(tmp_path, corpus, max_tokens=64))
    before = chunk_rows(tmp_path / "ws")
    second = run(_config(tmp_path, corpus, max_tokens=128))
    after = chunk_rows(tmp_path / "ws")
    assert second.changes["rechunk"] == 4
    assert _operator_counter(second, "parse", "in") == 0
    assert _operator_counter(second, "chunk", "in") == 4
    assert max(r["token_count"] for r in after) > 64
    assert len(after) < len(before)
    ids = [row["chunk_id"] for row in after]
    assert len(ids) == len(set(ids))


def test_model_change_reembeds_everything(tmp_path, corpus):
    from operators.models import resolve_model_path

    run(_config(tmp_path, corpus))
    count = len(chunk_rows(tmp_path / "ws"))
    other_model = tmp_path / "model-copy"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), other_model)
    (other_model / "README.md").write_text("a retrained copy\n")
    second = run(_config(tmp_path, corpus, embed={"model": str(other_model)}))
    assert second.chunks["embedded"] == count
    assert second.chunks["reused"] == 0
    assert second.changes["reembed"] == 4
    assert _operator_counter(second, "parse", "in") == 0
    assert _operator_counter(second, "chunk", "in") == 0
    assert sorted(r["chunk_id"] for r in chunk_rows(tmp_path / "ws")) == sorted(
        r["chunk_id"] for r in chunk_rows(tmp_path / "ws", 2)
    )


def test_reappearing_file_is_indexed_again(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    run(config)
    saved = (corpus / "third.txt").read_bytes()
    (corpus / "third.txt").unlink()
    run(config)
    (corpus / "third.txt").write_bytes(saved)
    third = run(config)
    assert third.changes["new"] == 1
    assert [r for r in chunk_rows(tmp_path / "ws") if r["doc_id"] == "docs:third.txt"]


def test_mass_delete_needs_explicit_flag(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    first = run(config)
    for name in ("long.txt", "short.md", "third.txt"):
        (corpus / name).unlink()
    with pytest.raises(MassDeleteError) as info:
        run(config)
    assert "--allow-mass-delete" in str(info.value)
    assert chunk_rows(tmp_path / "ws") == chunk_rows(tmp_path / "ws", first.version)
    allowed = run(config, allow_mass_delete=True)
    assert allowed.documents["deleted"] == 3


def test_status_adds_up(tmp_path, corpus):
    (corpus / "copy.txt").write_bytes((corpus / "third.txt").read_bytes())
    (corpus / "empty.txt").write_bytes(b"")
    summary = run(_config(tmp_path, corpus))
    docs = summary.documents
    assert docs["seen"] == 6
    assert docs["seen"] == docs["indexed"] + docs["unchanged"] + docs["duplicate"] + docs["filtered"] + docs["quarantined"]
    assert docs["duplicate"] == 1
    assert docs["quarantined"] == 1


def test_duplicate_takes_over_when_keeper_deleted(tmp_path, corpus):
    (corpus / "copy.txt").write_bytes((corpus / "third.txt").read_bytes())
    config = _config(tmp_path, corpus)
    run(config)
    (corpus / "copy.txt").unlink()  # copy.txt sorts first, so it was the keeper
    second = run(config)
    assert second.documents["deleted"] == 1
    rows = chunk_rows(tmp_path / "ws")
    assert [r for r in rows if r["doc_id"] == "docs:third.txt"]


def test_rechunk_keeps_dedupe_state(tmp_path, corpus):
    minhash = [{"dedupe_minhash": {}}]
    run(_config(tmp_path, corpus, max_tokens=64, extra_steps=minhash))

    # A chunker change re-chunks every document in the same run that indexes a new one. The
    # re-chunked documents skip both dedupe steps, so their stored hashes and signatures stay.
    (corpus / "new.txt").write_text("Ray Data streams blocks between tasks and actors.\n", encoding="utf-8")
    second = run(_config(tmp_path, corpus, max_tokens=128, extra_steps=minhash))
    assert second.changes["rechunk"] == 4
    assert second.changes["new"] == 1
    analytics = Analytics(tmp_path / "ws" / "analytics.duckdb")
    changes = {row["doc_id"]: row["change"] for row in analytics.run_document_states(second.run_id)}
    assert changes["docs:long.txt"] == "rechunk"
    assert changes["docs:new.txt"] == "new"

    edited = "\n\n".join(PARAGRAPHS).replace("adds detail 12 to", "adds detail twelve to")
    (corpus / "near-copy.txt").write_text(edited, encoding="utf-8")
    (corpus / "exact-copy.txt").write_bytes((corpus / "third.txt").read_bytes())
    third = run(_config(tmp_path, corpus, max_tokens=128, extra_steps=minhash))

    entries = Manifest(lancedb.connect(str(tmp_path / "ws" / "lance"))).load()
    assert third.changes["new"] == 2
    assert entries["docs:near-copy.txt"].state == "duplicate"
    assert entries["docs:near-copy.txt"].duplicate_of == "docs:long.txt"
    assert 0.8 <= entries["docs:near-copy.txt"].similarity < 1.0
    states = {row["doc_id"]: row for row in analytics.run_document_states(third.run_id)}
    assert states["docs:near-copy.txt"]["similarity"] == entries["docs:near-copy.txt"].similarity
    assert entries["docs:exact-copy.txt"].state == "duplicate"
    assert entries["docs:exact-copy.txt"].duplicate_of == "docs:third.txt"


SHARED_PARAGRAPH = (
    "Lance stores each table version as a manifest over immutable data fragments, so a reader can "
    "open any earlier version of the table and see its rows exactly as they were written then."
)


def _semantic_corpus(tmp_path: Path) -> tuple[Path, str, str]:
    docs = tmp_path / "docs"
    docs.mkdir()
    own_a = (
        "DuckDB reads the analytics tables that every run writes, and the dashboard queries them for "
        "the counts of indexed, duplicate, filtered and quarantined documents of each run."
    )
    own_b = (
        "Ray Data streams blocks of documents between tasks and actors, and keeps the order of the "
        "blocks when the run asks it to, so both executors hand documents to the sink alike."
    )
    (docs / "a.txt").write_text(f"{SHARED_PARAGRAPH}\n\n{own_a}\n", encoding="utf-8")
    (docs / "b.txt").write_text(f"{SHARED_PARAGRAPH}\n\n{own_b}\n", encoding="utf-8")
    return docs, own_a, own_b


def _semantic_config(tmp_path: Path, docs: Path, max_tokens: int = 64):
    raw = pipeline_dict(tmp_path / "ws", docs, max_tokens=max_tokens, overlap_tokens=0)
    raw["pipeline"].append({"dedupe_semantic": {"action": "drop"}})
    return make_config(raw, tmp_path)


def test_semantic_drop_restored_when_keeper_deleted(tmp_path):
    docs, own_a, own_b = _semantic_corpus(tmp_path)
    config = _semantic_config(tmp_path, docs)

    run(config)
    rows = chunk_rows(tmp_path / "ws")
    b_texts = [r["text"] for r in rows if r["doc_id"] == "docs:b.txt"]
    assert [r["text"] for r in rows].count(SHARED_PARAGRAPH) == 1
    assert b_texts == [own_b], "b.txt's copy of the shared paragraph should be dropped"

    (docs / "a.txt").unlink()
    second = run(config)
    rows = chunk_rows(tmp_path / "ws")
    assert second.changes["retry"] == 1
    assert sorted(r["text"] for r in rows if r["doc_id"] == "docs:b.txt") == sorted([SHARED_PARAGRAPH, own_b])


def test_semantic_drop_survives_rechunk(tmp_path):
    docs, own_a, own_b = _semantic_corpus(tmp_path)
    run(_semantic_config(tmp_path, docs, max_tokens=64))

    # Each paragraph still fits one chunk, so the chunk texts stay the same. b.txt depends on
    # a.txt, so it runs in full while a.txt is only re-chunked, in a later work group.
    second = run(_semantic_config(tmp_path, docs, max_tokens=60))
    rows = chunk_rows(tmp_path / "ws")
    texts = sorted(r["text"] for r in rows)

    assert second.changes["rechunk"] == 1
    assert second.changes["retry"] == 1
    assert texts.count(SHARED_PARAGRAPH) == 1
    assert sorted(texts) == sorted([SHARED_PARAGRAPH, own_a, own_b])
