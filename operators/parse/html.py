"""HTML and XHTML to readable text: blocks on their own lines, table cells joined by ` | `.

Script, style and other non-content elements are removed before the walk, and attribute values
(where `data:` image payloads live) are never read.
"""

from __future__ import annotations

import re
from typing import Any

import lxml.html
from lxml import etree

from operators.parse.content import ParsedContent
from operators.parse.errors import CORRUPT, ParseError
from operators.parse.normalize import normalize_text
from operators.records import Section

_REMOVED_ELEMENTS = (
    "script", "style", "noscript", "template", "svg", "math", "head", "iframe", "object", "embed",
    "canvas",
)  # fmt: skip
_BLOCK_ELEMENTS = frozenset(
    "address article aside blockquote body caption center dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr html legend li main nav ol p pre "
    "section summary table tbody tfoot thead tr ul".split()
)
# Blocks followed by a blank line, so paragraphs stay apart after whitespace clean-up.
_PARAGRAPH_ELEMENTS = frozenset("blockquote h1 h2 h3 h4 h5 h6 ol p pre table ul".split())
_HIDDEN_XPATH = (
    "//*[@hidden or @aria-hidden='true' or "
    "contains(translate(@style, ' ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), 'display:none')]"
)
_WHITESPACE = re.compile(r"\s+")
_EMPTY_CELLS = re.compile(r"\|(?:\s+\|)+")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


def parse_html(text: str, encoding: str | None) -> ParsedContent:
    """Parse decoded HTML or XHTML markup into a single section."""
    body, metadata = html_to_text(text)
    if encoding:
        metadata["encoding"] = encoding
    return ParsedContent(format="html", sections=[Section(body)], metadata=metadata)


def html_to_text(markup: str) -> tuple[str, dict[str, Any]]:
    """Return the visible text of `markup` and its title and author, where present."""
    # lxml rejects str input that carries an XML encoding declaration; the text is decoded already.
    markup = _XML_DECLARATION.sub("", markup, count=1)
    if not markup.strip():
        return "", {}
    try:
        root = lxml.html.document_fromstring(markup, parser=_parser())
    except (etree.ParserError, ValueError) as err:
        raise ParseError(CORRUPT, f"HTML parser failed: {err}") from err

    metadata = _html_metadata(root)
    etree.strip_elements(root, etree.Comment, etree.ProcessingInstruction, *_REMOVED_ELEMENTS, with_tail=False)
    _remove_hidden(root)
    return normalize_text(_clean_lines(_walk(root))), metadata


def _parser() -> lxml.html.HTMLParser:
    # huge_tree lifts libxml2's depth and text-node limits: SEC filings nest tables deeply.
    return lxml.html.HTMLParser(remove_comments=True, remove_pis=True, huge_tree=True, no_network=True)


def _html_metadata(root: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    title = root.findtext(".//title")
    if title and title.strip():
        metadata["title"] = _WHITESPACE.sub(" ", title).strip()
    for name in ("author", "description", "keywords"):
        values = root.xpath(f"//meta[translate(@name, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')='{name}']/@content")
        if values and values[0].strip():
            metadata[name] = values[0].strip()
    language = root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang")
    if language:
        metadata["language"] = language
    return metadata


def _remove_hidden(root: Any) -> None:
    """Drop elements a browser does not show, such as the inline XBRL header of SEC filings."""
    for element in root.xpath(_HIDDEN_XPATH):
        parent = element.getparent()
        if parent is None:
            continue
        if element.tail:
            previous = element.getprevious()
            if previous is not None:
                previous.tail = (previous.tail or "") + element.tail
            else:
                parent.text = (parent.text or "") + element.tail
        parent.remove(element)


def _walk(root: Any) -> str:
    """Flatten the tree iteratively (no recursion limit on deeply nested tables).

    Inside a table cell, block elements become spaces so that each table row stays on one line.
    """
    parts: list[str] = []
    preformatted = 0
    cells = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""
        tag = tag.rpartition("}")[2].lower()  # XHTML elements carry a namespace
        if event == "start":
            preformatted += tag == "pre"
            parts.append(_opening(tag, in_cell=cells > 0))
            cells += tag in ("td", "th")
            if element.text:
                parts.append(element.text if preformatted else _WHITESPACE.sub(" ", element.text))
        else:
            cells -= tag in ("td", "th")
            parts.append(_closing(tag, in_cell=cells > 0))
            preformatted -= tag == "pre"
            if element.tail:
                parts.append(element.tail if preformatted else _WHITESPACE.sub(" ", element.tail))
    return "".join(parts)


def _opening(tag: str, in_cell: bool) -> str:
    if tag in ("td", "th"):
        return " | "
    if tag == "tr":
        return "\n"
    if in_cell:
        return " " if tag in _BLOCK_ELEMENTS or tag == "br" else ""
    if tag == "li":
        return "\n- "
    if tag == "br":
        return "\n"
    return "\n" if tag in _BLOCK_ELEMENTS else ""


def _closing(tag: str, in_cell: bool) -> str:
    if tag in ("li", "tr"):
        return ""  # the next item or row, or the end of the list or table, starts a new line
    if in_cell:
        return " " if tag in _BLOCK_ELEMENTS else ""
    if tag in _PARAGRAPH_ELEMENTS:
        return "\n\n"
    return "\n" if tag in _BLOCK_ELEMENTS else ""


def _clean_lines(text: str) -> str:
    # Lines are stripped, so indentation inside <pre> is not kept.
    lines = []
    for line in text.split("\n"):
        line = _EMPTY_CELLS.sub("|", line)
        line = re.sub(r"[ \t\xa0]{2,}", " ", line).strip()
        if line.startswith("|"):
            line = line.lstrip("| ").strip()
        if line.endswith("|"):
            line = line.rstrip("| ").strip()
        lines.append(line)
    return "\n".join(lines)
