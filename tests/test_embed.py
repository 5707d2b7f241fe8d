"""Tests of the `embed` operator with the bundled all-MiniLM-L6-v2 model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from operators.embed import EmbedOperator
from operators.models import model_revision
from operators.records import FILTERED, PENDING, Chunk, Document, sha256_hex

TEXTS = [
    "The ferry crosses the harbour every morning at seven.",
    "A boat carries passengers across the bay early each day.",
    "Quarterly revenue rose by four percent on strong exports.",
    "城市的早晨总是从一杯热茶开始。",
    "駅前の商店街は朝から賑やかだ。",
]


class MemoryCache:
    """An `EmbeddingCache` in a dict that records every call."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], Any] = {}
        self.get_calls: list[list[str]] = []
        self.put_calls: list[dict[str, Any]] = []

    def get_many(self, model_fp: str, text_hashes: list[str]) -> dict[str, Any]:
        self.get_calls.append(list(text_hashes))
        found = {}
        for text_hash in text_hashes:
            if (model_fp, text_hash) in self.vectors:
                found[text_hash] = self.vectors[(model_fp, text_hash)]
        return found

    def put_many(self, model_fp: str, vectors: dict[str, Any]) -> None:
        self.put_calls.append(dict(vectors))
        for text_hash, vector in vectors.items():
            self.vectors[(model_fp, text_hash)] = np.array(vector, copy=True)


def make_doc(doc_id: str, *texts: str) -> Document:
    chunks = [
        Chunk(
            chunk_id=f"{doc_id}-{ordinal}",
            text=text,
            ordinal=ordinal,
            char_start=0,
            char_end=len(text),
            token_count=1,
        )
        for ordinal, text in enumerate(texts)
    ]
    return Document(doc_id=doc_id, uri=f"file:///{doc_id}", source="test", chunks=chunks)


@pytest.fixture(scope="module")
def embedder() -> EmbedOperator:
    operator = EmbedOperator()
    operator.ensure_setup()
    return operator


@pytest.fixture()
def fresh_embedder(embedder) -> EmbedOperator:
    # The model is cached per process, so a second operator shares it and costs nothing to set up.
    operator = EmbedOperator()
    operator.ensure_setup()
    return operator


def test_embed_vectors_are_unit_float32(embedder):
    doc = make_doc("a", *TEXTS)
    embedder.process_batch([doc])

    for chunk in doc.chunks:
        assert chunk.vector.dtype == np.float32
        assert chunk.vector.shape == (384,)
        assert np.linalg.norm(chunk.vector) == pytest.approx(1.0, abs=1e-5)
        assert chunk.reused is False


def test_embed_without_normalize_matches_model(embedder):
    # all-MiniLM-L6-v2 ends in a Normalize module, so its vectors have unit length either way.
    operator = EmbedOperator(normalize=False)
    doc = make_doc("a", TEXTS[0])
    operator.process_batch([doc])
    expected = embedder._model.encode([TEXTS[0]], normalize_embeddings=False)[0]

    assert np.allclose(doc.chunks[0].vector, expected, atol=1e-5)


def test_embed_similar_texts_are_closer(embedder):
    doc = make_doc("a", *TEXTS[:3])
    embedder.process_batch([doc])
    ferry, boat, revenue = (chunk.vector for chunk in doc.chunks)

    assert float(ferry @ boat) > float(ferry @ revenue) + 0.2


def test_embed_matches_direct_encode(embedder):
    doc = make_doc("a", *TEXTS)
    embedder.process_batch([doc])
    expected = embedder._model.encode(TEXTS, normalize_embeddings=True)

    for chunk, vector in zip(doc.chunks, expected):
        assert np.allclose(chunk.vector, vector, atol=1e-5)


def test_embed_batches_across_documents(embedder):
    together = [make_doc("a", *TEXTS[:2]), make_doc("b", *TEXTS[2:])]
    alone = [make_doc("a", *TEXTS[:2]), make_doc("b", *TEXTS[2:])]
    embedder.process_batch(together)
    for doc in alone:
        embedder.process_batch([doc])

    for joint, single in zip(together, alone):
        for joint_chunk, single_chunk in zip(joint.chunks, single.chunks):
            assert np.allclose(joint_chunk.vector, single_chunk.vector, atol=1e-5)


def test_embed_records_model_metadata(embedder):
    doc = make_doc("a", TEXTS[0])
    embedder.process_batch([doc])

    assert doc.metadata["embedding"] == {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "revision": model_revision("all-MiniLM-L6-v2"),
        "dimension": 384,
        "normalized": True,
        "fingerprint": embedder.model_fingerprint(),
    }


