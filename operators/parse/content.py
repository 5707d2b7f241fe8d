"""Result types of the format parsers: text sections, metadata and embedded files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from operators.parse.errors import ParseError
from operators.records import Section


@dataclass
class EmbeddedFile:
    """A file inside another one: an archive member or an e-mail attachment.

    `error` is set when the file must not be parsed, for example an encrypted member or one over a
    size limit. The operator then quarantines the child document with it instead of parsing `data`.
    """

    name: str
    data: bytes
    kind: Literal["member", "attachment"]
    error: ParseError | None = None


@dataclass
class ParsedContent:
    """The result of parsing one file."""

    format: str
    sections: list[Section] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Lazily produced, so an archive's members are read one at a time while the operator parses them.
    children: Iterable[EmbeddedFile] = ()
    # True for containers (archives) whose own document is filtered once its members are expanded.
    is_container: bool = False


@dataclass
class ParseInput:
    """One file to parse, with the settings the parsers need."""

    data: bytes
    uri: str
    name: str  # the file name, used only as a hint between text dialects (Markdown, CSV, ...)
    args: Any  # ParseArgs; typed loosely so parser modules do not import the operator module
