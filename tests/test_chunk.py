"""Tests of the `chunk` operator with the bundled all-MiniLM-L6-v2 tokenizer."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from operators.chunk import ChunkOperator, chunk_id
from operators.chunk_planner import ANCHOR_SPACING
from operators.records import FILTERED, Document, Section
from operators.text_segmentation import split_clauses, split_sentences

SHARED = Path(__file__).resolve().parents[2] / "shared"
WAR_AND_PEACE = SHARED / "corpus/docs/unstructured/book-war-and-peace-1225p.txt"

ENGLISH = (
    "The ferry left the harbour at seven, as it had every morning for forty years. Its captain, "
    "a quiet woman named Ines, checked the weather twice before casting off. On calm days the "
    "crossing took twenty minutes; on stormy ones it could take an hour or more.\n\n"
    "Passengers rarely spoke during the trip. Some read newspapers, others watched the gulls "
    "follow the wake. A few regulars brought bread for the birds, although a sign asked them not "
    "to. Nobody ever enforced it.\n\n"
    "When the new bridge opened upstream, people expected the ferry to close. It did not. "
    "Tourists discovered it instead, and by summer the morning crossing was sold out every day."
)
CHINESE = (
    "城市的早晨总是从一杯热茶开始。街角的小店六点就开门了，老板娘把桌椅擦得干干净净。"
    "上班的人匆匆走过，有的买一个包子，有的只是点点头。你今天也来得这么早吗？"
    "她笑着问一位老顾客。老人说，年纪大了，睡不着，不如出来走走！\n\n"
    "图书馆在河的另一边。每到周末，学生们都会带着书本过桥去那里复习。"
    "馆里很安静，只能听见翻书的声音；窗外的树叶在风里轻轻摇动。"
)
JAPANESE = (
    "駅前の商店街は朝から賑やかだ。八百屋の主人は大きな声で野菜の名前を呼び、"
    "パン屋からは焼きたての香りが漂ってくる。今日は何を買おうか？"
    "母はいつもそう言いながら、結局同じものを選ぶ。それでも私は、この時間が好きだ！\n\n"
    "山の上の小さな寺には、古い鐘がある。毎年大晦日になると、村の人々が集まって鐘をつく。"
    "その音は谷を越えて、遠くの町まで届くという。"
)
THAI = "วันนี้อากาศดีมาก เราจะไปเที่ยวทะเลกัน ทุกคนเตรียมของให้พร้อมก่อนออกเดินทาง"
MIXED = "\n\n".join([ENGLISH, CHINESE, JAPANESE, THAI, "* * *", CHINESE + JAPANESE])

TEXTS = {"english": ENGLISH, "chinese": CHINESE, "japanese": JAPANESE, "mixed": MIXED}
SENTENCE_END = re.compile(r"[.!?。！？；]$")


def make_doc(text: str, doc_id: str = "doc-1") -> Document:
    return Document(doc_id=doc_id, uri=f"file:///{doc_id}", source="test", sections=[Section(text)])


def make_paragraphs(count: int) -> list[str]:
    """Return `count` English paragraphs of varying length built from ENGLISH's sentences."""
    sentences = split_sentences(ENGLISH, 0, len(ENGLISH))
    pool = [ENGLISH[start:end] for start, end in sentences]
    paragraphs = []
    for index in range(count):
        size = 1 + (index * 7) % 5
        picked = [pool[(index + offset) % len(pool)] for offset in range(size)]
        paragraphs.append(f"Part {index}. " + " ".join(picked))
    return paragraphs


@pytest.fixture(scope="module")
def chunker() -> ChunkOperator:
    operator = ChunkOperator()
    operator.ensure_setup()
    return operator


