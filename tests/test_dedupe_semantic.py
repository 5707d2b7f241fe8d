"""Tests of `dedupe_semantic` with hand-built vectors, a LanceDB table and the bundled model."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from operators import dedupe_semantic
from operators.context import RunContext
from operators.dedupe_semantic import DedupeSemantic, SimHashIndex, choose_bands, normalize
from operators.records import DUPLICATE, PENDING, Chunk, Document

DIMENSION = 32


def unit(seed: int, dimension: int = DIMENSION) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dimension)
    return vector / np.linalg.norm(vector)


def at_distance(vector: np.ndarray, distance: float, seed: int) -> np.ndarray:
    """Return a unit vector whose cosine distance to the unit `vector` is exactly `distance`."""
    other = np.random.default_rng(seed).standard_normal(vector.shape[0])
    other -= (other @ vector) * vector
    other /= np.linalg.norm(other)
    cosine = 1.0 - distance
    return cosine * vector + math.sqrt(1.0 - cosine**2) * other


def make_doc(doc_id: str, vectors: list[np.ndarray | None]) -> Document:
    doc = Document(doc_id=doc_id, uri=f"memory://{doc_id}", source="test")
    doc.chunks = [
        Chunk(
            chunk_id=f"{doc_id}#{ordinal}",
            text=f"chunk {ordinal} of {doc_id}",
            ordinal=ordinal,
            char_start=0,
            char_end=1,
            token_count=1,
            vector=None if vector is None else np.asarray(vector, dtype=np.float32),
        )
        for ordinal, vector in enumerate(vectors)
    ]
    return doc


def run_operator(docs, context=None, batch_size: int = 8, **args) -> DedupeSemantic:
    operator = DedupeSemantic(**args)
    operator.begin(context)
    for start in range(0, len(docs), batch_size):
        operator.process_batch(docs[start : start + batch_size])
    operator.finish()
    return operator


def chunk_ids(doc: Document) -> list[str]:
    return [chunk.chunk_id for chunk in doc.chunks]


# ---- the in-run index ------------------------------------------------------------------------


@pytest.mark.parametrize("max_distance", [0.01, 0.05, 0.1, 0.2])
def test_choose_bands_reaches_target_recall(max_distance):
    bands, rows = choose_bands(max_distance)
    agree = 1.0 - math.acos(1.0 - max_distance) / math.pi
    assert 1.0 - (1.0 - agree**rows) ** bands >= 0.99


def test_simhash_index_finds_pairs_at_max_distance():
    dimension = 384
    bands, rows = choose_bands(0.05)
    index = SimHashIndex(dimension, bands, rows)
    stored = normalize(np.random.default_rng(1).standard_normal((400, dimension)))
    for vector, keys in zip(stored, index.band_keys(stored), strict=True):
        index.add(vector, keys)
    queries = np.stack([at_distance(v, 0.05, seed=i) for i, v in enumerate(stored)])
    found = [
        index.nearest(query, keys)
        for query, keys in zip(queries, index.band_keys(queries), strict=True)
    ]
    recall = np.mean([hit is not None and hit[0] == i for i, hit in enumerate(found)])
    assert recall >= 0.97


def test_simhash_index_without_candidates_returns_none():
    index = SimHashIndex(DIMENSION, *choose_bands(0.05))
    query = unit(0)[None, :]
    assert index.nearest(query[0], index.band_keys(query)[0]) is None


# ---- decisions on hand-built vectors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("distance", "duplicate"),
    [(0.0, True), (0.01, True), (0.045, True), (0.055, False), (0.3, False)],
)
def test_distance_boundary(distance, duplicate):
    first = make_doc("a", [unit(1)])
    second = make_doc("b", [at_distance(unit(1), distance, seed=2), unit(3)])
    run_operator([first, second])
    assert (chunk_ids(second) == ["b#1"]) is duplicate


def test_drop_counts_duplicates_on_kept_chunk():
    docs = [make_doc("a", [unit(1)]), make_doc("b", [unit(1), unit(2)]), make_doc("c", [unit(1)])]
    run_operator(docs)
    assert docs[0].chunks[0].metadata["duplicates"] == 2
    assert chunk_ids(docs[1]) == ["b#1"]


def test_document_without_chunks_left_is_duplicate():
    docs = [
        make_doc("a", [unit(1)]),
        make_doc("b", [unit(2)]),
        make_doc("c", [unit(2), at_distance(unit(1), 0.01, seed=5)]),
    ]
    run_operator(docs)
    third = docs[2]
    assert third.state == DUPLICATE
    assert third.duplicate_of == "b"
    assert third.similarity == pytest.approx(1.0)
    assert "b#0" in third.reason


def test_mark_keeps_chunks_and_document():
    docs = [make_doc("a", [unit(1)]), make_doc("b", [unit(1)])]
    run_operator(docs, action="mark")
    assert docs[1].state == PENDING
    assert docs[1].chunks[0].metadata["semantic_duplicate_of"] == "a#0"
    assert docs[0].chunks[0].metadata["duplicates"] == 1


def test_duplicate_within_one_document():
    doc = make_doc("a", [unit(1), unit(2), unit(1)])
    run_operator([doc])
    assert chunk_ids(doc) == ["a#0", "a#1"]
    assert doc.state == PENDING


def test_chunks_without_usable_vector_are_kept():
    doc = make_doc("a", [None, np.zeros(DIMENSION), None])
    run_operator([doc, make_doc("b", [None])])
    assert chunk_ids(doc) == ["a#0", "a#1", "a#2"]


def test_terminal_documents_are_untouched():
    keeper = make_doc("a", [unit(1)])
    filtered = make_doc("b", [unit(1)])
    filtered.mark_filtered("clean", "too short")
    filtered.chunks = [Chunk("b#0", "x", 0, 0, 1, 1, vector=unit(1))]
    run_operator([keeper, filtered])
    assert chunk_ids(filtered) == ["b#0"]
    assert "duplicates" not in keeper.chunks[0].metadata


def near_duplicate_corpus() -> list[Document]:
    """Twenty documents of three chunks, each chunk close to one of five base vectors."""
    rng = np.random.default_rng(7)
    bases = [unit(seed) for seed in range(5)]
    return [
        make_doc(
            f"d{i:02d}",
            [at_distance(bases[rng.integers(5)], 0.01, seed=100 + 3 * i + j) for j in range(3)],
        )
        for i in range(20)
    ]


def test_decisions_independent_of_batch_size():
    outcomes = []
    for batch_size in (1, 3, 20):
        docs = near_duplicate_corpus()
        run_operator(docs, batch_size=batch_size)
        outcomes.append([(doc.state, doc.duplicate_of, chunk_ids(doc)) for doc in docs])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == outcomes[2]


def test_dimension_change_raises():
    operator = DedupeSemantic()
    operator.begin(None)
    operator.process_batch([make_doc("a", [unit(1)])])
    with pytest.raises(ValueError, match="dimension"):
        operator.process_batch([make_doc("b", [unit(1, dimension=16)])])


# ---- chunks already indexed ------------------------------------------------------------------


@pytest.fixture
def chunks_table(tmp_path):
    import lancedb

    rows = [
        {"chunk_id": "old-a#0", "doc_id": "old-a", "vector": unit(1)},
        {"chunk_id": "old-b#0", "doc_id": "old-b", "vector": at_distance(unit(2), 0.001, seed=9)},
        {"chunk_id": "old-c#0", "doc_id": "old-c", "vector": at_distance(unit(2), 0.02, seed=10)},
    ]
    for row in rows:
        row["vector"] = row["vector"].astype(np.float32).tolist()
    return lancedb.connect(tmp_path / "lance").create_table("chunks", data=rows)


def table_context(table, removed=()) -> RunContext:
    return RunContext(run_id="test", chunks_table=table, removed_doc_ids=set(removed))


def test_indexed_chunk_is_matched(chunks_table):
    doc = make_doc("new", [unit(1), unit(4)])
    run_operator([doc], context=table_context(chunks_table))
    assert chunk_ids(doc) == ["new#1"]


def test_indexed_match_is_marked(chunks_table):
    doc = make_doc("new", [unit(1)])
    run_operator([doc], context=table_context(chunks_table), action="mark")
    assert doc.chunks[0].metadata["semantic_duplicate_of"] == "old-a#0"


def test_indexed_match_beats_run_match(chunks_table):
    docs = [make_doc("a-new", [unit(1), unit(4)]), make_doc("b-new", [unit(4), unit(1)])]
    run_operator(docs, context=table_context(chunks_table), action="mark")
    assert docs[1].chunks[1].metadata["semantic_duplicate_of"] == "old-a#0"


def test_document_matching_only_indexed_chunks_is_duplicate(chunks_table):
    doc = make_doc("new", [unit(1)])
    run_operator([doc], context=table_context(chunks_table))
    assert doc.duplicate_of == "old-a"


def test_removed_documents_are_skipped(chunks_table):
    doc = make_doc("new", [unit(1)])
    run_operator([doc], context=table_context(chunks_table, removed={"old-a"}))
    assert chunk_ids(doc) == ["new#0"]


def test_nearest_removed_row_falls_back_to_next(chunks_table):
    doc = make_doc("new", [unit(2)])
    run_operator([doc], context=table_context(chunks_table, removed={"old-b"}), action="mark")
    assert doc.chunks[0].metadata["semantic_duplicate_of"] == "old-c#0"


def table_with_removed_neighbours(tmp_path, count: int):
    """Return a table with `count` removed rows nearest to unit(1) and one acceptable row."""
    import lancedb

    rows = [
        {
            "chunk_id": f"gone-{i}#0",
            "doc_id": f"gone-{i}",
            "vector": at_distance(unit(1), 0.001 * i, i),
        }
        for i in range(count)
    ]
    rows.append({"chunk_id": "kept#0", "doc_id": "kept", "vector": at_distance(unit(1), 0.03, 99)})
    for row in rows:
        row["vector"] = row["vector"].astype(np.float32).tolist()
    return lancedb.connect(tmp_path / "lance").create_table("chunks", data=rows)


def test_wide_search_past_search_limit(tmp_path):
    table = table_with_removed_neighbours(tmp_path, 6)
    removed = {f"gone-{i}" for i in range(6)}
    doc = make_doc("new", [unit(1)])
    operator = run_operator([doc], context=table_context(table, removed), action="mark")
    assert doc.chunks[0].metadata["semantic_duplicate_of"] == "kept#0"
    assert operator.stats["table_filtered_searches"] == 1
    assert operator.stats["table_sql_filtered_searches"] == 0


def test_sql_filter_past_wide_searches(tmp_path, monkeypatch):
    monkeypatch.setattr(dedupe_semantic, "WIDE_SEARCH_LIMITS", (5,))
    table = table_with_removed_neighbours(tmp_path, 6)
    removed = {f"gone-{i}" for i in range(6)}
    doc = make_doc("new", [unit(1)])
    operator = run_operator([doc], context=table_context(table, removed), action="mark")
    assert doc.chunks[0].metadata["semantic_duplicate_of"] == "kept#0"
    assert operator.stats["table_sql_filtered_searches"] == 1


def test_own_indexed_rows_are_skipped(chunks_table):
    doc = make_doc("old-a", [unit(1)])
    run_operator([doc], context=table_context(chunks_table))
    assert chunk_ids(doc) == ["old-a#0"]


# ---- real embeddings -------------------------------------------------------------------------

PARAPHRASES = [
    (
        "The quarterly report shows revenue grew by ten percent.",
        "The quarterly report shows that revenue grew by 10 percent.",
    ),
    (
        "Please restart the server before installing the update.",
        "Please restart the server before you install the update.",
    ),
    (
        "The meeting has been moved to Thursday afternoon.",
        "The meeting was moved to Thursday afternoon.",
    ),
    (
        "Water boils at 100 degrees Celsius at sea level.",
        "At sea level, water boils at one hundred degrees Celsius.",
    ),
]
UNRELATED = [
    (
        "The library opens at nine in the morning.",
        "Stock prices fell sharply after the announcement.",
    ),
    ("Debian is a free operating system.", "The committee approved the new budget."),
    ("The meeting has been moved to Thursday afternoon.", "The meeting has been cancelled."),
]


@pytest.fixture(scope="module")
def embed():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = pytest.importorskip("operators.models")
    try:
        model = models.load_sentence_transformer("all-MiniLM-L6-v2")
    except models.ModelNotFoundError as err:
        pytest.skip(f"bundled embedding model unavailable: {err}")

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    return encode


@pytest.mark.parametrize(
    ("first", "second"), PARAPHRASES, ids=["revenue", "restart", "meeting", "boiling"]
)
def test_paraphrase_is_dropped(embed, first, second):
    vectors = embed([first, second])
    docs = [make_doc("a", [vectors[0]]), make_doc("b", [vectors[1]])]
    run_operator(docs)
    assert docs[1].state == DUPLICATE
    assert docs[1].duplicate_of == "a"


@pytest.mark.parametrize(
    ("first", "second"), UNRELATED, ids=["library-stocks", "debian-budget", "moved-cancelled"]
)
def test_unrelated_sentence_is_kept(embed, first, second):
    vectors = embed([first, second])
    docs = [make_doc("a", [vectors[0]]), make_doc("b", [vectors[1]])]
    run_operator(docs)
    assert chunk_ids(docs[1]) == ["b#0"]
