"""Tests of `dedupe_minhash`: signatures, banding, clustering, keepers and the signature store."""

from __future__ import annotations

import logging
import pickle
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from operators.dedupe_minhash import DedupeMinHash
from operators.minhash import signature as signature_module
from operators.minhash.lsh import optimal_bands
from operators.minhash.signature import (
    MinHashParams,
    compute_signature,
    estimate_jaccard,
    is_empty,
    shingle_mode,
)
from operators.minhash.store import STORE_FILE_NAME, SignatureStore
from operators.minhash.synthetic import duplicate_precision_recall, generate_corpus
from operators.records import DUPLICATE, FILTERED, PENDING, Document

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "docs"
requires_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"shared test corpus not found at {CORPUS}"
)

ENGLISH = (
    "The committee met on Tuesday to review the budget for the coming year. Members agreed that "
    "the maintenance fund needs more money, because the roof of the north building leaks. "
    "They asked the treasurer to prepare two options before the next meeting in March."
)


def make_doc(doc_id: str, text: str) -> Document:
    doc = Document(doc_id=doc_id, uri=f"memory://{doc_id}", source="test")
    doc.set_text(text)
    return doc


def run_operator(docs: list[Document], context=None, batch_size: int = 16, **args) -> DedupeMinHash:
    operator = DedupeMinHash(**args)
    operator.begin(context)
    for start in range(0, len(docs), batch_size):
        operator.process_batch(docs[start : start + batch_size])
    operator.finish()
    return operator


def pdf_text(relative: str) -> str:
    from pypdf import PdfReader

    reader = PdfReader(CORPUS / relative)
    return "\n\n".join(page.extract_text() or "" for page in reader.pages)


def exact_jaccard(first: str, second: str, params: MinHashParams) -> float:
    def shingles(text: str) -> set[tuple[str, ...]]:
        if shingle_mode(text) == "word":
            tokens, n = re.findall(r"\w+", text.lower()), params.word_ngram
        else:
            tokens, n = list(re.sub(r"[\W_]+", "", text.lower())), params.char_ngram
        return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}

    a, b = shingles(first), shingles(second)
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def synthetic_corpus():
    return generate_corpus(500, seed=11)


def run_context(tmp_path: Path, removed: set[str] | None = None):
    from operators.context import RunContext

    return RunContext(run_id="test", workspace=tmp_path, removed_doc_ids=removed or set())


# ---- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ENGLISH, "word"),
        ("委员会周二开会审查来年的预算。成员们同意维修基金需要更多资金。", "char"),
        ("委員会は火曜日に来年度の予算を審議しました。", "char"),
        ("คณะกรรมการประชุมเมื่อวันอังคารเพื่อทบทวนงบประมาณ", "char"),
        ("위원회는 화요일에 내년 예산을 검토하기 위해 모였습니다.", "word"),
        ("", "word"),
    ],
    ids=["english", "chinese", "japanese", "thai", "korean", "empty"],
)
def test_shingle_mode_by_script(text, expected):
    assert shingle_mode(text) == expected


def test_signature_shape_and_dtype():
    signature = compute_signature(ENGLISH, MinHashParams(num_perm=64))
    assert signature.shape == (64,)
    assert signature.dtype == np.uint32


def test_signature_is_deterministic():
    params = MinHashParams()
    assert np.array_equal(compute_signature(ENGLISH, params), compute_signature(ENGLISH, params))


def test_signature_depends_on_seed():
    first = compute_signature(ENGLISH, MinHashParams(seed=1))
    second = compute_signature(ENGLISH, MinHashParams(seed=2))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    ("text", "empty"),
    [("", True), ("  ...  ---  ", True), ("hello", False), ("两个字", False)],
    ids=["empty", "punctuation-only", "one-word", "short-chinese"],
)
def test_signature_of_short_texts(text, empty):
    assert is_empty(compute_signature(text, MinHashParams())) is empty


@pytest.mark.parametrize("language", ["en", "zh"])
def test_signature_independent_of_block_sizes(monkeypatch, synthetic_corpus, language):
    text = next(doc.text for doc in synthetic_corpus if doc.language == language)
    params = MinHashParams()
    expected = compute_signature(text, params)
    monkeypatch.setattr(signature_module, "TEXT_BLOCK_CHARS", 37)
    monkeypatch.setattr(signature_module, "HASH_BLOCK_SHINGLES", 5)
    assert np.array_equal(compute_signature(text, params), expected)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_signature_memory_is_bounded(monkeypatch, synthetic_corpus, language):
    monkeypatch.setattr(signature_module, "TEXT_BLOCK_CHARS", 4096)
    monkeypatch.setattr(signature_module, "HASH_BLOCK_SHINGLES", 256)
    text = "\n\n".join(doc.text for doc in synthetic_corpus[:40] if doc.language == language)
    peaks = []
    for copies in (1, 10):
        long_text = text * copies
        tracemalloc.start()
        compute_signature(long_text, MinHashParams())
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert len(text) > 4 * 4096
    assert peaks[1] < peaks[0] + 256 * 1024


