"""The parse operator on small files written here: formats, encodings, limits and quarantine."""

from __future__ import annotations

import io
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from operators.base import get_operator_class
from operators.parse import ParseArgs, ParseOperator
from operators.parse.detect import sniff_mime
from operators.parse.ocr import ocr_available
from operators.parse.pdf import _undouble_line
from operators.records import Document, Section

# ---- helpers ----------------------------------------------------------------------------------


def parse_file(path: Path, **args) -> list[Document]:
    """Run the operator on one file and return every document it produced."""
    doc = Document(doc_id=path.name, uri=path.name, source="test", path=str(path))
    return ParseOperator(**args).process_batch([doc])


def parse_bytes(tmp_path: Path, name: str, data: bytes, **args) -> Document:
    path = tmp_path / name
    path.write_bytes(data)
    return parse_file(path, **args)[0]


def make_pdf(pages: list[str]) -> bytes:
    """Build a PDF with one Helvetica text line per page; an empty string makes a blank page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET" if text else ""
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        content_number = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_number} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"

    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Quarterly report"
    document.core_properties.author = "Ada Lovelace"
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row_index, row in enumerate(table):
            for column_index, value in enumerate(row):
                grid.cell(row_index, column_index).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_pptx(slides: list[str]) -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    for text in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[6])
        slide.shapes.add_textbox(Inches(1), Inches(1), Inches(5), Inches(1)).text_frame.text = text
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


# ---- registration and arguments ----------------------------------------------------------------


def test_registered_under_parse():
    assert get_operator_class("parse") is ParseOperator


def test_every_arg_has_description():
    for name, field in ParseArgs.model_fields.items():
        assert field.description, f"ParseArgs.{name} has no description"


def test_document_timeout_is_args_timeout():
    assert ParseOperator(timeout_s=7).document_timeout_s() == 7


def test_passwords_hidden_in_describe():
    described = json.dumps(ParseOperator(pdf_passwords=["hunter2"]).describe())
    assert "hunter2" not in described


def test_passwords_change_fingerprint():
    assert ParseOperator(pdf_passwords=["a"]).fingerprint() != ParseOperator(pdf_passwords=["b"]).fingerprint()
    assert ParseOperator(pdf_passwords=["a"]).fingerprint() != ParseOperator().fingerprint()


# ---- encodings --------------------------------------------------------------------------------

ENCODED_TEXTS = [
    ("utf-8", "Grüße aus Zürich – naïve café, 5 € and “quotes”.\n" * 3),
    ("utf-8-sig", "Grüße aus Zürich – naïve café.\n" * 3),
    ("utf-16", "Grüße aus Zürich, 你好世界.\n" * 3),
    ("utf-16-le", "Plain UTF-16 without a byte order mark, little endian.\n" * 3),
    ("utf-16-be", "中文文本测试。这是一个没有字节顺序标记的段落 ok.\n" * 3),
    ("utf-32", "UTF-32 text with a BOM: Grüße.\n" * 3),
    ("gb18030", "中文文本测试。这是一个用于检测编码的示例段落，包含常见的汉字和标点符号。\n" * 2),
    ("big5", "繁體中文測試。這是一個用於檢測編碼的範例段落，包含常見的漢字和標點符號。\n" * 2),
    ("shift_jis", "日本語のテキストです。これはエンコーディングを検出するための例文です。\n" * 2),
    ("euc_kr", "한국어 텍스트입니다. 이것은 인코딩을 감지하기 위한 예제 문장입니다.\n" * 2),
    ("cp1252", "Café “quoted” text – costs 5 € and a naïve façade.\n" * 2),
    ("latin-1", "Größe und Übermaß: können, müssen, äöüß.\n" * 2),
    ("iso8859-5", "Привет мир, это тестовый текст на русском языке.\n" * 2),
]


@pytest.mark.parametrize("encoding,text", ENCODED_TEXTS, ids=[e for e, _ in ENCODED_TEXTS])
def test_text_encoding_detected(tmp_path, encoding, text):
    doc = parse_bytes(tmp_path, "note.txt", text.encode(encoding))
    assert doc.state == "pending", doc.reason
    assert doc.text == text.strip().replace("\n\n", "\n")
    assert doc.metadata["encoding"]


@pytest.mark.parametrize("wide", ["utf-16", "utf-16-le", "utf-32"])
def test_utf8_and_wide_twins_equal(tmp_path, wide):
    html = "<html><head><title>Steel</title></head><body><p>Grade: SNB22-3 — 日本語</p></body></html>"
    narrow = parse_bytes(tmp_path, "a.html", html.encode("utf-8"))
    broad = parse_bytes(tmp_path, "b.html", html.encode(wide))
    assert narrow.text == broad.text
    assert "SNB22-3 — 日本語" in narrow.text


def test_latin1_and_utf8_umlauts_equal(tmp_path):
    text = "## können\n\nkönnen\n\näöüß\n"
    latin = parse_bytes(tmp_path, "a.md", text.encode("latin-1"))
    utf8 = parse_bytes(tmp_path, "b.md", text.encode("utf-8"))
    assert latin.text == utf8.text == "können\n\nkönnen\n\näöüß"
    assert latin.metadata["encoding"] == "cp1252"
    assert utf8.metadata["encoding"] == "utf-8"


def test_html_meta_charset_used(tmp_path):
    html = '<html><head><meta charset="windows-1251"></head><body><p>Привет мир</p></body></html>'
    doc = parse_bytes(tmp_path, "page.html", html.encode("cp1251"))
    assert doc.text == "Привет мир"
    assert doc.metadata["encoding"] == "cp1251"


# ---- format detection by content ----------------------------------------------------------------


def test_docx_named_doc(tmp_path):
    doc = parse_bytes(tmp_path, "report.doc", make_docx(["Revenue grew by nine percent."]))
    assert doc.format == "docx"
    assert "Revenue grew by nine percent." in doc.text
    assert doc.metadata["title"] == "Quarterly report"
    assert doc.metadata["author"] == "Ada Lovelace"


def test_pptx_named_ppt(tmp_path):
    doc = parse_bytes(tmp_path, "deck.ppt", make_pptx(["First slide text", "Second slide text"]))
    assert doc.format == "pptx"
    assert [s.metadata for s in doc.sections] == [{"slide": 1}, {"slide": 2}]
    assert doc.sections[1].text == "Second slide text"


def test_email_saved_as_txt(tmp_path):
    raw = b"From: alice@example.com\nTo: bob@example.com\nSubject: Lunch\n\nSee you at noon.\n"
    doc = parse_bytes(tmp_path, "mail.txt", raw)
    assert doc.format == "eml"
    assert doc.metadata["title"] == "Lunch"
    assert "See you at noon." in doc.text


@pytest.mark.parametrize(
    "name,data,expected_format",
    [
        ("page", b"<!DOCTYPE html><html><body><p>No extension here</p></body></html>", "html"),
        ("paper", make_pdf(["No extension PDF"]), "pdf"),
        ("fragment.html", b"<div><p>Only a fragment</p><p>without the html tag</p></div>", "html"),
        ("fragment", b"<p>A fragment</p>\n<ul><li>with a list</li></ul>", "html"),
        ("records", b'{"title": "a"}\n{"title": "b"}\n', "ndjson"),
        ("data", b'{"title": "a", "body": ["b"]}', "json"),
        ("feed", b'<?xml version="1.0"?><feed><entry>Text in XML</entry></feed>', "xml"),
    ],
    ids=["html-no-ext", "pdf-no-ext", "html-no-html-tag", "fragment-no-ext", "ndjson-no-ext", "json-no-ext", "xml-no-ext"],
)
def test_format_from_content(tmp_path, name, data, expected_format):
    doc = parse_bytes(tmp_path, name, data)
    assert doc.state == "pending", doc.reason
    assert doc.format == expected_format


def test_markdown_with_raw_html_stays_markdown(tmp_path):
    text = "# Title\n\n```html\n<!DOCTYPE html>\n<html><body>x</body></html>\n```\n\nSome *prose*.\n"
    doc = parse_bytes(tmp_path, "notes.md", text.encode())
    assert doc.format == "markdown"
    assert "Some prose." in doc.text
    assert "<!DOCTYPE html>" in doc.text  # code blocks are content


# ---- HTML clean-up ------------------------------------------------------------------------------


def test_html_drops_script_style_and_base64(tmp_path):
    payload = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg" * 3
    html = (
        "<html><head><style>body { color: red }</style><script>var secret = 1;</script></head>"
        f"<body><p>Visible text</p><img src='data:image/png;base64,{payload}'>"
        f"<p>inline data:image/png;base64,{payload}</p><p>{payload}</p>"
        "<noscript>enable js</noscript><div style='display: none'>hidden</div></body></html>"
    )
    doc = parse_bytes(tmp_path, "page.html", html.encode())
    assert "Visible text" in doc.text
    for leaked in ("color: red", "secret", payload[:40], "enable js", "hidden"):
        assert leaked not in doc.text


def test_html_table_rows_one_line_each(tmp_path):
    html = "<table><tr><th>Name</th><th>Age</th></tr><tr><td><p>Bob</p></td><td>32</td></tr></table>"
    doc = parse_bytes(tmp_path, "t.html", html.encode())
    assert doc.text == "Name | Age\nBob | 32"


def test_html_title_in_metadata(tmp_path):
    doc = parse_bytes(tmp_path, "t.html", b"<html><head><title>My page</title></head><body>Body</body></html>")
    assert doc.metadata["title"] == "My page"
    assert doc.text == "Body"


# ---- tables ------------------------------------------------------------------------------------


def test_csv_semicolon_delimiter(tmp_path):
    data = "Name;City;Score\nMüller, Anna;Köln;12\nSmith;Leeds;7\n".encode()
    doc = parse_bytes(tmp_path, "scores.csv", data)
    assert doc.format == "csv"
    assert doc.metadata["delimiter"] == ";"
    assert doc.text == "Name: Müller, Anna | City: Köln | Score: 12\nName: Smith | City: Leeds | Score: 7"


def test_tsv_rows(tmp_path):
    doc = parse_bytes(tmp_path, "data.tsv", b"id\tword\n1\tapple\n2\tpear\n")
    assert doc.text == "id: 1 | word: apple\nid: 2 | word: pear"


def test_csv_without_header_keeps_first_row(tmp_path):
    doc = parse_bytes(tmp_path, "plain.csv", b"alpha,beta\ngamma,delta\nepsilon,zeta\n")
    assert doc.text == "alpha | beta\ngamma | delta\nepsilon | zeta"


def test_xlsx_one_section_per_sheet(tmp_path):
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Sales"
    workbook.active.append(["Region", "Units"])
    workbook.active.append(["North", 12])
    workbook.create_sheet("Empty")
    notes = workbook.create_sheet("Notes")
    notes.append(["Figures are preliminary"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    doc = parse_bytes(tmp_path, "book.xlsx", buffer.getvalue())
    assert [s.metadata for s in doc.sections] == [{"sheet": "Sales"}, {"sheet": "Notes"}]
    assert doc.sections[0].text == "Region: North | Units: 12"


# ---- office and document formats -----------------------------------------------------------------


def test_docx_table_rows(tmp_path):
    data = make_docx(["Intro paragraph."], table=[["Item", "Price"], ["Tea", "3"]])
    doc = parse_bytes(tmp_path, "t.docx", data)
    assert doc.text == "Intro paragraph.\n\nItem | Price\nTea | 3"


def test_docx_deep_nesting_is_corrupt(tmp_path):
    """Content controls nested past Python's recursion limit are reported, not crashed on."""
    namespace = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    nested = "<w:sdt><w:sdtContent>" * 990 + "<w:p><w:r><w:t>deep</w:t></w:r></w:p>" + "</w:sdtContent></w:sdt>" * 990
    original = zipfile.ZipFile(io.BytesIO(make_docx(["x"])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as rebuilt:
        for item in original.infolist():
            body = original.read(item)
            if item.filename == "word/document.xml":
                body = f"<w:document {namespace}><w:body>{nested}</w:body></w:document>".encode()
            rebuilt.writestr(item, body)
    doc = parse_bytes(tmp_path, "deep.docx", buffer.getvalue())
    assert doc.quarantine.error_class == "corrupt"
    assert "too deeply" in doc.quarantine.message


def test_odt_paragraphs_and_spaces(tmp_path):
    content = (
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>'
        '<text:h>Heading</text:h><text:p>Two<text:s text:c="2"/>spaces<text:tab/>tab</text:p>'
        "</office:text></office:body></office:document-content>"
    )
    data = make_zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": content.encode()})
    doc = parse_bytes(tmp_path, "file.bin", data)
    assert doc.format == "odt"
    assert doc.text == "Heading\n\nTwo  spaces\ttab"


def test_epub_chapters_in_spine_order(tmp_path):
    container = (
        '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
        '<rootfile full-path="OEBPS/book.opf"/></rootfiles></container>'
    )
    package = (
        '<package xmlns="http://www.idpf.org/2007/opf" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<metadata><dc:title>Tiny Book</dc:title><dc:creator>A. Writer</dc:creator></metadata>"
        '<manifest><item id="a" href="one.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="b" href="two.xhtml" media-type="application/xhtml+xml"/></manifest>'
        '<spine><itemref idref="b"/><itemref idref="a"/></spine></package>'
    )
    data = make_zip(
        {
            "mimetype": b"application/epub+zip",
            "META-INF/container.xml": container.encode(),
            "OEBPS/book.opf": package.encode(),
            "OEBPS/one.xhtml": b"<html><body><p>Chapter one</p></body></html>",
            "OEBPS/two.xhtml": b"<html><body><p>Chapter two</p></body></html>",
        }
    )
    doc = parse_bytes(tmp_path, "book.epub", data)
    assert [s.text for s in doc.sections] == ["Chapter two", "Chapter one"]
    assert doc.metadata["title"] == "Tiny Book"
    assert doc.metadata["author"] == "A. Writer"


def test_rtf_text(tmp_path):
    data = rb"{\rtf1\ansi\deff0 {\pard Hello from \b RTF\b0 .\par}}"
    doc = parse_bytes(tmp_path, "letter.rtf", data)
    assert doc.format == "rtf"
    assert doc.text == "Hello from RTF."


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("guide.rst", "Title\n=====\n\nSome *emphasis* here.\n", "Title\n\nSome emphasis here."),
        ("notes.org", "* Heading\nSome /italic/ words.\n", "Heading\n\nSome italic words."),
    ],
    ids=["rst", "org"],
)
def test_markup_dialects(tmp_path, name, text, expected):
    doc = parse_bytes(tmp_path, name, text.encode())
    assert doc.text == expected