def build_chunker(max_tokens: int, overlap_tokens: int, bert_boundaries: bool = True):
    operator = ChunkOperator(max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    operator.ensure_setup()
    # False forces the path for tokenizers whose boundaries cannot be predicted: every chunk is
    # re-tokenized on its own.
    operator._bert_boundaries = bert_boundaries
    return operator


def model_token_count(operator: ChunkOperator, text: str) -> int:
    return len(operator._tokenizer.encode(text, add_special_tokens=False).ids)


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize(
    ("max_tokens", "overlap_tokens", "bert_boundaries"),
    [(12, 3, True), (40, 8, True), (254, 32, True), (12, 3, False), (5, 0, True)],
)
def test_chunk_spans_and_token_counts(name, max_tokens, overlap_tokens, bert_boundaries):
    operator = build_chunker(max_tokens, overlap_tokens, bert_boundaries)
    doc = make_doc(TEXTS[name])
    chunks = operator.chunk_document(doc)
    text = doc.text

    assert chunks
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.token_count == model_token_count(operator, chunk.text)
        assert chunk.token_count <= max_tokens
        assert chunk.text == chunk.text.strip()
        assert re.search(r"[^\W_]", chunk.text), f"chunk without letters: {chunk.text!r}"


def test_chunk_default_max_tokens_is_model_limit(chunker):
    # all-MiniLM-L6-v2 accepts 256 tokens including [CLS] and [SEP].
    assert chunker.args.max_tokens == 254


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"max_tokens": 255}, "exceeds the 254 tokens"),
        ({"max_tokens": 64, "overlap_tokens": 64}, "must be less than max_tokens=64"),
        ({"max_tokens": 0}, "greater than 0"),
        ({"tokenizer": "/nonexistent/model"}, "not a local SentenceTransformer folder"),
        ({"max_token": 100}, "Extra inputs are not permitted"),
    ],
)
def test_chunk_args_rejected(args, message):
    with pytest.raises(ValidationError, match=message):
        ChunkOperator(**args)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天下雨。明天晴天！后天呢？", ["今天下雨。", "明天晴天！", "后天呢？"]),
        ("「行こう。」と彼は言った。誰も答えない", ["「行こう。」", "と彼は言った。", "誰も答えない"]),
        ("第一步；第二步。", ["第一步；", "第二步。"]),
        ("半角の句点｡次の文", ["半角の句点｡", "次の文"]),
        ("It rained. Then it stopped!", ["It rained.", "Then it stopped!"]),
        ("Use e.g. salt. Then stir.", ["Use e.g. salt.", "Then stir."]),
        ("He said “Go.” She left.", ["He said “Go.”", "She left."]),
        ("Version 2.5 is out. 日本語です!次の文", ["Version 2.5 is out.", "日本語です!", "次の文"]),
        ("วันนี้อากาศดี เราไปทะเลกัน", ["วันนี้อากาศดี", "เราไปทะเลกัน"]),
    ],
)
def test_split_sentences_cases(text, expected):
    assert [text[start:end] for start, end in split_sentences(text, 0, len(text))] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("街角的小店，老板娘、顾客：都在", ["街角的小店，", "老板娘、", "顾客：", "都在"]),
        ("red, green; blue: done", ["red,", "green;", "blue:", "done"]),
        ("1,000 items", ["1,000 items"]),
    ],
)
def test_split_clauses_cases(text, expected):
    assert [text[start:end] for start, end in split_clauses(text, 0, len(text))] == expected


@pytest.mark.parametrize("name", ["chinese", "japanese"])
def test_chunk_cjk_ends_at_sentences(name):
    # Every sentence of these texts has at most 41 tokens, so no chunk needs a cut inside one.
    operator = build_chunker(max_tokens=48, overlap_tokens=0)
    chunks = operator.chunk_document(make_doc(TEXTS[name]))

    assert len(chunks) > 1
    for chunk in chunks:
        assert SENTENCE_END.search(chunk.text), f"chunk ends mid-sentence: {chunk.text!r}"


def test_chunk_title_joins_following_paragraph():
    operator = build_chunker(max_tokens=80, overlap_tokens=8)
    title = "Ferry crossings."
    body = " ".join(ENGLISH[start:end] for start, end in split_sentences(ENGLISH, 0, len(ENGLISH)))
    chunks = operator.chunk_document(make_doc(f"{title}\n\n{body}"))

    assert chunks[0].text.startswith(title)
    assert chunks[0].text != title
    assert chunks[0].token_count > 40


def test_chunk_prefers_paragraph_end_past_half():
    operator = build_chunker(max_tokens=70, overlap_tokens=0)
    first, *rest = ENGLISH.split("\n\n")
    long_paragraph = " ".join(" ".join(rest).split())
    text = f"{first}\n\n{long_paragraph}"
    chunks = operator.chunk_document(make_doc(text))

    # The first paragraph fills more than half of the chunk, so the chunk ends with it instead
    # of taking the long paragraph's first sentence as well.
    assert 35 < model_token_count(operator, first) < 70
    assert model_token_count(operator, long_paragraph) > 70
    assert chunks[0].text == first
    assert chunks[1].text.startswith("Passengers rarely spoke")