def test_signature_params_survive_pickling():
    params = MinHashParams(num_perm=32, word_ngram=2, char_ngram=3, seed=5)
    restored = pickle.loads(pickle.dumps(params))
    assert np.array_equal(compute_signature(ENGLISH, restored), compute_signature(ENGLISH, params))


def test_estimate_tracks_exact_jaccard(synthetic_corpus):
    params = MinHashParams()
    originals = {doc.group: doc for doc in synthetic_corpus if doc.is_original}
    errors = []
    for doc in synthetic_corpus:
        if doc.is_original:
            continue
        original = originals[doc.group]
        estimate = estimate_jaccard(
            compute_signature(doc.text, params), compute_signature(original.text, params)
        )
        errors.append(estimate - exact_jaccard(doc.text, original.text, params))
    # The standard deviation of the estimate is sqrt(J(1-J)/128), about 0.027 at J = 0.9.
    assert abs(float(np.mean(errors))) < 0.01
    assert float(np.mean(np.abs(errors))) < 0.03


# ---- banding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [64, 128])
def test_optimal_bands_match_datasketch(threshold, num_perm):
    # `_optimal_param` is private to datasketch (present in 2.0.0), so skip if it moves.
    datasketch_lsh = pytest.importorskip("datasketch.lsh")
    if not hasattr(datasketch_lsh, "_optimal_param"):
        pytest.skip("datasketch.lsh._optimal_param not found in this datasketch version")

    expected = datasketch_lsh._optimal_param(threshold, num_perm, 0.5, 0.5)
    assert optimal_bands(threshold, num_perm, 0.5, 0.5) == expected


def test_optimal_bands_fit_num_perm():
    bands, rows = optimal_bands(0.8, 128)
    assert bands * rows <= 128


# ---- real documents --------------------------------------------------------------------------


@requires_corpus
def test_memo_duplicate_page_detected():
    memo = make_doc("memo", pdf_text("unstructured/pdf/fake-memo.pdf"))
    doubled = make_doc("memo-2", pdf_text("unstructured/pdf/fake-memo-with-duplicate-page.pdf"))
    run_operator([memo, doubled], keep="first_by_id")
    assert doubled.state == DUPLICATE
    assert doubled.duplicate_of == "memo"
    assert doubled.similarity >= 0.8


@requires_corpus
def test_debian_translations_are_distinct():
    english = make_doc("en", pdf_text("debian/project-history.en.pdf"))
    japanese = make_doc("ja", pdf_text("debian/project-history.ja.pdf"))
    run_operator([english, japanese])
    assert english.state == PENDING
    assert japanese.state == PENDING


# ---- clustering and keepers ------------------------------------------------------------------


def test_synthetic_precision_recall(synthetic_corpus):
    docs = [make_doc(doc.doc_id, doc.text) for doc in synthetic_corpus]
    run_operator(docs, threshold=0.8, batch_size=64)
    duplicate_of = {doc.doc_id: doc.duplicate_of for doc in docs if doc.state == DUPLICATE}
    precision, recall = duplicate_precision_recall(synthetic_corpus, duplicate_of)
    assert precision >= 0.95
    assert recall >= 0.95


def test_decisions_independent_of_batch_size(synthetic_corpus):
    subset = synthetic_corpus[:200]
    outcomes = []
    for batch_size in (1, 7, 200):
        docs = [make_doc(doc.doc_id, doc.text) for doc in subset]
        run_operator(docs, batch_size=batch_size)
        outcomes.append([(doc.state, doc.duplicate_of) for doc in docs])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == outcomes[2]


def test_add_signatures_matches_process_batch(synthetic_corpus):
    subset = synthetic_corpus[:200]
    local_docs = [make_doc(doc.doc_id, doc.text) for doc in subset]
    run_operator(local_docs)

    # What a Ray executor does: compute signatures elsewhere, then cluster in one place.
    remote_docs = [make_doc(doc.doc_id, doc.text) for doc in subset]
    operator = DedupeMinHash()
    operator.begin(None)
    params = pickle.loads(pickle.dumps(operator.params))
    operator.add_signatures(
        remote_docs, [compute_signature(doc.text, params) for doc in remote_docs]
    )
    operator.finish()
    assert [(d.state, d.duplicate_of) for d in remote_docs] == [
        (d.state, d.duplicate_of) for d in local_docs
    ]


def cluster_of_three() -> list[Document]:
    """Three near-duplicates: "b" is the longest, "c" comes first, "a" has the smallest id."""
    return [
        make_doc("c", ENGLISH),
        make_doc("b", ENGLISH + " The meeting closed at noon after a short vote."),
        make_doc("a", ENGLISH.replace("Tuesday", "Wednesday")),
    ]


@pytest.mark.parametrize(
    ("keep", "keeper"),
    [("longest", "b"), ("earliest", "c"), ("first_by_id", "a")],
)
def test_keep_rule_picks_keeper(keep, keeper):
    docs = cluster_of_three()
    run_operator(docs, keep=keep)
    states = {doc.doc_id: (doc.state, doc.duplicate_of) for doc in docs}
    assert states[keeper] == (PENDING, None)
    for doc_id in {"a", "b", "c"} - {keeper}:
        assert states[doc_id] == (DUPLICATE, keeper)


