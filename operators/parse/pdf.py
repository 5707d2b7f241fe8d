"""PDF text through pypdf: one section per non-blank page, with the 1-based page number.

pypdf's default (plain) extraction follows the content stream, which most generators write column
by column, so two-column papers read in order. Its layout mode would interleave the columns, so
it is used only for pages whose glyphs are drawn twice ("fake bold", see `_undouble_line`). Pages
set in CID fonts without a Unicode map are read by PDFium instead (see `pdfium_text`).
"""

from __future__ import annotations

import io
import logging
import re
import struct
import zlib
from typing import Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

from operators.parse.content import ParsedContent, ParseInput
from operators.parse.errors import CORRUPT, ENCRYPTED, ParseError
from operators.parse.normalize import normalize_text
from operators.parse.ocr import no_text_error, ocr_available, ocr_pdf_pages
from operators.parse.pdfium_text import PdfiumText, has_unmapped_cid_font
from operators.records import Section

logger = logging.getLogger(__name__)

# pypdf raises all of these on damaged files, besides its own PyPdfError family. RecursionError
# comes from self-referencing objects that its cycle checks miss.
PYPDF_ERRORS = (
    PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError,
    RecursionError, OSError, ArithmeticError, struct.error, zlib.error,
)  # fmt: skip

_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"})
# Four or more glyphs in a row, each extracted twice on lines of its own: "B\nB\nO\nO\n...".
_DOUBLED_GLYPH_LINES = re.compile(r"(?m)(?:^(\S)\n\1\n){4,}")
_SPACE_RUN = re.compile(r"[ \t]{2,}|\t")
_CATALOG = re.compile(rb"(\d+)\s+(\d+)\s+obj\s*<<(?:(?!endobj).){0,2000}?/Type\s*/Catalog", re.DOTALL)
_PASSWORD_FIX = "add the password to parse.pdf_passwords in the pipeline configuration"


def parse_pdf(inp: ParseInput) -> ParsedContent:
    """Extract text page by page; pages without text go to OCR when it is available."""
    passwords = [secret.get_secret_value() for secret in inp.args.pdf_passwords]
    reader, password = open_pdf(inp.data, passwords)
    try:
        page_count = len(reader.pages)
    except PYPDF_ERRORS as err:
        raise ParseError(CORRUPT, f"cannot read the PDF page tree: {err}") from err
    metadata = pdf_metadata(reader)
    metadata["page_count"] = page_count

    pdfium = PdfiumText(inp.data, password)
    try:
        texts, failed, pdfium_pages = _extract_pages(reader, page_count, pdfium)
    finally:
        pdfium.close()
    if pdfium_pages:
        metadata["pdfium_pages"] = pdfium_pages
    if failed:
        metadata["failed_pages"] = failed
        logger.warning("pypdf could not extract pages %s of %s", failed, inp.uri)
    if page_count and len(failed) == page_count:
        raise ParseError(CORRUPT, f"pypdf could not extract any of the {page_count} pages")

    # With no text anywhere, every page is OCRed (its text may be drawn as outlines). Otherwise
    # only textless pages that show an image are, so truly blank pages cost nothing.
    textless = [number for number in range(1, page_count + 1) if number not in texts and number not in failed]
    scanned = textless if not texts else [number for number in textless if _has_images(reader, number)]
    if scanned and inp.args.ocr and ocr_available():
        for number, text in ocr_pdf_pages(inp.data, scanned, inp.args.ocr_languages, password).items():
            texts[number] = clean_page_text(text)
        metadata["ocr_pages"] = scanned
    sections = [Section(text, {"page": number}) for number, text in sorted(texts.items()) if text]
    if not sections:
        raise no_text_error(f"{page_count} page(s), none with extractable text", inp.args.ocr)
    return ParsedContent("pdf", sections, metadata)


def _has_images(reader: PdfReader, number: int) -> bool:
    """Return True when a page without text draws an image XObject (a scan OCR could read)."""
    try:
        xobjects = reader.pages[number - 1]["/Resources"]["/XObject"].get_object()
        return any(xobject.get_object().get("/Subtype") == "/Image" for xobject in xobjects.values())
    except PYPDF_ERRORS:
        return False