# ---- JSON, NDJSON, XML -----------------------------------------------------------------------------


def test_json_all_strings_by_default(tmp_path):
    data = json.dumps({"title": "Alpha", "meta": {"tags": ["beta", "gamma"], "count": 3}}).encode()
    doc = parse_bytes(tmp_path, "item.json", data)
    assert doc.text == "Alpha\nbeta\ngamma"


def test_json_configured_fields(tmp_path):
    data = json.dumps({"title": "Alpha", "items": [{"body": "one", "id": "x1"}, {"body": "two"}]}).encode()
    doc = parse_bytes(tmp_path, "item.json", data, json_text_fields=["title", "items.body"])
    assert doc.text == "Alpha\none\ntwo"


def test_ndjson_section_per_record(tmp_path):
    data = b'{"text": "first", "id": "a"}\n\n{"text": "second", "id": "b"}\n{broken\n'
    doc = parse_bytes(tmp_path, "rows.jsonl", data, json_text_fields=["text"])
    assert doc.format == "ndjson"
    assert [(s.text, s.metadata["line"]) for s in doc.sections] == [("first", 1), ("second", 3)]
    assert doc.metadata["invalid_lines"] == 1


def test_xml_entities_not_expanded(tmp_path):
    data = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><r><t>Kept</t>&b;</r>'
    doc = parse_bytes(tmp_path, "bomb.xml", data)
    assert "Kept" in doc.text
    assert "aaaaaaaaaa" not in doc.text