def test_duplicate_reason_and_similarity():
    docs = cluster_of_three()
    run_operator(docs, keep="earliest")
    duplicate = docs[2]
    expected = estimate_jaccard(
        compute_signature(docs[2].text, MinHashParams()),
        compute_signature(docs[0].text, MinHashParams()),
    )
    assert duplicate.reason == "near-duplicate of c"
    assert duplicate.similarity == pytest.approx(expected)


def test_documents_without_shingles_are_kept():
    docs = [make_doc("x", "..."), make_doc("y", "...")]
    operator = run_operator(docs)
    assert [doc.state for doc in docs] == [PENDING, PENDING]
    assert operator.stats["no_shingles"] == 2


def test_terminal_documents_are_ignored():
    dropped = make_doc("a", ENGLISH)
    dropped.mark_filtered("clean", "too short")
    kept = make_doc("b", ENGLISH)
    run_operator([dropped, kept])
    assert dropped.state == FILTERED
    assert kept.state == PENDING


def test_stats_count_in_and_out():
    operator = run_operator(cluster_of_three())
    assert operator.stats["in"] == 3
    assert operator.stats["out"] == 1
    assert operator.stats["dropped_duplicate"] == 2


def test_threshold_one_keeps_edited_copy():
    docs = cluster_of_three()[:1] + [make_doc("z", ENGLISH.replace("March", "April"))]
    run_operator(docs, threshold=1.0)
    assert docs[1].state == PENDING


# ---- incremental runs ------------------------------------------------------------------------


def test_incremental_run_matches_stored_document(tmp_path):
    run_operator([make_doc("old", ENGLISH)], context=run_context(tmp_path))
    assert (tmp_path / "minhash" / STORE_FILE_NAME).exists()

    copy = make_doc("new", ENGLISH.replace("two options", "three options"))
    run_operator([copy], context=run_context(tmp_path))
    assert copy.state == DUPLICATE
    assert copy.duplicate_of == "old"


def test_stored_document_beats_longer_new_one(tmp_path):
    run_operator([make_doc("zz-old", ENGLISH)], context=run_context(tmp_path), keep="longest")
    longer = make_doc("aa-new", ENGLISH + " The meeting closed at noon after a short vote.")
    run_operator([longer], context=run_context(tmp_path), keep="longest")
    assert longer.duplicate_of == "zz-old"


def test_removed_keeper_is_not_matched(tmp_path):
    copy_text = ENGLISH.replace("two options", "three options")
    keeper = make_doc("keeper", ENGLISH)
    copy = make_doc("copy", copy_text)
    run_operator([keeper, copy], context=run_context(tmp_path), keep="earliest")
    assert copy.duplicate_of == "keeper"

    # The keeper is deleted, so the engine processes its duplicate again in the next run.
    again = make_doc("copy", copy_text)
    run_operator([again], context=run_context(tmp_path, removed={"keeper"}))
    assert again.state == PENDING
    assert SignatureStore.load(tmp_path / "minhash", MinHashParams()).doc_ids == ["copy"]

    # The store on disk no longer contains the keeper either.
    later = make_doc("later", copy_text)
    run_operator([later], context=run_context(tmp_path))
    assert later.duplicate_of == "copy"


def test_reprocessed_document_not_self_matched(tmp_path):
    run_operator([make_doc("a", ENGLISH)], context=run_context(tmp_path))
    same = make_doc("a", ENGLISH)
    run_operator([same], context=run_context(tmp_path))
    assert same.state == PENDING


def test_parameter_change_ignores_store(tmp_path, caplog):
    run_operator([make_doc("old", ENGLISH)], context=run_context(tmp_path), seed=1)
    copy = make_doc("new", ENGLISH)
    with caplog.at_level(logging.WARNING, logger="operators.minhash.store"):
        run_operator([copy], context=run_context(tmp_path), seed=2)
    assert copy.state == PENDING
    assert "computed with parameters" in caplog.text


def test_threshold_change_keeps_store(tmp_path):
    run_operator([make_doc("old", ENGLISH)], context=run_context(tmp_path), threshold=0.8)
    copy = make_doc("new", ENGLISH)
    run_operator([copy], context=run_context(tmp_path), threshold=0.9)
    assert copy.duplicate_of == "old"


def test_store_save_leaves_no_temporary_files(tmp_path):
    run_operator([make_doc("a", ENGLISH)], context=run_context(tmp_path))
    assert sorted(path.name for path in (tmp_path / "minhash").iterdir()) == [STORE_FILE_NAME]


def test_corrupt_store_raises_clear_error(tmp_path):
    folder = tmp_path / "minhash"
    folder.mkdir()
    (folder / STORE_FILE_NAME).write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="delete the file"):
        DedupeMinHash().begin(run_context(tmp_path))