def test_chunk_short_text_fills_first_chunk():
    operator = build_chunker(max_tokens=80, overlap_tokens=30)
    words = " ".join(ENGLISH.split())
    text = words[: len(words) // 2].rsplit(" ", 1)[0]
    chunks = operator.chunk_document(make_doc(text))

    # More tokens than max_tokens - overlap_tokens, but the first chunk carries no overlap.
    assert 50 < model_token_count(operator, text) <= 80
    assert len(chunks) == 1
    assert chunks[0].text == text


def test_chunk_short_clause_takes_next_words():
    operator = build_chunker(max_tokens=84, overlap_tokens=0)
    long_clause = " ".join(["alpha"] * 81) + ","
    short_clause = "then beta gamma,"
    last_clause = " ".join(["delta"] * 82) + "."
    text = f"{long_clause} {short_clause} {last_clause}"
    chunks = operator.chunk_document(make_doc(text))

    # The short clause fits neither with the clause before it nor whole with the one after it.
    # Instead of a chunk of its own, it takes the first words of the next clause.
    assert model_token_count(operator, f"{long_clause} {short_clause}") > 84
    assert model_token_count(operator, f"{short_clause} {last_clause}") > 84
    assert chunks[0].text == long_clause
    assert chunks[1].text.startswith(short_clause + " delta")
    assert chunks[1].token_count > 42
    assert all(chunk.token_count <= 84 for chunk in chunks)


def test_chunk_overlap_repeats_previous_end():
    operator = build_chunker(max_tokens=48, overlap_tokens=16)
    doc = make_doc(ENGLISH)
    chunks = operator.chunk_document(doc)
    text = doc.text

    assert len(chunks) > 2
    for previous, chunk in zip(chunks, chunks[1:]):
        overlap = text[chunk.char_start : previous.char_end]
        assert chunk.char_start < previous.char_end, f"no overlap before {chunk.text!r}"
        assert chunk.char_start > previous.char_start
        assert model_token_count(operator, overlap) <= 16
        assert text[chunk.char_start - 1].isspace(), f"overlap starts mid-word: {overlap!r}"


def test_chunk_overlap_zero_gives_disjoint_chunks():
    operator = build_chunker(max_tokens=48, overlap_tokens=0)
    chunks = operator.chunk_document(make_doc(MIXED))

    for previous, chunk in zip(chunks, chunks[1:]):
        assert chunk.char_start >= previous.char_end


def test_chunk_overlap_in_chinese_uses_characters():
    # Sentences here are longer than 6 tokens, so the overlap falls back to single characters.
    operator = build_chunker(max_tokens=24, overlap_tokens=6)
    chunks = operator.chunk_document(make_doc(CHINESE))

    overlaps = [previous.char_end - chunk.char_start for previous, chunk in zip(chunks, chunks[1:])]
    assert any(overlap > 0 for overlap in overlaps)


def test_chunk_is_deterministic(chunker):
    first = chunker.chunk_document(make_doc(MIXED))
    second = ChunkOperator().chunk_document(make_doc(MIXED))

    assert [(c.chunk_id, c.char_start, c.char_end) for c in first] == [
        (c.chunk_id, c.char_start, c.char_end) for c in second
    ]


def test_chunk_ordinals_count_from_zero(chunker):
    chunks = chunker.chunk_document(make_doc(MIXED))

    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))


def test_chunk_id_counts_repeated_text():
    assert chunk_id("doc-1", "same text", 0) != chunk_id("doc-1", "same text", 1)
    assert chunk_id("doc-1", "same text", 0) != chunk_id("doc-2", "same text", 0)


def test_chunk_repeated_paragraphs_get_distinct_ids():
    operator = build_chunker(max_tokens=40, overlap_tokens=0)
    paragraph = "The same notice is printed at the end of every chapter of this manual."
    chunks = operator.chunk_document(make_doc("\n\n".join([paragraph] * 6)))

    assert len({chunk.chunk_id for chunk in chunks}) == len(chunks)


@pytest.mark.parametrize("position", [3, 40, 77])
def test_chunk_ids_stable_under_insertion(position):
    operator = build_chunker(max_tokens=64, overlap_tokens=8)
    paragraphs = make_paragraphs(80)
    inserted = "A new paragraph, written later, that says something else entirely."
    edited = paragraphs[:position] + [inserted] + paragraphs[position:]

    before = operator.chunk_document(make_doc("\n\n".join(paragraphs)))
    after = operator.chunk_document(make_doc("\n\n".join(edited)))
    before_ids = [chunk.chunk_id for chunk in before]
    after_ids = set(chunk.chunk_id for chunk in after)
    inserted_at = len("\n\n".join(paragraphs[:position]))
    changed = [chunk for chunk in before if chunk.chunk_id not in after_ids]

    assert len(before) > 30
    for chunk in before:
        if chunk.char_end < inserted_at:
            assert chunk.chunk_id in after_ids, f"chunk before insertion changed: {chunk.text!r}"
    # Chunks from the next anchor on are unchanged, and anchors come about ANCHOR_SPACING chunks
    # apart.
    assert len(changed) <= 3 * ANCHOR_SPACING
    assert before_ids[-1] in after_ids