# ---- e-mail ------------------------------------------------------------------------------------------


def test_eml_attachment_becomes_child(tmp_path):
    message = EmailMessage()
    message["Subject"] = "=?utf-8?b?w5xiZXJwcsO8ZnVuZyBkZXIgWmFobGVu?="  # "Überprüfung der Zahlen"
    message["From"] = "Jörg <joerg@example.com>"
    message["To"] = "team@example.com"
    message.set_content("Bitte prüfen.")
    message.add_attachment(b"Attached notes about revenue.", maintype="text", subtype="plain", filename="notes.txt")
    message.add_attachment(make_pdf(["Attached PDF page"]), maintype="application", subtype="pdf", filename="report.pdf")
    path = tmp_path / "mail.eml"
    path.write_bytes(message.as_bytes())

    parent, *children = parse_file(path)
    assert parent.metadata["title"] == "Überprüfung der Zahlen"
    assert parent.text.startswith("Subject: Überprüfung der Zahlen\nFrom: Jörg <joerg@example.com>")
    assert "Bitte prüfen." in parent.text
    assert [c.uri for c in children] == ["mail.eml#attachment/notes.txt", "mail.eml#attachment/report.pdf"]
    assert [c.doc_id for c in children] == ["mail.eml#attachment/notes.txt", "mail.eml#attachment/report.pdf"]
    assert all(c.parent_id == "mail.eml" for c in children)
    assert children[0].text == "Attached notes about revenue."
    assert children[1].sections[0].metadata == {"page": 1}
    assert children[1].data is None


