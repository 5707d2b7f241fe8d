"""Tests of the `clean` operator and its header and footer detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from operators.clean import CleanOperator
from operators.page_furniture import edge_line_key
from operators.records import FILTERED, PENDING, Document, Section

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEBIAN_HISTORY_PDF = SHARED / "corpus/docs/debian/project-history.en.pdf"

BODY_EN = [
    "The survey covered twelve villages along the northern coast.",
    "Rainfall was recorded every morning at eight by volunteers.",
    "Most stations reported gaps during the winter storms.",
]
BODY_JA = ["今年の調査は北部の沿岸で行われた。", "毎朝八時に雨量を記録した。", "冬の嵐の間は欠測が多かった。"]


def make_doc(*section_texts: str, doc_id: str = "doc-1") -> Document:
    sections = [Section(text, {"page": number}) for number, text in enumerate(section_texts, 1)]
    return Document(doc_id=doc_id, uri=f"file:///{doc_id}", source="test", sections=sections)


def clean_one(*section_texts: str, **args) -> Document:
    [doc] = CleanOperator(**args).process_batch([make_doc(*section_texts)])
    return doc


@pytest.fixture(scope="module")
def cleaner() -> CleanOperator:
    return CleanOperator()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ﬁnancial ﬂows", "financial flows"),
        ("the oﬃce", "the office"),
        ("ﬀ ﬃ ﬄ ﬅ", "ff ffi ffl st"),
        ("Ｆｕｌｌ　ｗｉｄｔｈ １２３", "Full width 123"),
        ("x²", "x2"),
        ("e\u0301te\u0301", "été"),
        ("non\u00a0breaking", "non breaking"),
        ("wait…", "wait..."),
    ],
)
def test_clean_unicode_compatibility_forms(cleaner, raw, expected):
    assert cleaner.clean_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # NFKC would turn these into ASCII !?;:,() but CJK text keeps its full-width punctuation.
        ("本当ですか？はい！", "本当ですか？はい！"),
        ("注意：第一；第二，（略）", "注意：第一；第二，（略）"),
        # Ideographic punctuation is unchanged by NFKC, and half-width forms become full-width.
        ("今日は晴れ。「明日」、雨", "今日は晴れ。「明日」、雨"),
        ("半角｡｢引用｣､", "半角。「引用」、"),
        ("ｶﾀｶﾅ", "カタカナ"),
    ],
)
def test_clean_keeps_cjk_punctuation(cleaner, raw, expected):
    assert cleaner.clean_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("bell\x07 and null\x00 gone", "bell and null gone"),
        ("tab\tkept\nnewline kept", "tab\tkept\nnewline kept"),
        ("crlf\r\nand cr\rend", "crlf\nand cr\nend"),
        ("page one\x0cpage two", "page one\npage two"),
        ("soft\u00adhyphen zero\u200bwidth \ufeffbom", "softhyphen zerowidth bom"),
        ("c1\x85next line", "c1\nnext line"),
        ("lone \ud800surrogate", "lone surrogate"),
    ],
)
def test_clean_control_characters(cleaner, raw, expected):
    assert cleaner.clean_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("too    many   spaces", "too many spaces"),
        ("trailing   \nspaces\t \n", "trailing\nspaces"),
        ("  indented line", "indented line"),
        ("one\n\n\n\n\ntwo", "one\n\ntwo"),
        ("blank\n   \n \t \nlines", "blank\n\nlines"),
        ("col1 \t col2\t\tcol3", "col1\tcol2\tcol3"),
        ("日本語の文章です。\n次の行です。", "日本語の文章です。\n次の行です。"),
        ("中文句子。英文 English 混排。", "中文句子。英文 English 混排。"),
    ],
)
def test_clean_whitespace(cleaner, raw, expected):
    assert cleaner.clean_text(raw) == expected


# A 1x1 PNG file in base64, repeated to the length of a real inline image.
BASE64_BLOB = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg"
) * 3
MIME_LINES = "\n".join(BASE64_BLOB[start : start + 76] for start in range(0, 228, 76))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Before <script type='text/javascript'>var a = 1;\nrun(a);</script>after", "Before after"),
        ("Text<STYLE>\nbody { margin: 0 }\n</STYLE> more", "Text more"),
        (f'Logo <img src="data:image/png;base64,{BASE64_BLOB}"> here', 'Logo <img src=""> here'),
        (f"Attachment:\n{BASE64_BLOB}\nEnd", "Attachment:\n\nEnd"),
        (f"Mail body\n{MIME_LINES}\nBye", "Mail body\nBye"),
    ],
)
def test_clean_removes_markup_leftovers(cleaner, raw, expected):
    assert cleaner.clean_text(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sha256 " + "0123456789abcdef" * 4,
        "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.",
        "ACGT" * 60,
        "x < y and y > z",
    ],
)
def test_clean_keeps_text_resembling_markup(cleaner, text):
    assert cleaner.clean_text(text) == text


def test_clean_markup_removal_can_be_turned_off():
    doc = clean_one("A <script>x()</script> B", remove_markup=False)

    assert doc.text == "A <script>x()</script> B"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("Page 3 of 9", "page 0 of 0"),
        ("Page 12 of 9", "page 0 of 0"),
        ("A Brief History of Debian 4 / 21", "a brief history of debian 0"),
        ("A Brief History of Debian iv", "a brief history of debian 0"),
        ("- 7 -", "- 0 -"),
        ("Civil   Engineering", "civil engineering"),
    ],
)
def test_edge_line_key_cases(line, key):
    assert edge_line_key(line) == key


def test_clean_removes_headers_and_footers():
    pages = [
        f"ACME Corp — Annual Report\n{BODY_EN[n % 3]}\n{BODY_EN[(n + 1) % 3]}\nPage {n} of 5"
        for n in range(1, 6)
    ]
    doc = clean_one(*pages)

    for number, section in enumerate(doc.sections, 1):
        assert "ACME Corp" not in section.text
        assert "Page" not in section.text
        assert section.text == f"{BODY_EN[number % 3]}\n{BODY_EN[(number + 1) % 3]}"
        assert section.metadata == {"page": number}


def test_clean_removes_headers_in_japanese():
    pages = [f"年次報告書 2024\n{BODY_JA[n % 3]}\n— {n} —" for n in range(1, 5)]
    doc = clean_one(*pages)

    assert [section.text for section in doc.sections] == [BODY_JA[n % 3] for n in range(1, 5)]


def test_clean_header_share_is_configurable():
    # The header is on 2 of 5 pages, so it is kept at the default share of 0.5 and removed at 0.4.
    bodies = [*BODY_EN, "Two stations closed in March.", "The data set is public."]
    pages = [f"Draft\n{bodies[0]}", f"Draft\n{bodies[1]}", *bodies[2:]]

    assert clean_one(*pages).sections[0].text == f"Draft\n{bodies[0]}"
    assert clean_one(*pages, header_footer_share=0.4).sections[0].text == bodies[0]


def test_clean_keeps_repeated_lines_in_page_body():
    repeated = "Warning: keep away from the edge."
    pages = [f"Title {n}\nIntro {n}\n{repeated}\nBody {n}\nMore {n}\nEnd {n}" for n in range(4)]
    doc = clean_one(*pages)

    for section in doc.sections:
        assert repeated in section.text


def test_clean_keeps_headers_below_min_pages():
    pages = [f"ACME Corp\n{BODY_EN[0]}", f"ACME Corp\n{BODY_EN[1]}"]
    doc = clean_one(*pages)

    assert all(section.text.startswith("ACME Corp") for section in doc.sections)


def test_clean_ignores_empty_pages_when_counting():
    pages = ["Header\nOne", "", "Header\nTwo", "", "Header\nThree"]
    doc = clean_one(*pages)

    assert [section.text for section in doc.sections] == ["One", "", "Two", "", "Three"]


@pytest.mark.skipif(not DEBIAN_HISTORY_PDF.exists(), reason=f"{DEBIAN_HISTORY_PDF} not found")
def test_clean_removes_running_title_from_pdf():
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(DEBIAN_HISTORY_PDF)
    pages = [page.extract_text() for page in reader.pages]
    doc = clean_one(*pages)
    first_lines = [section.text.split("\n", 1)[0] for section in doc.sections]

    # Pages after the title page start with "A Brief History of Debian <page number>", in Roman
    # numerals in the front matter ("iv") and as "3 / 21" in the body.
    headed = [n for n in range(1, len(pages)) if pages[n].startswith("A Brief History of Debian")]

    assert len(headed) >= 20
    assert first_lines[0] == "A Brief History of Debian"
    for n in headed:
        assert not first_lines[n].startswith("A Brief History of Debian"), first_lines[n]


@pytest.mark.parametrize("texts", [("",), ("   \n\t\n",), ("\x00\x01", "\u200b"), ()])
def test_clean_filters_documents_without_text(texts):
    doc = clean_one(*texts)

    assert doc.state == FILTERED
    assert doc.reason == "filtered by clean: no text left after cleaning"


def test_clean_keeps_section_metadata(cleaner):
    doc = make_doc("ﬁrst", "second")
    doc.sections[0].metadata["title"] = "Intro"
    [result] = cleaner.process_batch([doc])

    assert result.state == PENDING
    assert result.sections[0].metadata == {"page": 1, "title": "Intro"}
    assert result.sections[1].metadata == {"page": 2}
    assert result.text == "first\n\nsecond"


def test_clean_passes_finished_documents_through(cleaner):
    doc = make_doc("ﬁnal   text")
    doc.mark_duplicate("doc-0", "duplicate of doc-0")
    [result] = cleaner.process_batch([doc])

    assert result.sections[0].text == "ﬁnal   text"


def test_clean_counts_removed_header_lines():
    operator = CleanOperator()
    operator.process_batch([make_doc(*[f"Header\nBody {n}\nFooter {n}" for n in range(4)])])
    stats = operator.take_stats()

    assert stats["header_footer_lines_removed"] == 8
    assert stats["out"] == 1


@pytest.mark.parametrize(
    "args",
    [
        {"header_footer_share": 0},
        {"header_footer_share": 1.5},
        {"header_footer_min_pages": 1},
        {"header_footer_lines": -1},
        {"strip": True},
    ],
)
def test_clean_args_rejected(args):
    with pytest.raises(ValidationError):
        CleanOperator(**args)
