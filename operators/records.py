"""Record types that flow through a pipeline.

A `Document` is the one unit every operator receives and returns. It carries its raw bytes until
`parse` replaces them with `sections` (pages, sheets, slides), and later its `chunks`. A document
that an operator drops or fails stays in the stream with a terminal `state`, so the run can account
for every input at the end.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Terminal states a document can reach during a run. `pending` means still in flight.
PENDING = "pending"
INDEXED = "indexed"
DUPLICATE = "duplicate"
FILTERED = "filtered"
QUARANTINED = "quarantined"
TERMINAL_STATES = (INDEXED, DUPLICATE, FILTERED, QUARANTINED)

SECTION_SEPARATOR = "\n\n"


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass
class Section:
    """A contiguous part of a document's text, such as one PDF page or one spreadsheet sheet."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """A piece of a document's cleaned text, sized for the embedding model."""

    chunk_id: str
    text: str
    ordinal: int
    char_start: int
    char_end: int
    token_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: Any = None  # numpy float32 array once `embed` has run
    reused: bool = False  # True when the vector came from the embedding cache

    @property
    def text_hash(self) -> str:
        return sha256_hex(self.text)


@dataclass
class QuarantineInfo:
    """The reason a document could not be processed, and the fix a user can apply."""

    operator: str
    error_class: str  # encrypted, corrupt, unsupported, no_text, too_large, timeout, empty, crash, ...
    message: str
    fix: str | None = None


@dataclass
class Document:
    doc_id: str
    uri: str
    source: str
    content_hash: str = ""
    size_bytes: int = 0
    mtime: float = 0.0
    path: str | None = None  # local file path, when the source is a folder
    data: bytes | None = None  # raw bytes; dropped after parsing
    format: str | None = None  # detected format, e.g. "pdf", "html", "text"
    sections: list[Section] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    state: str = PENDING
    reason: str | None = None
    duplicate_of: str | None = None
    similarity: float | None = None
    quarantine: QuarantineInfo | None = None
    parent_id: str | None = None  # set on archive members and e-mail attachments
    # Other documents whose chunks stand in for content this document's chunks leave out (chunks
    # that `dedupe_semantic` dropped). A refresh re-processes this document when one of them
    # changes or goes away, so the content stays in the index.
    depends_on: list[str] = field(default_factory=list)

    # ---- text helpers -------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The document's full text: its sections joined by a blank line."""
        return SECTION_SEPARATOR.join(s.text for s in self.sections if s.text)

    def section_spans(self) -> list[tuple[int, int, Section]]:
        """Return `(char_start, char_end, section)` for each non-empty section within `text`."""
        spans = []
        offset = 0
        for section in self.sections:
            if not section.text:
                continue
            end = offset + len(section.text)
            spans.append((offset, end, section))
            offset = end + len(SECTION_SEPARATOR)
        return spans

    def set_text(self, text: str) -> None:
        self.sections = [Section(text=text)]

    # ---- state transitions --------------------------------------------------------------------

    @property
    def is_pending(self) -> bool:
        return self.state == PENDING

    def mark_quarantined(
        self, operator: str, error_class: str, message: str, fix: str | None = None
    ) -> None:
        self.state = QUARANTINED
        self.quarantine = QuarantineInfo(operator, error_class, message, fix)
        self.reason = f"{error_class}: {message}"
        self.data = None
        self.chunks = []

    def mark_filtered(self, operator: str, reason: str) -> None:
        self.state = FILTERED
        self.reason = f"filtered by {operator}: {reason}"
        self.data = None
        self.chunks = []

    def mark_duplicate(self, of_doc_id: str, reason: str, similarity: float | None = None) -> None:
        self.state = DUPLICATE
        self.duplicate_of = of_doc_id
        self.similarity = similarity
        self.reason = reason
        self.data = None
        self.chunks = []

    def read_bytes(self) -> bytes:
        """Return the raw bytes, reading them from `path` when they were not loaded yet."""
        if self.data is not None:
            return self.data
        if self.path is None:
            return b""
        with open(self.path, "rb") as handle:
            return handle.read()