def test_embed_dimension_and_revision(embedder):
    assert embedder.dimension() == 384
    assert embedder.model_revision() == model_revision("all-MiniLM-L6-v2")


@pytest.mark.parametrize(
    ("args", "same"),
    [
        ({}, True),
        ({"model": "sentence-transformers/all-MiniLM-L6-v2"}, True),
        ({"batch_size": 8}, True),
        ({"normalize": False}, False),
    ],
)
def test_embed_fingerprint_covers_vector_identity(embedder, args, same):
    other = EmbedOperator(**args)

    assert (other.model_fingerprint() == embedder.model_fingerprint()) is same


def test_embed_cache_hits_skip_encoding(fresh_embedder):
    cache = MemoryCache()
    fresh_embedder.attach_cache(cache)
    first = make_doc("a", *TEXTS)
    fresh_embedder.process_batch([first])
    first_stats = fresh_embedder.take_stats()
    second = make_doc("b", *reversed(TEXTS))
    fresh_embedder.process_batch([second])
    second_stats = fresh_embedder.take_stats()

    assert first_stats["chunks_embedded"] == len(TEXTS)
    assert first_stats["chunks_reused"] == 0
    assert second_stats["chunks_embedded"] == 0
    assert second_stats["chunks_reused"] == len(TEXTS)
    assert len(cache.put_calls) == 1
    for chunk in second.chunks:
        assert chunk.reused is True
        assert chunk.vector.dtype == np.float32
    for first_chunk, second_chunk in zip(first.chunks, reversed(second.chunks)):
        assert np.array_equal(first_chunk.vector, second_chunk.vector)


def test_embed_cache_partial_hits(fresh_embedder):
    cache = MemoryCache()
    fresh_embedder.attach_cache(cache)
    fresh_embedder.process_batch([make_doc("a", *TEXTS[:2])])
    fresh_embedder.take_stats()
    doc = make_doc("b", *TEXTS[:3])
    fresh_embedder.process_batch([doc])
    stats = fresh_embedder.take_stats()

    assert stats["chunks_reused"] == 2
    assert stats["chunks_embedded"] == 1
    assert [chunk.reused for chunk in doc.chunks] == [True, True, False]
    assert set(cache.put_calls[-1]) == {sha256_hex(TEXTS[2])}


def test_embed_cache_keys_use_fingerprint_and_text_hash(fresh_embedder):
    cache = MemoryCache()
    fresh_embedder.attach_cache(cache)
    fresh_embedder.process_batch([make_doc("a", TEXTS[0])])

    assert set(cache.vectors) == {(fresh_embedder.model_fingerprint(), sha256_hex(TEXTS[0]))}


def test_embed_encodes_repeated_text_once(fresh_embedder):
    cache = MemoryCache()
    fresh_embedder.attach_cache(cache)
    doc_a = make_doc("a", TEXTS[0], TEXTS[0])
    doc_b = make_doc("b", TEXTS[0])
    fresh_embedder.process_batch([doc_a, doc_b])

    assert len(cache.get_calls) == 1
    assert cache.get_calls[0] == [sha256_hex(TEXTS[0])]
    assert list(cache.put_calls[0]) == [sha256_hex(TEXTS[0])]
    assert np.array_equal(doc_a.chunks[1].vector, doc_b.chunks[0].vector)


def test_embed_filters_documents_without_chunks(embedder):
    doc = make_doc("empty")
    [result] = embedder.process_batch([doc])

    assert result.state == FILTERED
    assert result.reason == "filtered by embed: no chunks to embed"


def test_embed_passes_finished_documents_through(fresh_embedder):
    done = make_doc("a", TEXTS[0])
    done.mark_duplicate("b", "duplicate of b")
    pending = make_doc("b", TEXTS[1])
    result = fresh_embedder.process_batch([done, pending])
    stats = fresh_embedder.take_stats()

    assert result == [done, pending]
    assert pending.state == PENDING
    assert pending.chunks[0].vector is not None
    assert stats["in"] == 1
    assert stats["out"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"model": "/nonexistent/model"}, "not a local SentenceTransformer folder"),
        ({"batch_size": 0}, "greater than 0"),
        ({"device": "GPU please"}, "not a torch device name"),
        ({"dim": 128}, "Extra inputs are not permitted"),
    ],
)
def test_embed_args_rejected(args, message):
    with pytest.raises(ValidationError, match=message):
        EmbedOperator(**args)