def test_chunk_metadata_lists_pages():
    operator = build_chunker(max_tokens=40, overlap_tokens=0)
    pages = [
        Section(ENGLISH.split("\n\n")[0], {"page": 1}),
        Section(ENGLISH.split("\n\n")[1], {"page": 2}),
        Section("", {"page": 3}),
        Section(ENGLISH.split("\n\n")[2], {"page": 4}),
    ]
    doc = Document(doc_id="paged", uri="file:///paged.pdf", source="test", sections=pages)
    chunks = operator.chunk_document(doc)
    spans = doc.section_spans()

    for chunk in chunks:
        expected = [
            section.metadata["page"]
            for start, end, section in spans
            if start < chunk.char_end and end > chunk.char_start
        ]
        assert chunk.metadata["pages"] == expected
    assert chunks[0].metadata["pages"] == [1]
    assert chunks[-1].metadata["pages"][-1] == 4
    assert sorted({page for chunk in chunks for page in chunk.metadata["pages"]}) == [1, 2, 4]


def test_chunk_without_pages_has_no_page_metadata(chunker):
    chunks = chunker.chunk_document(make_doc(ENGLISH))

    assert "pages" not in chunks[0].metadata


@pytest.mark.parametrize("text", ["", "   \n\n  ", "* * *\n\n---\n\n。。", "\u3000"])
def test_chunk_filters_documents_without_text(chunker, text):
    doc = make_doc(text)
    [result] = chunker.process_batch([doc])

    assert result.state == FILTERED
    assert result.reason == "filtered by chunk: no chunkable text"
    assert result.chunks == []


def test_chunk_passes_finished_documents_through(chunker):
    doc = make_doc(ENGLISH)
    doc.mark_filtered("clean", "no text left after cleaning")
    chunker.take_stats()
    [result] = chunker.process_batch([doc])

    assert result.chunks == []
    assert chunker.take_stats()["in"] == 0


def test_chunk_counts_documents_and_chunks(chunker):
    chunker.take_stats()
    docs = chunker.process_batch([make_doc(ENGLISH, "a"), make_doc("* * *", "b")])
    stats = chunker.take_stats()

    assert stats["in"] == 2
    assert stats["out"] == 1
    assert stats["dropped_filtered"] == 1
    assert stats["chunks"] == len(docs[0].chunks)


@pytest.mark.skipif(not WAR_AND_PEACE.exists(), reason=f"{WAR_AND_PEACE} not found")
def test_chunk_large_novel_is_fast(chunker):
    doc = make_doc(WAR_AND_PEACE.read_text(encoding="utf-8"), "war-and-peace")
    started = time.perf_counter()
    chunks = chunker.chunk_document(doc)
    elapsed = time.perf_counter() - started
    text = doc.text
    encodings = chunker._tokenizer.encode_batch([c.text for c in chunks], add_special_tokens=False)

    # About 2 s on a 2-core x86 VM; the bound leaves room for slower CI machines.
    assert elapsed < 20, f"chunking 3.2 MB took {elapsed:.1f} s"
    assert len(chunks) > 3000
    for chunk, encoding in zip(chunks, encodings):
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.token_count == len(encoding.ids)
        assert chunk.token_count <= 254


@pytest.mark.parametrize("with_json", [True, False], ids=["tokenizer_json", "vocab_only"])
def test_tokenizer_matches_transformers(tmp_path, with_json):
    import shutil

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from operators.models import load_fast_tokenizer, resolve_model_path

    folder = resolve_model_path("all-MiniLM-L6-v2")
    copy = tmp_path / "model"
    ignore = None if with_json else shutil.ignore_patterns("tokenizer.json")
    shutil.copytree(folder, copy, ignore=ignore)
    texts = [ENGLISH, CHINESE, JAPANESE, "İstanbul ß ﬁne émigré"]

    loaded = Tokenizer.from_str(load_fast_tokenizer(str(copy)).to_str())
    loaded.no_truncation()  # tokenizer.json of this model truncates to 128 tokens
    loaded.no_padding()
    reference = AutoTokenizer.from_pretrained(str(copy), local_files_only=True)

    assert (copy / "tokenizer.json").is_file() == with_json
    for text in texts:
        assert loaded.encode(text, add_special_tokens=False).ids == reference(text, add_special_tokens=False)["input_ids"]
