"""Read XML parts of office containers safely, and the OOXML package properties."""

from __future__ import annotations

import posixpath
import zipfile
from typing import Any

from lxml import etree

from operators.parse.errors import CORRUPT, ParseError
from operators.parse.zipguard import read_optional

_CORE_FIELDS = {
    "{http://purl.org/dc/elements/1.1/}title": "title",
    "{http://purl.org/dc/elements/1.1/}creator": "author",
    "{http://purl.org/dc/elements/1.1/}subject": "subject",
    "{http://purl.org/dc/elements/1.1/}language": "language",
    "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}keywords": "keywords",
    "{http://purl.org/dc/terms/}created": "created",
    "{http://purl.org/dc/terms/}modified": "modified",
}
_APP_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/extended-properties}"
_OFFICE_DOCUMENT_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"


def parse_part(data: bytes, part_name: str) -> Any:
    """Parse an XML part without expanding entities or touching the network."""
    # huge_tree lifts libxml2's size limits for long documents; entity expansion stays off.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)
    try:
        return etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as err:
        raise ParseError(CORRUPT, f"invalid XML in part {part_name}: {err}") from err


def main_part_name(archive: zipfile.ZipFile, default: str, limit_bytes: int) -> str:
    """Return the main document part named by the package relationships, else `default`."""
    rels = read_optional(archive, "_rels/.rels", limit_bytes)
    if rels is None:
        return default
    for rel in parse_part(rels, "_rels/.rels"):
        if rel.get("Type") == _OFFICE_DOCUMENT_REL and rel.get("Target"):
            name = posixpath.normpath(rel.get("Target").lstrip("/"))
            if name in archive.namelist():
                return name
    return default


def ooxml_properties(archive: zipfile.ZipFile, limit_bytes: int) -> dict[str, Any]:
    """Return title, author, dates and page or slide counts from docProps, where present."""
    metadata: dict[str, Any] = {}
    core = read_optional(archive, "docProps/core.xml", limit_bytes)
    if core is not None:
        for element in parse_part(core, "docProps/core.xml"):
            key = _CORE_FIELDS.get(element.tag)
            if key and element.text and element.text.strip():
                metadata[key] = element.text.strip()
    app = read_optional(archive, "docProps/app.xml", limit_bytes)
    if app is not None:
        root = parse_part(app, "docProps/app.xml")
        for tag, key in (("Pages", "page_count"), ("Slides", "slide_count")):
            value = root.findtext(_APP_NS + tag)
            if value and value.strip().isdigit():
                metadata[key] = int(value)
    return metadata