def open_pdf(data: bytes, passwords: list[str]) -> tuple[PdfReader, str | None]:
    """Open a PDF, repairing a missing trailer and decrypting it; return the reader and password."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except PYPDF_ERRORS as err:
        repaired = _with_rebuilt_trailer(data)
        if repaired is None:
            raise ParseError(CORRUPT, f"pypdf cannot open the PDF: {err}") from err
        try:
            reader = PdfReader(io.BytesIO(repaired), strict=False)
        except PYPDF_ERRORS as second:
            raise ParseError(CORRUPT, f"pypdf cannot open the PDF, even with a rebuilt trailer: {second}") from err
    password = _decrypt(reader, passwords) if reader.is_encrypted else None
    return reader, password


def _with_rebuilt_trailer(data: bytes) -> bytes | None:
    """Append an empty xref section and a trailer pointing at the catalog, or return None.

    pypdf cannot open a file without `startxref` (a truncated download, for instance). With this
    trailer it finds an invalid xref and, in non-strict mode, rebuilds it by scanning for objects.
    """
    match = _CATALOG.search(data)
    if match is None:
        return None
    root = f"{int(match.group(1))} {int(match.group(2))} R".encode()
    offset = len(data) + 1
    return data + b"\nxref\n0 1\n0000000000 65535 f \ntrailer\n<< /Root " + root + b" /Size 1 >>\nstartxref\n" + str(offset).encode() + b"\n%%EOF\n"


def _decrypt(reader: PdfReader, passwords: list[str]) -> str:
    """Try the empty user password, then each configured one; return the one that worked."""
    for password in ["", *passwords]:
        try:
            result = reader.decrypt(password)
        except NotImplementedError as err:
            raise ParseError(ENCRYPTED, f"the PDF uses an encryption method pypdf does not support: {err}") from err
        except DependencyError as err:
            raise ParseError(ENCRYPTED, f"decrypting the PDF needs a missing package: {err}", fix="pip install 'pypdf[crypto]'") from err
        except PYPDF_ERRORS as err:
            raise ParseError(CORRUPT, f"the PDF encryption dictionary is invalid: {err}") from err
        if result != PasswordType.NOT_DECRYPTED:
            return password
    tried = f"the empty password and {len(passwords)} configured password(s)" if passwords else "the empty password"
    raise ParseError(ENCRYPTED, f"the PDF is encrypted and {tried} did not open it", fix=_PASSWORD_FIX)


def pdf_metadata(reader: PdfReader) -> dict[str, Any]:
    """Return title, author and dates from the document information dictionary, where readable."""
    metadata: dict[str, Any] = {"encrypted": reader.is_encrypted}
    try:
        info = reader.metadata
    except (*PYPDF_ERRORS, FileNotDecryptedError) as err:
        logger.debug("unreadable PDF information dictionary: %s", err)
        return metadata
    if info is None:
        return metadata
    for key, attribute in (("title", "title"), ("author", "author"), ("subject", "subject"), ("creator", "creator"), ("producer", "producer")):
        try:
            value = getattr(info, attribute)
        except PYPDF_ERRORS:
            continue
        if isinstance(value, str) and value.strip():
            metadata[key] = " ".join(value.split())
    try:
        created = info.creation_date
    except PYPDF_ERRORS:
        created = None
    if created is not None:
        metadata["created"] = created.isoformat()
    return metadata


def _extract_pages(reader: PdfReader, page_count: int, pdfium: PdfiumText) -> tuple[dict[int, str], list[int], list[int]]:
    """Return the non-blank page texts by 1-based number, the pages that failed, and those PDFium read."""
    texts: dict[int, str] = {}
    failed: list[int] = []
    pdfium_pages: list[int] = []
    for number in range(1, page_count + 1):
        try:
            page = reader.pages[number - 1]
            text = page_text(page)
            fallback = pdfium.page_text(number) if has_unmapped_cid_font(page) else None
        except PYPDF_ERRORS as err:
            logger.debug("page %d failed: %s: %s", number, type(err).__name__, err)
            failed.append(number)
            continue
        if fallback and fallback.strip():
            text = clean_page_text(fallback)
            pdfium_pages.append(number)
        if text:
            texts[number] = text
    return texts, failed, pdfium_pages


def page_text(page: Any) -> str:
    """Return a page's text with ligatures expanded and doubled "fake bold" glyphs collapsed."""
    # NOTE: columns are not detected geometrically. A generator that writes the content stream out
    # of reading order (both columns line by line) gives interleaved text.
    text = page.extract_text() or ""
    if _DOUBLED_GLYPH_LINES.search(text):
        try:
            # Layout mode pads with spaces to reproduce the page's columns; clean_page_text collapses them.
            layout = page.extract_text(extraction_mode="layout") or ""
            text = layout if layout.strip() else text
        except PYPDF_ERRORS as err:
            logger.debug("layout extraction failed, keeping plain text: %s", err)
    return clean_page_text(text)


def clean_page_text(text: str) -> str:
    """Normalize extracted page text: ligatures, doubled glyphs, and tabs that only mark positions."""
    lines = [_undouble_line(_SPACE_RUN.sub(" ", line).strip()) for line in text.split("\n")]
    return normalize_text("\n".join(lines).translate(_LIGATURES))


def _undouble_line(line: str) -> str:
    """Collapse a line whose every glyph is doubled ("TThhee  ccaatt" becomes "The cat").

    Renderers fake bold type by drawing each glyph twice, slightly offset. Only a whole line of
    pairs, with at least three letter pairs, is collapsed, so words such as "committee" stay.
    """
    compact = line.replace(" ", "")
    if len(compact) < 6 or len(compact) % 2 or compact[0::2] != compact[1::2]:
        return line
    if sum(ch.isalpha() for ch in compact[0::2]) < 3:
        return line
    words = line.split()
    if any(len(word) % 2 or word[0::2] != word[1::2] for word in words):
        return line
    return " ".join(word[0::2] for word in words)
