"""JSON, NDJSON and XML: the string values or element text, one per line."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

from operators.parse.content import ParsedContent
from operators.parse.errors import CORRUPT, ParseError
from operators.parse.normalize import normalize_text
from operators.records import Section

logger = logging.getLogger(__name__)

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


def parse_json(text: str, encoding: str, fields: list[str]) -> ParsedContent:
    """Parse one JSON value; `fields` are dotted paths, empty to take every string value."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ParseError(CORRUPT, f"invalid JSON: {err}") from err
    body = "\n".join(json_strings(value, fields))
    return ParsedContent("json", [Section(normalize_text(body))], {"encoding": encoding})


def parse_ndjson(text: str, encoding: str, fields: list[str]) -> ParsedContent:
    """Parse newline-delimited JSON into one section per record, with its 1-based line number."""
    sections = []
    invalid_lines = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            invalid_lines += 1
            continue
        body = normalize_text("\n".join(json_strings(record, fields)))
        if body:
            sections.append(Section(body, {"line": number}))
    metadata: dict[str, Any] = {"encoding": encoding}
    if invalid_lines:
        logger.warning("skipped %d NDJSON lines that are not valid JSON", invalid_lines)
        metadata["invalid_lines"] = invalid_lines
    return ParsedContent("ndjson", sections, metadata)


def json_strings(value: Any, fields: list[str]) -> Iterator[str]:
    """Yield the strings at the dotted paths in `fields`, or every string in `value` when empty.

    A path step over a list applies to each element, so `items.title` reaches `{"items": [{"title": ...}]}`.
    """
    if not fields:
        yield from _all_strings(value)
        return
    for path in fields:
        for found in _follow(value, path.split(".")):
            yield from _all_strings(found)


def _follow(value: Any, steps: list[str]) -> Iterator[Any]:
    pending = [(value, 0)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, list):
            pending.extend((item, depth) for item in reversed(current))
        elif depth == len(steps):
            yield current
        elif isinstance(current, dict) and steps[depth] in current:
            pending.append((current[steps[depth]], depth + 1))


def _all_strings(value: Any) -> Iterator[str]:
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            if current.strip():
                yield current
        elif isinstance(current, dict):
            pending.extend(reversed(list(current.values())))
        elif isinstance(current, list):
            pending.extend(reversed(current))


def looks_like_ndjson(text: str) -> bool:
    """Return True when the first lines all start a JSON object or array and most of them parse.

    Two valid records are needed, and a minority of damaged lines is tolerated (they are skipped
    and counted when parsing).
    """
    lines = [line.strip() for line in text.splitlines()[:20] if line.strip()]
    if len(lines) < 2 or not all(line[0] in "{[" for line in lines):
        return False
    valid = 0
    for line in lines:
        try:
            json.loads(line)
        except (ValueError, RecursionError):
            continue
        valid += 1
    return valid >= 2 and valid > len(lines) / 2


def parse_xml(text: str, encoding: str) -> ParsedContent:
    """Return the text of every element, one element per line, in document order.

    Entities are not expanded and nothing is fetched, so entity-expansion bombs and external
    entities stay inert.
    """
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True, huge_tree=True)
    try:
        root = etree.fromstring(_XML_DECLARATION.sub("", text, count=1).encode("utf-8"), parser=parser)
    except etree.XMLSyntaxError as err:
        raise ParseError(CORRUPT, f"invalid XML: {err}") from err
    if root is None:
        raise ParseError(CORRUPT, "invalid XML: no root element could be recovered")
    lines = []
    for event, element in etree.iterwalk(root, events=("start", "end")):
        piece = element.text if event == "start" else element.tail
        if piece and piece.strip():
            lines.append(" ".join(piece.split()))
    return ParsedContent("xml", [Section(normalize_text("\n".join(lines)))], {"encoding": encoding})
