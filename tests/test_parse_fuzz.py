"""Property: the parse operator returns every document, parsed or quarantined, whatever the bytes.

Random bytes and mutations of small valid files are fed under every supported extension, so both
the content detection and each format's parser meet damaged input.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.parse import ParseOperator
from operators.records import Document
from test_parse import make_docx, make_pdf, make_pptx, make_zip

EXTENSIONS = [
    "", ".pdf", ".html", ".htm", ".xhtml", ".md", ".rst", ".org", ".txt", ".docx", ".doc", ".pptx",
    ".ppt", ".xlsx", ".xls", ".csv", ".tsv", ".eml", ".msg", ".epub", ".odt", ".rtf", ".json",
    ".jsonl", ".ndjson", ".xml", ".zip", ".png", ".jpg", ".wav",
]  # fmt: skip
ERROR_CLASSES = {"encrypted", "corrupt", "unsupported", "no_text", "too_large", "timeout", "empty", "needs_libreoffice"}


def _xlsx() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.append(["Region", "Units"])
    workbook.active.append(["North", 12])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


SEEDS = [
    make_pdf(["Fuzz page one", "Fuzz page two"]),
    make_docx(["A paragraph."], table=[["a", "b"], ["1", "2"]]),
    make_pptx(["Slide text"]),
    _xlsx(),
    make_zip({"a.txt": b"member", "b.html": b"<p>member</p>"}),
    make_zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}),
    b"<html><head><title>t</title><script>x()</script></head><body><p>Hello</p><table><tr><td>1</td></tr></table></body></html>",
    b"From: a@example.com\nTo: b@example.com\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nBody\n--B\nContent-Disposition: attachment; filename=x.txt\n\nattached\n--B--\n",
    json.dumps({"title": "t", "items": [{"body": "b"}]}).encode(),
    b'{"a": "x"}\n{"a": "y"}\n',
    b"name;value\nalpha;1\nbeta;2\n",
    rb"{\rtf1\ansi {\pard Hello \b world\b0\par}}",
    b'<?xml version="1.0"?><root><item>text</item></root>',
    "Grüße, 你好, こんにちは\n".encode("utf-16"),
    "Größe\n".encode("latin-1"),
    b"# Title\n\nSome *markdown* with [a link](http://example.com).\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed file with a few bytes overwritten, a slice deleted, or its tail cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["overwrite", "delete", "truncate", "insert"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if operation == "overwrite" and data:
            data[position] = draw(st.integers(0, 255))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        elif operation == "truncate":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


def _assert_accounted_for(data: bytes, extension: str) -> None:
    doc = Document(doc_id="fuzz", uri=f"fuzz{extension}", source="fuzz", data=data)
    produced = ParseOperator(timeout_s=10).process_batch([doc])
    assert produced[0] is doc
    for item in produced:
        assert item.state in ("pending", "quarantined", "filtered")
        assert item.data is None or item.quarantine is None
        if item.quarantine is not None:
            assert item.quarantine.error_class in ERROR_CLASSES
            assert item.quarantine.message.startswith(f"cannot parse {item.uri}: ")
            # Every failure is classified by a parser, not caught by the operator's last-resort handler.
            assert "failed unexpectedly" not in item.quarantine.message
        if item.state == "pending":
            assert item.text.strip()


FUZZ_SETTINGS = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.fixture(autouse=True)
def quiet_parser_logs():
    """Damaged inputs make pypdf and the operator log a warning per file; keep the output readable."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    yield
    logging.disable(previous)


@FUZZ_SETTINGS
@given(data=st.binary(max_size=4096), extension=st.sampled_from(EXTENSIONS))
def test_random_bytes_accounted_for(data, extension):
    _assert_accounted_for(data, extension)


@FUZZ_SETTINGS
@given(data=mutated(), extension=st.sampled_from(EXTENSIONS))
def test_mutated_files_accounted_for(data, extension):
    _assert_accounted_for(data, extension)
