"""Word (DOCX) and PowerPoint (PPTX) documents.

DOCX is read straight from `word/document.xml` with lxml rather than python-docx: python-docx skips
content controls (`w:sdt`, where tables of contents live) and is several times slower on long
documents. PPTX goes through python-pptx, which resolves slide order and shape trees.
"""

from __future__ import annotations

import io
from typing import Any

from lxml import etree

from operators.parse.content import ParsedContent, ParseInput
from operators.parse.errors import CORRUPT, ParseError
from operators.parse.normalize import normalize_text
from operators.parse.xmlparts import main_part_name, ooxml_properties, parse_part
from operators.parse.zipguard import MEGABYTE, ZIP_ERRORS, open_zip, read_member
from operators.records import Section

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_RUN_TEXT_TAGS = (_W + "t", _W + "tab", _W + "br", _W + "cr", _W + "noBreakHyphen")


def parse_docx(inp: ParseInput) -> ParsedContent:
    """Return the body text of a DOCX: paragraphs in order, tables one row per line."""
    limit = int(inp.args.max_file_mb * MEGABYTE)
    with open_zip(inp.data, inp.args.max_archive_total_mb) as archive:
        part = main_part_name(archive, "word/document.xml", limit)
        root = parse_part(read_member(archive, part, limit), part)
        metadata = ooxml_properties(archive, limit)
    # Drawing shapes repeat their text in a legacy VML fallback; keep only the primary copy.
    etree.strip_elements(root, _MC_FALLBACK, with_tail=False)
    body = root.find(_W + "body")
    if body is None:
        raise ParseError(CORRUPT, f"DOCX part {part} has no w:body element")
    lines = list(_block_lines(body))
    return ParsedContent("docx", [Section(normalize_text("\n\n".join(lines)))], metadata)


def _block_lines(container: Any) -> Any:
    """Yield one string per paragraph and per table row, descending into content controls."""
    for child in container:
        if child.tag == _W + "p":
            text = _paragraph_text(child)
            if text.strip():
                yield text
        elif child.tag == _W + "tbl":
            rows = [_row_text(row) for row in child.iter(_W + "tr") if row.getparent() is child]
            yield "\n".join(row for row in rows if row)
        elif child.tag == _W + "sdt":
            content = child.find(_W + "sdtContent")
            if content is not None:
                yield from _block_lines(content)
        elif child.tag in (_W + "customXml", _W + "smartTag"):
            yield from _block_lines(child)


def _paragraph_text(paragraph: Any) -> str:
    parts = []
    for node in paragraph.iter(*_RUN_TEXT_TAGS):
        if node.getparent().tag != _W + "r":
            continue  # e.g. tab stop definitions under w:pPr/w:tabs
        if node.tag == _W + "t":
            parts.append(node.text or "")
        elif node.tag == _W + "tab":
            parts.append("\t")
        elif node.tag == _W + "noBreakHyphen":
            parts.append("-")
        else:
            parts.append("\n")
    return "".join(parts)


def _row_text(row: Any) -> str:
    cells = []
    for cell in row.findall(_W + "tc"):
        text = " ".join(" ".join(_block_lines(cell)).split())
        cells.append(text)
    return " | ".join(cell for cell in cells if cell)


def parse_pptx(inp: ParseInput) -> ParsedContent:
    """Return one section per slide (1-based `slide` metadata) with its shapes' text and notes."""
    from pptx import Presentation

    # Opened through the guard first so a decompression bomb is refused before python-pptx reads it.
    open_zip(inp.data, inp.args.max_archive_total_mb).close()
    try:
        presentation = Presentation(io.BytesIO(inp.data))
    except (*ZIP_ERRORS, etree.XMLSyntaxError) as err:
        raise ParseError(CORRUPT, f"python-pptx cannot open the presentation: {err}") from err

    sections = []
    for number, slide in enumerate(presentation.slides, start=1):
        lines = [text for shape in slide.shapes for text in _shape_texts(shape)]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append(notes)
        text = normalize_text("\n".join(lines))
        if text:
            sections.append(Section(text, {"slide": number}))

    metadata = _pptx_properties(presentation)
    metadata["slide_count"] = len(presentation.slides)
    return ParsedContent("pptx", sections, metadata)


def _shape_texts(shape: Any) -> list[str]:
    """Return the text of a shape, a table (one row per line) or a group, in drawing order."""
    pending = [shape]
    texts = []
    while pending:
        current = pending.pop(0)
        if getattr(current, "shape_type", None) is not None and hasattr(current, "shapes"):
            pending[:0] = list(current.shapes)  # a group: its members come next, in order
        elif getattr(current, "has_table", False):
            for row in current.table.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                texts.append(" | ".join(cell for cell in cells if cell))
        elif getattr(current, "has_text_frame", False) and current.text_frame.text.strip():
            texts.append(current.text_frame.text)
    return texts


def _pptx_properties(presentation: Any) -> dict[str, Any]:
    properties = presentation.core_properties
    metadata: dict[str, Any] = {}
    for key, value in (("title", properties.title), ("author", properties.author), ("subject", properties.subject)):
        if value and value.strip():
            metadata[key] = value.strip()
    return metadata