def test_eml_html_only_body(tmp_path):
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><p>Hello <b>there</b></p><script>x()</script></body></html>"
    )
    doc = parse_bytes(tmp_path, "m.eml", raw)
    assert doc.text.endswith("Hello there")


# ---- archives ------------------------------------------------------------------------------------


def test_zip_members_become_children(tmp_path):
    inner = make_zip({"deep.txt": b"deep member text"})
    data = make_zip({"a.txt": b"member text", "dir/page.html": b"<p>html member</p><p>two</p>", "inner.zip": inner})
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    archive, *members = parse_file(path)

    assert archive.state == "filtered"
    assert archive.reason == "filtered by parse: archive expanded into 3 member documents"
    by_uri = {m.uri: m for m in members}
    assert by_uri["archive.zip!/a.txt"].text == "member text"
    assert by_uri["archive.zip!/dir/page.html"].format == "html"
    assert by_uri["archive.zip!/inner.zip"].state == "filtered"
    assert by_uri["archive.zip!/inner.zip!/deep.txt"].text == "deep member text"
    assert by_uri["archive.zip!/inner.zip!/deep.txt"].parent_id == "archive.zip!/inner.zip"


def test_zip_member_count_limit(tmp_path):
    data = make_zip({f"f{i}.txt": b"x" for i in range(5)})
    doc = parse_bytes(tmp_path, "many.zip", data, max_archive_members=4)
    assert doc.quarantine.error_class == "too_large"
    assert "max_archive_members" in doc.quarantine.fix


