"""EPUB e-books: the XHTML chapters in spine (reading) order, one section per chapter."""

from __future__ import annotations

import posixpath
import zipfile
from typing import Any

from operators.parse.content import ParsedContent, ParseInput
from operators.parse.encodings import decode_text
from operators.parse.errors import CORRUPT, ParseError
from operators.parse.html import html_to_text
from operators.parse.xmlparts import parse_part
from operators.parse.zipguard import MEGABYTE, open_zip, read_member, read_optional
from operators.records import Section

_CONTAINER_NS = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF_NS = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_HTML_TYPES = ("application/xhtml+xml", "text/html")


def parse_epub(inp: ParseInput) -> ParsedContent:
    """Parse the package document named by META-INF/container.xml and its spine chapters."""
    limit = int(inp.args.max_file_mb * MEGABYTE)
    with open_zip(inp.data, inp.args.max_archive_total_mb) as archive:
        package_name = _package_name(archive, limit)
        package = parse_part(read_member(archive, package_name, limit), package_name)
        chapters = _spine_documents(archive, package, posixpath.dirname(package_name))
        sections = []
        for number, name in enumerate(chapters, start=1):
            text, _ = decode_text(read_member(archive, name, limit))
            body, _ = html_to_text(text)
            if body:
                sections.append(Section(body, {"chapter": number, "href": name}))
    return ParsedContent("epub", sections, _package_metadata(package))


def _package_name(archive: zipfile.ZipFile, limit: int) -> str:
    container = read_optional(archive, "META-INF/container.xml", limit)
    if container is not None:
        rootfile = parse_part(container, "META-INF/container.xml").find(f".//{_CONTAINER_NS}rootfile")
        if rootfile is not None and rootfile.get("full-path") in archive.namelist():
            return rootfile.get("full-path")
    candidates = [name for name in archive.namelist() if name.endswith(".opf")]
    if not candidates:
        raise ParseError(CORRUPT, "EPUB has no package document (.opf)")
    return candidates[0]


def _spine_documents(archive: zipfile.ZipFile, package: Any, base: str) -> list[str]:
    """Return the member names of the spine's (X)HTML documents, in reading order."""
    manifest = {}
    for item in package.iter(f"{_OPF_NS}item"):
        if item.get("media-type") in _HTML_TYPES and item.get("href"):
            manifest[item.get("id")] = posixpath.normpath(posixpath.join(base, item.get("href")))
    ordered = [manifest[ref.get("idref")] for ref in package.iter(f"{_OPF_NS}itemref") if ref.get("idref") in manifest]
    if not ordered:
        ordered = sorted(manifest.values())  # no spine: fall back to the manifest in name order
    names = set(archive.namelist())
    return [name for name in dict.fromkeys(ordered) if name in names]


def _package_metadata(package: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for key, tag in (("title", "title"), ("author", "creator"), ("language", "language")):
        value = package.findtext(f".//{_DC}{tag}")
        if value and value.strip():
            metadata[key] = value.strip()
    return metadata
