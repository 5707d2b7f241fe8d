"""Every file of the shared third-party corpus through the parse operator, with its expected outcome.

The 70 files are parsed once per module, in two worker processes, and each test checks one file or
one golden property. The shared corpus is read in place and never copied into the repository.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from operators.parse import ParseOperator
from operators.parse.legacy import soffice_path
from operators.parse.ocr import ocr_available
from operators.records import Document

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus" / "docs"

if not CORPUS.is_dir():
    pytest.skip(f"shared corpus not found at {CORPUS} (the ../shared folder is absent)", allow_module_level=True)

PARSED, QUARANTINED, FILTERED = "pending", "quarantined", "filtered"

# Outcomes that depend on optional system tools: LibreOffice for DOC, Tesseract for image-only files.
LEGACY_DOC = (PARSED, "Lorem ipsum") if soffice_path() else (QUARANTINED, "needs_libreoffice")
IMAGE_ONLY_PDF = (PARSED, 20) if ocr_available() else (QUARANTINED, "no_text")
IMAGE = (PARSED, 2) if ocr_available() else (QUARANTINED, "no_text")

# file -> (state, check). For a parsed file the check is a phrase the text must contain, or a
# minimum text length where the text is not language (a garbled scan). For a quarantined file it
# is the error class, and for a filtered archive the number of member documents.
EXPECTED: dict[str, tuple[str, str | int]] = {
    "debian/ch02.zh-cn.html": (PARSED, "Debian 软件包管理"),
    "debian/debian-reference.zh-cn.pdf": (PARSED, "Debian 参考手册"),
    "debian/project-history.en.pdf": (PARSED, "A Brief History of Debian"),
    "debian/project-history.ja.pdf": (PARSED, "Debian 小史"),
    "pdfminer/contrib/issue-1113-evil-xobjects.pdf": (PARSED, "Hello world"),
    "pdfminer/encryption/rc4-40.pdf": (QUARANTINED, "encrypted"),
    "pdfminer/jo.pdf": (PARSED, "宇宙塵をたべ"),
    "pdfminer/zen_of_python_corrupted.pdf": (PARSED, "Beautiful is better than ugly."),
    "pypdf/encryption/r2-empty-password.pdf": (PARSED, "pdf encryption test"),
    "pypdf/issue-301.pdf": (PARSED, 100),
    "pypdf/multilang.pdf": (PARSED, "Привет, мир"),
    "sample-files/011-google-doc-document/google-doc-document.pdf": (PARSED, "Explicit is better than implicit."),
    "sample-files/015-arabic/habibi.pdf": (PARSED, "habibi"),
    "unstructured/2023-half-year-analyses-by-segment.xlsx": (PARSED, "Zone NA | 12553"),
    "unstructured/CantinaBand3.wav": (QUARANTINED, "unsupported"),
    "unstructured/README.md": (PARSED, "A 10-K SEC filing in HTML format"),
    "unstructured/book-war-and-peace-1225p.txt": (PARSED, "Well, Prince, so Genoa and Lucca"),
    "unstructured/codeblock.md": (PARSED, "Don't forget me this weekend!"),
    "unstructured/contains-pictures.docx": (PARSED, "runs “through” the floating picture"),
    "unstructured/csv-with-long-lines.csv": (PARSED, "SpearmanCorrelationCoefficient"),
    "unstructured/docx-tables.docx": (PARSED, "Header Col 1 | Header Col 2"),
    "unstructured/duplicate-paragraphs.docx": (PARSED, "This document contains duplicates"),
    "unstructured/eml/email-with-image.eml": (PARSED, "The unstructured logo is attached to this email."),
    "unstructured/eml/empty.eml": (QUARANTINED, "empty"),
    "unstructured/eml/fake-email-malformed-encoding.eml": (PARSED, "Violets are blue"),
    "unstructured/eml/fake-email.eml": (PARSED, "This is a test email to use for unit tests."),
    "unstructured/eml/test-invalid-date.eml": (PARSED, "This is a test-email with an invalid date format."),
    "unstructured/empty.txt": (QUARANTINED, "empty"),
    "unstructured/example-10k.html": (PARSED, "ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d)"),
    "unstructured/example-steelJIS-datasheet-utf-16.html": (PARSED, "Alloy steel bars for special application bolting materials"),
    "unstructured/example-steelJIS-datasheet.html": (PARSED, "Alloy steel bars for special application bolting materials"),
    "unstructured/example-with-scripts.html": (PARSED, "Russian Offensive Campaign Assessment, December 13"),
    "unstructured/fake-doc.rtf": (PARSED, "My first paragraph."),
    "unstructured/fake-email.msg": (PARSED, "Roses are red"),
    "unstructured/fake-html-with-base64-image.html": (PARSED, "Test page"),
    "unstructured/fake-power-point-malformed.pptx": (PARSED, "Test Slide"),
    "unstructured/fake-power-point.pptx": (PARSED, "Adding a Bullet Slide"),
    "unstructured/fake-text-utf-16.txt": (PARSED, "Hamburgers are delicious"),
    "unstructured/fake-text-utf-32.txt": (PARSED, "Hamburgers are delicious"),
    "unstructured/fake.doc": LEGACY_DOC,
    "unstructured/fake.docx": (PARSED, "Lorem ipsum dolor sit amet."),
    "unstructured/fake.odt": (PARSED, "Color | Blue | Red | Green"),
    "unstructured/handbook-872p.docx": (PARSED, "Standing Trustees"),
    "unstructured/img/chi_sim_image.jpeg": IMAGE,
    "unstructured/language-docs/UDHR_first_article_all.txt": (PARSED, "Universal Declaration of Human Right"),
    "unstructured/language-docs/eng_spa_mult.md": (PARSED, "All human beings are born free and equal"),
    "unstructured/language-docs/eng_spa_mult.txt": (PARSED, "All human beings are born free and equal"),
    "unstructured/language-docs/fr_olap.pdf": (PARSED, "Résumés et interrogations de logs de requêtes OLAP"),
    "unstructured/norwich-city.txt": (PARSED, "Norwich City"),
    "unstructured/password_protected.xlsx": (QUARANTINED, "encrypted"),
    "unstructured/pdf/DA-1p.pdf": (PARSED, "Abomination"),
    "unstructured/pdf/DA-619p.pdf": (PARSED, "Abomination"),
    "unstructured/pdf/copy-protected.pdf": (PARSED, "LayoutParser: A Unified Toolkit for Deep"),
    "unstructured/pdf/fake-bold-sample.pdf": (PARSED, "BOLD TEXT SAMPLE"),
    "unstructured/pdf/fake-memo-with-duplicate-page.pdf": (PARSED, "To Whom it May Concern"),
    "unstructured/pdf/fake-memo.pdf": (PARSED, "20,000 bottles of water"),
    "unstructured/pdf/header-test-doc.pdf": (PARSED, "lovely"),
    "unstructured/pdf/invalid-pdf-structure-pdfminer-one-page.pdf": (PARSED, "Leadership in Cybersecurity"),
    "unstructured/pdf/korean-text-with-tables.pdf": (PARSED, "적립 제외 대상"),
    "unstructured/pdf/layout-parser-paper-fast.pdf": (PARSED, "Document Image Analysis"),
    "unstructured/pdf/layout-parser-paper-with-empty-pages.pdf": (PARSED, "Document Image Analysis"),
    "unstructured/pdf/loremipsum-flat.pdf": IMAGE_ONLY_PDF,
    "unstructured/pdf/multi-column.pdf": (PARSED, "Dense Passage Retrieval for Open-Domain Question Answering"),
    "unstructured/pdf/password.pdf": (QUARANTINED, "encrypted"),
    "unstructured/semicolon-delimited.csv": (PARSED, "consectetur | adipiscing | elit"),
    "unstructured/simple.json": (PARSED, "These are a few of my favorite things:"),
    "unstructured/simple.zip": (FILTERED, 2),
    "unstructured/umlauts-non-utf8.md": (PARSED, "können"),
    "unstructured/umlauts-utf8.md": (PARSED, "können"),
    "unstructured/winter-sports.epub": (PARSED, "Winter Sports in Switzerland"),
}


def summarize(relative: str, **args: Any) -> dict[str, Any]:
    """Parse one corpus file and return what the tests check (runs in a worker process)."""
    doc = Document(doc_id=relative, uri=relative, source="corpus", path=str(CORPUS / relative))
    parent, *children = ParseOperator(**args).process_batch([doc])
    return {
        "state": parent.state,
        "format": parent.format,
        "quarantine": parent.quarantine,
        "reason": parent.reason,
        "text": parent.text,
        "sections": [section.metadata for section in parent.sections],
        "metadata": parent.metadata,
        "data_freed": parent.data is None,
        "children": [
            {"uri": c.uri, "doc_id": c.doc_id, "parent_id": c.parent_id, "state": c.state, "format": c.format, "text": c.text}
            for c in children
        ],
    }


def _cost(relative: str) -> int:
    size = (CORPUS / relative).stat().st_size
    return size * 10 if relative.endswith(".pdf") else size  # PDF pages are the slow part


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    """Parse the whole corpus once, the most expensive files first so the two workers finish together."""
    order = sorted(EXPECTED, key=_cost, reverse=True)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1), mp_context=context) as pool:
        return dict(zip(order, pool.map(summarize, order)))


def test_table_covers_every_corpus_file():
    on_disk = {path.relative_to(CORPUS).as_posix() for path in CORPUS.rglob("*") if path.is_file()}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_corpus_file_outcome(results, relative):
    state, check = EXPECTED[relative]
    result = results[relative]
    assert result["state"] == state, result["reason"]
    if state == PARSED:
        assert result["data_freed"]
        if isinstance(check, int):
            assert len(result["text"]) >= check
        else:
            assert check in result["text"]
    elif state == QUARANTINED:
        quarantine = result["quarantine"]
        assert quarantine.error_class == check
        assert quarantine.operator == "parse"
        assert quarantine.message.startswith(f"cannot parse {relative}: ")
    else:
        assert len(result["children"]) == check


# ---- golden checks -------------------------------------------------------------------------------


def test_steeljis_utf16_and_utf8_identical(results):
    utf16 = results["unstructured/example-steelJIS-datasheet-utf-16.html"]
    utf8 = results["unstructured/example-steelJIS-datasheet.html"]
    assert utf16["text"] == utf8["text"]
    assert utf16["metadata"]["encoding"] == "utf-16-le"
    assert utf8["metadata"]["encoding"] == "utf-8"


def test_umlaut_twins_identical(results):
    latin = results["unstructured/umlauts-non-utf8.md"]
    utf8 = results["unstructured/umlauts-utf8.md"]
    assert latin["text"] == utf8["text"] == "können\n\nkönnen\n\näöüß"


def test_utf16_and_utf32_text_twins_identical(results):
    assert results["unstructured/fake-text-utf-16.txt"]["text"] == results["unstructured/fake-text-utf-32.txt"]["text"]


@pytest.mark.parametrize("leaked", ["switchTo5x", "jQuery.extend", "getElementsByTagName", "facebook-jssdk", "@import url"])
def test_scripts_and_styles_dropped(results, leaked):
    assert leaked not in results["unstructured/example-with-scripts.html"]["text"]


def test_base64_image_dropped(results):
    text = results["unstructured/fake-html-with-base64-image.html"]["text"]
    assert "base64" not in text
    assert re.search(r"[A-Za-z0-9+/]{100,}", text) is None


@pytest.mark.parametrize("relative", ["pypdf/encryption/r2-empty-password.pdf", "unstructured/pdf/copy-protected.pdf"])
def test_empty_user_password_pdfs_indexed(results, relative):
    assert results[relative]["state"] == PARSED
    assert results[relative]["metadata"]["encrypted"] is True


@pytest.mark.parametrize("relative", ["unstructured/pdf/password.pdf", "pdfminer/encryption/rc4-40.pdf"])
def test_encrypted_pdf_fix_names_setting(results, relative):
    assert "parse.pdf_passwords" in results[relative]["quarantine"].fix


def test_rc4_pdf_opens_with_configured_password():
    result = summarize("pdfminer/encryption/rc4-40.pdf", pdf_passwords=["baz"])
    assert result["state"] == PARSED, result["reason"]
    assert result["text"] == "Secret!"


def test_pdf_pages_numbered_and_blank_pages_skipped(results):
    result = results["unstructured/pdf/layout-parser-paper-with-empty-pages.pdf"]
    assert result["metadata"]["page_count"] == 4
    assert [section["page"] for section in result["sections"]] == [1, 4]


def test_large_pdf_one_section_per_page(results):
    result = results["unstructured/pdf/DA-619p.pdf"]
    assert result["metadata"]["page_count"] == 619
    assert len(result["sections"]) >= 600


def test_fake_bold_collapsed(results):
    text = results["unstructured/pdf/fake-bold-sample.pdf"]["text"]
    assert "BOLD TEXT SAMPLE" in text
    assert "Testing Deduplication" in text
    assert "B\nB\nO\nO" not in text


def test_ligatures_expanded(results):
    text = results["unstructured/pdf/multi-column.pdf"]["text"]
    assert not re.search("[\ufb00-\ufb06]", text)
    assert "a much simplified" in text


def test_unmapped_cjk_font_read_by_pdfium(results):
    assert results["pdfminer/jo.pdf"]["metadata"]["pdfium_pages"] == [1]


def test_zip_members_are_children(results):
    children = results["unstructured/simple.zip"]["children"]
    assert [c["uri"] for c in children] == ["unstructured/simple.zip!/ideas-page.html", "unstructured/simple.zip!/stanley-cups.csv"]
    assert all(c["state"] == PARSED and c["parent_id"] == "unstructured/simple.zip" for c in children)
    assert results["unstructured/simple.zip"]["reason"] == "filtered by parse: archive expanded into 2 member documents"


def test_email_image_attachment_is_child(results):
    (child,) = results["unstructured/eml/email-with-image.eml"]["children"]
    assert child["uri"] == "unstructured/eml/email-with-image.eml#attachment/unstructured_logo.png"
    assert child["doc_id"] == "unstructured/eml/email-with-image.eml#attachment/unstructured_logo.png"
    assert child["parent_id"] == "unstructured/eml/email-with-image.eml"
    assert child["format"] == "image"


def test_docx_and_pptx_metadata(results):
    assert results["unstructured/fake.docx"]["metadata"]["author"] == "Mr. Miagi"
    assert results["unstructured/fake-power-point-malformed.pptx"]["metadata"]["title"] == "PowerPoint Presentation"


def test_xlsx_sections_per_sheet(results):
    sheets = [section["sheet"] for section in results["unstructured/2023-half-year-analyses-by-segment.xlsx"]["sections"]]
    assert len(sheets) == 5
    assert sheets[0] == "OS-Rev.and results 30 06 2023"


def test_wav_message_names_mime(results):
    assert "audio/x-wav" in results["unstructured/CantinaBand3.wav"]["quarantine"].message
