"""Tests of the `dedupe_exact` operator."""

from __future__ import annotations

import hashlib

import pytest

from operators.context import RunContext
from operators.dedupe_exact import DedupeExactOperator, normalize_for_hash, normalized_text_hash
from operators.records import DUPLICATE, FILTERED, PENDING, Document, Section

REPORT = "The annual report shows revenue grew by 4% in 2023."
REPORT_ZH = "年度报告显示，二〇二三年收入增长了百分之四。"


def make_doc(doc_id: str, *texts: str) -> Document:
    sections = [Section(text) for text in texts]
    return Document(doc_id=doc_id, uri=f"file:///{doc_id}", source="test", sections=sections)


def doc_text(doc: Document) -> str:
    return "\n\n".join(section.text for section in doc.sections if section.text)


def run(docs: list[Document], indexed: dict[str, str] | None = None) -> DedupeExactOperator:
    operator = DedupeExactOperator()
    operator.begin(RunContext(run_id="run-1", indexed_text_hashes=indexed or {}))
    operator.process_batch(docs)
    operator.finish()
    return operator


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (REPORT, REPORT.upper()),
        (REPORT, REPORT.replace(" ", "\n")),
        (REPORT, f"  {REPORT}\t\n"),
        ("ﬁnal ofﬁce", "final office"),
        ("Ｆｕｌｌ ｗｉｄｔｈ", "full width"),
        ("Straße", "STRASSE"),
        (REPORT_ZH, REPORT_ZH.replace("，", ",")),
    ],
)
def test_normalized_hash_equal_for_variants(first, second):
    assert normalized_text_hash(first) == normalized_text_hash(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (REPORT, REPORT.replace("4%", "5%")),
        (REPORT, REPORT + " More."),
        ("ab", "a b"),
        (REPORT_ZH, REPORT_ZH.replace("四", "五")),
    ],
)
def test_normalized_hash_differs_for_changes(first, second):
    assert normalized_text_hash(first) != normalized_text_hash(second)


def test_normalized_hash_is_sha256_of_normalized_text():
    expected = hashlib.sha256("a b c".encode("utf-8")).hexdigest()

    assert normalize_for_hash("  A\n\nB\tc ") == "a b c"
    assert normalized_text_hash("  A\n\nB\tc ") == expected


def test_dedupe_keeps_first_document():
    docs = [make_doc("a", REPORT), make_doc("b", REPORT.upper()), make_doc("c", REPORT)]
    run(docs)

    assert docs[0].state == PENDING
    assert docs[1].state == DUPLICATE
    assert docs[1].duplicate_of == "a"
    assert docs[1].reason == "duplicate of a"
    assert docs[2].duplicate_of == "a"


def test_dedupe_keeper_follows_input_order():
    # The executor sorts by doc_id, so whichever document comes first is the keeper.
    docs = [make_doc("z", REPORT), make_doc("a", REPORT)]
    run(docs)

    assert docs[0].state == PENDING
    assert docs[1].duplicate_of == "z"


def test_dedupe_stores_hash_on_every_document():
    docs = [make_doc("a", REPORT), make_doc("b", REPORT), make_doc("c", REPORT_ZH)]
    run(docs)

    for doc in docs:
        assert doc.metadata["text_hash"] == normalized_text_hash(doc_text(doc))


def test_dedupe_compares_text_across_sections():
    docs = [make_doc("a", "Page one.", "Page two."), make_doc("b", "Page one.\n\nPage two.")]
    run(docs)

    assert docs[1].duplicate_of == "a"


def test_dedupe_state_spans_batches():
    operator = DedupeExactOperator()
    operator.begin(RunContext(run_id="run-1"))
    first = make_doc("a", REPORT)
    second = make_doc("b", REPORT)
    operator.process_batch([first])
    operator.process_batch([second])

    assert second.duplicate_of == "a"


def test_dedupe_uses_indexed_text_hashes():
    indexed = {normalized_text_hash(REPORT): "old-doc"}
    docs = [make_doc("a", REPORT), make_doc("b", REPORT_ZH)]
    operator = run(docs, indexed)

    assert docs[0].state == DUPLICATE
    assert docs[0].duplicate_of == "old-doc"
    assert docs[1].state == PENDING
    assert operator.take_stats()["duplicates_of_indexed"] == 1


def test_dedupe_document_matching_itself_is_kept():
    indexed = {normalized_text_hash(REPORT): "a"}
    docs = [make_doc("a", REPORT)]
    run(docs, indexed)

    assert docs[0].state == PENDING


def test_dedupe_begin_resets_previous_run():
    operator = DedupeExactOperator()
    operator.begin(RunContext(run_id="run-1"))
    operator.process_batch([make_doc("a", REPORT)])
    operator.begin(RunContext(run_id="run-2"))
    second_run = make_doc("b", REPORT)
    operator.process_batch([second_run])

    assert second_run.state == PENDING


@pytest.mark.parametrize("texts", [(), ("",), (" \n\t ",)])
def test_dedupe_never_marks_empty_documents(texts):
    docs = [make_doc("a", *texts), make_doc("b", *texts)]
    run(docs)

    assert docs[1].state == PENDING
    assert docs[1].metadata["text_hash"] == normalized_text_hash("")


def test_dedupe_skips_finished_documents():
    filtered = make_doc("a", REPORT)
    filtered.mark_filtered("clean", "no text left after cleaning")
    pending = make_doc("b", REPORT)
    operator = run([filtered, pending])
    stats = operator.take_stats()

    assert filtered.state == FILTERED
    assert "text_hash" not in filtered.metadata
    assert pending.state == PENDING
    assert stats["in"] == 1


def test_dedupe_counts_duplicates():
    operator = run([make_doc("a", REPORT), make_doc("b", REPORT), make_doc("c", REPORT_ZH)])
    stats = operator.take_stats()

    assert stats["in"] == 3
    assert stats["out"] == 2
    assert stats["dropped_duplicate"] == 1


def test_dedupe_rejects_arguments():
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        DedupeExactOperator(threshold=0.9)
