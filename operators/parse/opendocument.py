"""OpenDocument text, spreadsheets and presentations (ODT, ODS, ODP), read from `content.xml`."""

from __future__ import annotations

from typing import Any

from operators.parse.content import ParsedContent, ParseInput
from operators.parse.errors import CORRUPT, ParseError
from operators.parse.normalize import normalize_text
from operators.parse.xmlparts import parse_part
from operators.parse.zipguard import MEGABYTE, open_zip, read_member, read_optional
from operators.records import Section

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_DRAW = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_META = "{urn:oasis:names:tc:opendocument:xmlns:meta:1.0}"
_DC = "{http://purl.org/dc/elements/1.1/}"

# Elements whose text is not document content (change-tracking records, annotations' metadata).
_SKIPPED = frozenset({_TEXT + "tracked-changes", _OFFICE + "annotation-end", _TEXT + "sequence-decls"})


def parse_opendocument(inp: ParseInput, kind: str) -> ParsedContent:
    """Parse an ODF package; `kind` is "odt", "ods" or "odp"."""
    limit = int(inp.args.max_file_mb * MEGABYTE)
    with open_zip(inp.data, inp.args.max_archive_total_mb) as archive:
        content = parse_part(read_member(archive, "content.xml", limit), "content.xml")
        meta = read_optional(archive, "meta.xml", limit)
        metadata = _odf_metadata(parse_part(meta, "meta.xml")) if meta is not None else {}

    body = content.find(f"{_OFFICE}body")
    if body is None or len(body) == 0:
        raise ParseError(CORRUPT, "content.xml has no office:body")
    document = body[0]
    if kind == "ods":
        sections = [_named_section(table, "sheet", _TABLE + "name") for table in document.iter(_TABLE + "table")]
    elif kind == "odp":
        pages = document.iter(_DRAW + "page")
        sections = [Section(normalize_text("\n".join(_block_lines(page))), {"slide": n}) for n, page in enumerate(pages, 1)]
    else:
        sections = [Section(normalize_text("\n\n".join(_block_lines(document))))]
    return ParsedContent(kind, [section for section in sections if section.text], metadata)


def _named_section(element: Any, key: str, name_attribute: str) -> Section:
    return Section(normalize_text("\n".join(_block_lines(element))), {key: element.get(name_attribute, "")})


def _block_lines(container: Any) -> list[str]:
    """Return one string per heading, paragraph and table row below `container`, in order."""
    lines = []
    pending = list(container)
    while pending:
        element = pending.pop(0)
        if element.tag in _SKIPPED:
            continue
        if element.tag in (_TEXT + "p", _TEXT + "h"):
            text = inline_text(element)
            if text.strip():
                lines.append(text)
        elif element.tag == _TABLE + "table-row":
            cells = [" ".join(" ".join(_block_lines(cell)).split()) for cell in element if cell.tag == _TABLE + "table-cell"]
            row = " | ".join(cell for cell in cells if cell)
            if row:
                lines.append(row)
        else:
            pending[:0] = list(element)  # descend: lists, sections, frames, table bodies
    return lines


def inline_text(paragraph: Any) -> str:
    """Return a paragraph's text with ODF's space, tab and line-break elements expanded."""
    parts = [paragraph.text or ""]
    for child in paragraph:
        if child.tag == _TEXT + "s":
            parts.append(" " * _space_count(child.get(_TEXT + "c")))
        elif child.tag == _TEXT + "tab":
            parts.append("\t")
        elif child.tag == _TEXT + "line-break":
            parts.append("\n")
        elif child.tag not in _SKIPPED and child.tag != _OFFICE + "annotation":
            parts.append(inline_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _space_count(value: str | None) -> int:
    """Return text:s/@text:c as a count, 1 when absent or invalid, capped so a bogus value stays small."""
    return min(int(value), 100) if value and value.isdigit() else 1


def _odf_metadata(root: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    fields = {"title": _DC + "title", "author": _META + "initial-creator", "language": _DC + "language"}
    for key, tag in fields.items():
        value = root.findtext(f".//{tag}")
        if value and value.strip():
            metadata[key] = value.strip()
    if "author" not in metadata:
        creator = root.findtext(f".//{_DC}creator")
        if creator and creator.strip():
            metadata["author"] = creator.strip()
    statistics = root.find(f".//{_META}document-statistic")
    if statistics is not None and (statistics.get(_META + "page-count") or "").isdigit():
        metadata["page_count"] = int(statistics.get(_META + "page-count"))
    return metadata