def test_zip_bomb_declared_size(tmp_path):
    data = make_zip({"zeros.txt": b"0" * (3 * 1024 * 1024)})  # compresses to a few KiB
    doc = parse_bytes(tmp_path, "bomb.zip", data, max_archive_total_mb=1)
    assert doc.quarantine.error_class == "too_large"
    assert "decompression bomb" in doc.quarantine.message


def test_zip_bomb_understated_size(tmp_path):
    """A member whose header claims 10 bytes is read no further; the CRC check then rejects it."""
    data = bytearray(make_zip({"zeros.txt": b"0" * (3 * 1024 * 1024)}))
    declared = (3 * 1024 * 1024).to_bytes(4, "little")
    data = data.replace(declared, (10).to_bytes(4, "little"))  # local header and central directory
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(data))
    archive, member = parse_file(path, max_archive_total_mb=1)
    assert member.quarantine.error_class == "corrupt"
    assert "CRC" in member.quarantine.message


def test_zip_nesting_depth_limit(tmp_path):
    data = b"bottom text"
    for level in range(4):
        data = make_zip({f"level{level}.zip" if level else "bottom.txt": data})
    path = tmp_path / "nested.zip"
    path.write_bytes(data)
    docs = parse_file(path, max_nesting_depth=2)
    too_deep = [d for d in docs if d.quarantine is not None]
    assert len(too_deep) == 1
    assert too_deep[0].quarantine.error_class == "too_large"
    assert "nested more than 2" in too_deep[0].quarantine.message


