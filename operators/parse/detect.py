"""Detect a file's format from its bytes.

Binary formats are recognized by signature (PDF, ZIP and the OOXML/ODF/EPUB packages inside it,
OLE compound files, RTF, images). Everything else is decoded as text, and the text is classified
by content: JSON, NDJSON, e-mail, HTML, XML. The file name's extension only chooses between text
dialects that content cannot tell apart (Markdown, reStructuredText, Org, CSV). It never overrides
a content signature, so a DOCX named `.doc` is a DOCX and an e-mail named `.txt` is an e-mail.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import filetype

from operators.parse.encodings import UndecodableError, decode_text
from operators.parse.errors import CORRUPT, ParseError
from operators.parse.structured import looks_like_ndjson
from operators.parse.tables import looks_like_tsv
from operators.parse.zipguard import ZIP_ERRORS

_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_ODF_TYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/epub+zip": "epub",
}
_OOXML_FOLDERS = (
    ("word/", "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("ppt/", "pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("xl/", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
)
_EXTENSION_HINTS = {
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown",
    ".rst": "rst", ".rest": "rst", ".org": "org",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".htm": "html", ".html": "html", ".xhtml": "html", ".xml": "xml",
}  # fmt: skip

_HTML_DOCUMENT = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_HTML_TAGS = re.compile(
    r"<(?:p|div|span|a|br|table|tr|td|ul|ol|li|h[1-6]|b|i|em|strong|img|meta|title|section|article|"
    r"header|footer|nav|script|style|form|input|pre|code|blockquote)[\s/>]",
    re.IGNORECASE,
)
_MAIL_HEADER_NAMES = frozenset(
    "from to cc bcc subject date message-id mime-version received return-path reply-to sender "
    "delivered-to in-reply-to references content-type x-mailer".split()
)
_MAIL_KEY_HEADERS = frozenset({"from", "to", "subject", "date", "message-id", "received"})
_HEADER_FIELD = re.compile(r"^([!-9;-~]+):")
_MARKDOWN_SIGNS = re.compile(r"(?m)^(?:#{1,6} \S|```|\* \S|- \S|\d+\. \S)|\[[^\]\n]+\]\([^)\s]+\)")
_ORG_SIGNS = re.compile(r"(?im)^(?:#\+(?:title|author|begin_\w+|options):|\*+ \S)")
_RST_SIGNS = re.compile(r"(?m)^(?:\.\. [\w-]+::|[=\-~^\"'`#*+]{4,}\s*$)")


@dataclass
class Detection:
    """The detected format; text formats also carry the decoded text and its encoding."""

    format: str
    mime: str | None = None
    text: str | None = None
    encoding: str | None = None
    error: ParseError | None = None  # set when the container is damaged beyond recognition


def detect_format(data: bytes, name: str) -> Detection:
    """Return the format of `data`; `name` is the file name, a hint for text dialects only."""
    if not data.strip(b" \t\r\n\x00\x0b\x0c"):
        return Detection("empty")
    binary = _binary_format(data)
    if binary is not None:
        return binary
    try:
        text, encoding = decode_text(data)
    except UndecodableError:
        return Detection("unsupported", mime=sniff_mime(data))
    if not _is_mostly_printable(text):
        return Detection("unsupported", mime=sniff_mime(data))
    return Detection(text_format(text, _extension_hint(name)), text=text, encoding=encoding)


def sniff_mime(data: bytes) -> str:
    """Return libmagic's MIME type for `data`, else filetype's, else application/octet-stream."""
    mime = _libmagic_mime(data)
    if mime:
        return mime
    kind = filetype.guess(data[:8192])
    return kind.mime if kind is not None else "application/octet-stream"


def _libmagic_mime(data: bytes) -> str | None:
    try:
        import magic
    except ImportError:  # python-magic also raises this when the libmagic1 system package is missing
        return None
    try:
        return magic.from_buffer(data[:65536], mime=True)
    except magic.MagicException:
        return None


def _binary_format(data: bytes) -> Detection | None:
    if _is_pdf(data):
        return Detection("pdf", mime="application/pdf")
    if data.startswith(_ZIP_SIGNATURES):
        return _zip_format(data)
    if data.startswith(_OLE_SIGNATURE):
        return _ole_format(data)
    if data.lstrip()[:5] == b"{\\rtf":
        return Detection("rtf", mime="application/rtf")
    if _has_no_binary_bytes(data[:8192]):
        # filetype matches two-byte signatures such as "BM" (BMP), so a text file that starts
        # with "BMI-1 ..." would pass for an image. Real image and audio headers contain NUL
        # or other control bytes within their first kilobytes.
        return None
    kind = filetype.guess(data[:8192])
    if kind is None:
        return None
    if kind.mime.startswith("image/"):
        return Detection("image", mime=kind.mime)
    return Detection("unsupported", mime=sniff_mime(data))


_CONTROL_BYTES = bytes(range(0, 9)) + bytes(range(14, 27)) + bytes(range(28, 32))


def _has_no_binary_bytes(sample: bytes) -> bool:
    """Return True when `sample` has no NUL and almost no other control bytes, as text has."""
    if not sample or b"\x00" in sample:
        return False
    controls = sum(sample.count(bytes([b])) for b in _CONTROL_BYTES)
    return controls <= len(sample) // 200


def _is_pdf(data: bytes) -> bool:
    """Return True for a PDF header at the start, or within the first KiB before PDF objects.

    Readers accept junk before the header (as Acrobat does within 1024 bytes), but a text file that
    merely mentions "%PDF-" has no `obj` markers after it.
    """
    if data.lstrip()[:5] == b"%PDF-":
        return True
    position = data.find(b"%PDF-", 0, 1024)
    return position != -1 and b" obj" in data[position : position + 65536]


def _zip_format(data: bytes) -> Detection:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        declared_type = _small_member(archive, "mimetype")
    except ZIP_ERRORS:
        return Detection("zip", mime="application/zip")  # parse_zip reports the damage
    if declared_type in _ODF_TYPES:
        return Detection(_ODF_TYPES[declared_type], mime=declared_type)
    if "[Content_Types].xml" in names:
        for folder, kind, mime in _OOXML_FOLDERS:
            if any(name.startswith(folder) for name in names):
                return Detection(kind, mime=mime)
    if "META-INF/container.xml" in names and any(name.endswith(".opf") for name in names):
        return Detection("epub", mime="application/epub+zip")
    return Detection("zip", mime="application/zip")


def _small_member(archive: zipfile.ZipFile, name: str) -> str | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > 200:
        return None
    with archive.open(info) as handle:
        return handle.read(200).decode("ascii", errors="replace").strip()


def _ole_format(data: bytes) -> Detection:
    """Tell apart the formats stored in OLE compound files by their top-level stream names."""
    import olefile

    try:
        with olefile.OleFileIO(data) as ole:
            top = {entry[0] for entry in ole.listdir(streams=True, storages=True)}
    except (OSError, ValueError, IndexError, TypeError) as err:
        return Detection("ole", error=ParseError(CORRUPT, f"invalid OLE compound file: {err}"))
    if "EncryptedPackage" in top:
        return Detection("encrypted_office", mime="application/x-ole-storage")
    if "WordDocument" in top:
        return Detection("doc", mime="application/msword")
    if "PowerPoint Document" in top:
        return Detection("ppt", mime="application/vnd.ms-powerpoint")
    if "Workbook" in top or "Book" in top:
        return Detection("xls", mime="application/vnd.ms-excel")
    if any(name.startswith("__substg1.0_") for name in top):
        return Detection("msg", mime="application/vnd.ms-outlook")
    return Detection("unsupported", mime="application/x-ole-storage")


def text_format(text: str, hint: str | None) -> str:
    """Classify decoded text by content, using the extension `hint` only between dialects."""
    head = text.lstrip()[:4096]
    json_kind = _json_kind(text) if head[:1] in ("{", "[") else None
    if json_kind:
        return json_kind
    if _looks_like_email(text):
        return "eml"
    if hint in ("markdown", "rst", "org"):
        return hint  # Markdown may embed raw HTML; the renderer passes it to the HTML clean-up
    if head.startswith("<"):
        if head.startswith("<?xml") and not _HTML_DOCUMENT.search(head):
            return "xml"
        if _HTML_DOCUMENT.search(head) or hint == "html" or len(_HTML_TAGS.findall(head)) >= 2:
            return "html"
        if hint == "xml" or head.startswith("<?xml"):
            return "xml"
    if hint in ("csv", "tsv"):
        return hint
    if looks_like_tsv(text):
        return "tsv"
    return _markup_dialect(text[:16384])


def _json_kind(text: str) -> str | None:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return "ndjson" if looks_like_ndjson(text) else None
    return "json"


def _looks_like_email(text: str) -> bool:
    """Return True when the text opens with an RFC 5322 header block naming key mail headers."""
    lines = text[:16384].lstrip("\n").split("\n")
    if lines and lines[0].startswith("From "):
        lines = lines[1:]  # an mbox "From " separator line
    names = set()
    for line in lines:
        if not line.strip():
            break
        if line[:1] in (" ", "\t"):
            continue  # a folded continuation of the previous header
        match = _HEADER_FIELD.match(line)
        if match is None:
            return False
        names.add(match.group(1).lower())
    known = names & _MAIL_HEADER_NAMES
    return len(known) >= 2 and bool(known & _MAIL_KEY_HEADERS)


def _markup_dialect(sample: str) -> str:
    if len(_ORG_SIGNS.findall(sample)) >= 2 and "#+" in sample:
        return "org"
    if len(_RST_SIGNS.findall(sample)) >= 2 and ".. " in sample:
        return "rst"
    if len(_MARKDOWN_SIGNS.findall(sample)) >= 2:
        return "markdown"
    return "text"


def _extension_hint(name: str) -> str | None:
    return _EXTENSION_HINTS.get(PurePosixPath(name).suffix.lower())


def _is_mostly_printable(text: str) -> bool:
    sample = text[:65536]
    if not sample:
        return True
    unprintable = sum(1 for ch in sample if not ch.isprintable() and ch not in "\n\r\t\f\v")
    return unprintable <= 0.05 * len(sample)