def test_zip_encrypted_member_quarantined(tmp_path):
    data = bytearray(make_zip({"secret.txt": b"classified"}))
    # Set the "encrypted" flag bit in both the local header and the central directory entry.
    data[6] |= 1
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 1
    path = tmp_path / "locked.zip"
    path.write_bytes(bytes(data))
    archive, member = parse_file(path)
    assert member.quarantine.error_class == "encrypted"


# ---- PDF -------------------------------------------------------------------------------------------


def test_pdf_pages_numbered_blank_skipped(tmp_path):
    doc = parse_bytes(tmp_path, "three.pdf", make_pdf(["First page", "", "Third page"]))
    assert [(s.metadata["page"], s.text) for s in doc.sections] == [(1, "First page"), (3, "Third page")]
    assert doc.metadata["page_count"] == 3
    assert doc.data is None


def test_pdf_encrypted_needs_password(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Secret page"]))))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)

    locked = parse_bytes(tmp_path, "locked.pdf", buffer.getvalue())
    assert locked.quarantine.error_class == "encrypted"
    assert "parse.pdf_passwords" in locked.quarantine.fix
    opened = parse_bytes(tmp_path, "locked.pdf", buffer.getvalue(), pdf_passwords=["wrong", "s3cret"])
    assert opened.text == "Secret page"


def test_pdf_missing_trailer_repaired(tmp_path):
    data = make_pdf(["Truncated but readable"])
    truncated = data[: data.rindex(b"xref")]
    doc = parse_bytes(tmp_path, "cut.pdf", truncated)
    assert doc.text == "Truncated but readable"


def test_pdf_garbage_is_corrupt(tmp_path):
    doc = parse_bytes(tmp_path, "bad.pdf", b"%PDF-1.7\n" + b"\x00garbage" * 50)
    assert doc.quarantine.error_class == "corrupt"
    assert doc.quarantine.message.startswith("cannot parse bad.pdf: ")


def test_pdf_without_text_needs_ocr(tmp_path, monkeypatch):
    monkeypatch.setattr("operators.parse.pdf.ocr_available", lambda: False)
    doc = parse_bytes(tmp_path, "scan.pdf", make_pdf(["", ""]))
    assert doc.quarantine.error_class == "no_text"
    assert "no text layer; enable OCR" in doc.quarantine.message
    assert "tesseract-ocr tesseract-ocr-chi-sim" in doc.quarantine.fix
    assert "ragpipe[ocr]" in doc.quarantine.fix


@pytest.mark.parametrize(
    "line,expected",
    [
        ("TThhee  qquuiicckk", "The quick"),
        ("BBOOLLDD TTEEXXTT", "BOLD TEXT"),
        ("committee meeting", "committee meeting"),
        ("aa", "aa"),
        ("Normal line", "Normal line"),
    ],
)
def test_fake_bold_line_collapsed(line, expected):
    assert _undouble_line(line) == expected


def test_pdf_ligatures_expanded(tmp_path, monkeypatch):
    from operators.parse import pdf

    class Page:
        def extract_text(self, **_):
            return "e\ufb03cient \ufb01le \ufb02ow"

    assert pdf.page_text(Page()) == "efficient file flow"


# ---- limits and quarantine ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t  \r\n"], ids=["zero-bytes", "whitespace"])
def test_empty_file_quarantined(tmp_path, data):
    doc = parse_bytes(tmp_path, "blank.txt", data)
    assert doc.state == "quarantined"
    assert doc.quarantine.error_class == "empty"
    assert doc.quarantine.operator == "parse"


def test_html_without_text_is_empty(tmp_path):
    doc = parse_bytes(tmp_path, "s.html", b"<html><body><script>only()</script></body></html>")
    assert doc.quarantine.error_class == "empty"


def test_too_large_checked_before_reading(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 2_000_000)
    doc = parse_file(path, max_file_mb=1)[0]
    assert doc.quarantine.error_class == "too_large"
    assert "parse.max_file_mb" in doc.quarantine.message


@pytest.mark.parametrize(
    "name,data,mime",
    [
        ("song.wav", b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00" + bytes(64), "audio/"),
        ("movie.mp4", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64), "video/"),
        ("blob", bytes(range(256)) * 8, None),
    ],
    ids=["audio", "video", "unknown"],
)
def test_unsupported_binary_names_mime(tmp_path, name, data, mime):
    doc = parse_bytes(tmp_path, name, data)
    assert doc.quarantine.error_class == "unsupported"
    assert f"unsupported file type {mime or sniff_mime(data)}" in doc.quarantine.message


def test_image_without_ocr_is_no_text(tmp_path, monkeypatch):
    monkeypatch.setattr("operators.parse.parsers.ocr_available", lambda: False)
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000" "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082")
    doc = parse_bytes(tmp_path, "scan.png", png)
    assert doc.quarantine.error_class == "no_text"


def test_record_passes_through(tmp_path):
    doc = Document(doc_id="r1", uri="rows.jsonl#1", source="test", format="record", sections=[Section("kept")])
    out = ParseOperator().process_batch([doc])
    assert out == [doc]
    assert doc.sections == [Section("kept")]


def test_bytes_input_without_path():
    doc = Document(doc_id="d", uri="mem://note", source="test", data=b"In-memory text.")
    ParseOperator().process_batch([doc])
    assert doc.text == "In-memory text."
    assert doc.data is None


def test_missing_file_quarantined(tmp_path):
    doc = Document(doc_id="gone", uri="gone.txt", source="test", path=str(tmp_path / "gone.txt"))
    ParseOperator().process_batch([doc])
    assert doc.quarantine.error_class == "corrupt"
    assert "cannot read the file" in doc.quarantine.message


def test_legacy_doc_needs_libreoffice(tmp_path, monkeypatch):
    from operators.parse import detect

    monkeypatch.setattr("operators.parse.legacy.soffice_path", lambda: None)
    monkeypatch.setattr(detect, "_ole_format", lambda data: detect.Detection("doc", mime="application/msword"))
    doc = parse_bytes(tmp_path, "old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    assert doc.quarantine.error_class == "needs_libreoffice"
    assert "needs LibreOffice" in doc.quarantine.message


# ---- offline ------------------------------------------------------------------------------------


def test_parse_makes_no_network_calls(tmp_path, monkeypatch):
    import socket

    def reject_connection(*args, **kwargs):
        raise AssertionError(f"network access during parse: {args}")

    monkeypatch.setattr(socket.socket, "connect", reject_connection)
    monkeypatch.setattr(socket.socket, "connect_ex", reject_connection)
    samples = {
        "page.html": b"<html><body><p>Offline HTML</p></body></html>",
        "notes.md": b"# Offline\n\nMarkdown text.\n",
        "guide.rst": b"Offline\n=======\n\nreStructuredText.\n",
        "letter.docx": make_docx(["Offline DOCX."]),
        "deck.pptx": make_pptx(["Offline PPTX"]),
        "paper.pdf": make_pdf(["Offline PDF"]),
        "mail.eml": b"From: a@example.com\nTo: b@example.com\nSubject: Offline\n\nBody.\n",
        "letter.rtf": rb"{\rtf1\ansi {\pard Offline RTF\par}}",
    }
    for name, data in samples.items():
        doc = parse_bytes(tmp_path, name, data)
        assert doc.state == "pending", doc.reason


def test_parse_never_imports_unstructured(tmp_path):
    """unstructured 0.27 downloads a spaCy model on its first partition call, so parse must not use it."""
    import subprocess
    import sys

    (tmp_path / "a.html").write_bytes(b"<p>x</p><p>y</p>")
    (tmp_path / "b.docx").write_bytes(make_docx(["x"]))
    code = (
        "import sys; from pathlib import Path; from operators.parse import ParseOperator; "
        "from operators.records import Document; "
        f"docs = [Document(doc_id=p.name, uri=p.name, source='t', path=str(p)) for p in Path({str(tmp_path)!r}).iterdir()]; "
        "ParseOperator().process_batch(docs); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'unstructured'))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert completed.stdout.strip() == "[]"


# ---- OCR (runs only where the tesseract binary and pytesseract are installed) ----------------------

requires_tesseract = pytest.mark.skipif(
    not ocr_available(),
    reason="OCR needs the tesseract binary (Debian: tesseract-ocr) and pytesseract (the ocr extra)",
)


def _text_image(fmt: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (900, 200), "white")
    ImageDraw.Draw(image).text((20, 50), "Scanned invoice 4711", fill="black", font=ImageFont.load_default(size=64))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@requires_tesseract
def test_ocr_reads_image(tmp_path):
    doc = parse_bytes(tmp_path, "scan.png", _text_image("PNG"), ocr_languages=["eng"])
    assert doc.format == "image"
    assert "Scanned invoice" in doc.text


@requires_tesseract
def test_ocr_reads_image_only_pdf(tmp_path):
    doc = parse_bytes(tmp_path, "scan.pdf", _text_image("PDF"), ocr_languages=["eng"])
    assert doc.format == "pdf"
    assert doc.metadata["ocr_pages"] == [1]
    assert "Scanned invoice" in doc.text


@requires_tesseract
def test_ocr_disabled_by_args(tmp_path):
    doc = parse_bytes(tmp_path, "scan.png", _text_image("PNG"), ocr=False)
    assert doc.quarantine.error_class == "no_text"
    assert doc.quarantine.fix == "set parse.ocr to true"


@pytest.mark.parametrize(
    "text",
    ["BMI-1 is overexpressed in cancers.\n", "GIF89 results were reported.\n", "ID3 tags store the title.\n", "MZ is a prefix.\n"],
    ids=["bmp-magic", "gif-magic", "mp3-magic", "exe-magic"],
)
def test_text_starting_with_magic_bytes_stays_text(text):
    from operators.parse.detect import detect_format

    detection = detect_format(text.encode("utf-8"), "abstract.txt")
    assert detection.format == "text"
