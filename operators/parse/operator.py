"""The `parse` operator: raw files in, text sections out, bad files quarantined with a reason."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import PurePosixPath
from typing import ClassVar

from pydantic import Field, SecretStr

from operators.base import Operator, OperatorArgs, register
from operators.parse.content import EmbeddedFile, ParsedContent, ParseInput
from operators.parse.detect import detect_format
from operators.parse.errors import CORRUPT, EMPTY, TOO_LARGE, ParseError
from operators.parse.parsers import parse_detected
from operators.records import Document, sha256_hex

logger = logging.getLogger(__name__)

_MEGABYTE = 1024 * 1024


class ParseArgs(OperatorArgs):
    """Settings of the parse operator."""

    max_file_mb: float = Field(100, gt=0, description="Files over this size in MiB are quarantined as too_large before they are read.")
    timeout_s: float = Field(120, gt=0, description="Time limit in seconds for parsing one document, enforced by the executor.")
    pdf_passwords: list[SecretStr] = Field(default_factory=list, description="Passwords tried, after the empty one, on encrypted PDFs.")
    json_text_fields: list[str] = Field(default_factory=list, description="Dotted paths of the JSON/NDJSON fields to index. Empty indexes every string value.")
    ocr: bool = Field(True, description="OCR images and PDF pages without text when the tesseract binary is installed.")
    ocr_languages: list[str] = Field(default_factory=lambda: ["eng", "chi_sim"], description="Tesseract language codes to OCR with. Codes whose data is not installed are skipped.")
    max_archive_members: int = Field(10_000, ge=1, description="ZIP archives with more files than this are quarantined as too_large.")
    max_archive_total_mb: float = Field(1024, gt=0, description="ZIP containers whose files expand past this many MiB in total are quarantined as too_large.")
    max_nesting_depth: int = Field(3, ge=0, description="Archive members and attachments nested deeper than this are quarantined as too_large.")


@register
class ParseOperator(Operator):
    """Detect each document's format from its bytes and extract its text into sections.

    Archive members and e-mail attachments are parsed here too and returned after their parent,
    so later operators only ever see parsed documents.
    """

    name: ClassVar[str] = "parse"
    Args: ClassVar[type[OperatorArgs]] = ParseArgs
    version: ClassVar[str] = "1"

    def document_timeout_s(self) -> float | None:
        """Return the per-document time limit that the executor enforces."""
        return self.args.timeout_s

    def fingerprint(self) -> str:
        """Return the base fingerprint, mixed with a digest of the PDF passwords when there are any.

        The arguments dump masks passwords, so without this, adding the password of an encrypted
        PDF would not change the fingerprint and its stored quarantine could be reused.
        """
        base = super().fingerprint()
        if not self.args.pdf_passwords:
            return base
        secrets = "\0".join(secret.get_secret_value() for secret in self.args.pdf_passwords)
        return hashlib.sha256(f"{base}:{sha256_hex(secrets)}".encode()).hexdigest()[:16]

    def process(self, doc: Document) -> Document | list[Document]:
        if doc.format == "record" and doc.sections:
            return doc  # a JSONL record the source reader already split into sections
        produced = self._parse_tree(doc, depth=0)
        return produced if len(produced) > 1 else doc

    def _parse_tree(self, doc: Document, depth: int) -> list[Document]:
        """Parse `doc`, then each embedded file as a child document; return them in order."""
        produced = [doc]
        content = self._parse_document(doc)
        if content is None:
            return produced

        expanded = 0
        try:
            for embedded in content.children:
                expanded += 1
                child = self._child_document(doc, embedded)
                if embedded.error is not None:
                    self._quarantine(child, embedded.error)
                    produced.append(child)
                elif depth + 1 > self.args.max_nesting_depth:
                    self._quarantine(child, _too_deep(self.args.max_nesting_depth))
                    produced.append(child)
                else:
                    produced.extend(self._parse_tree(child, depth + 1))
        except (ParseError, OSError, ValueError, RecursionError) as err:
            logger.warning("stopped expanding %s after %d embedded files: %s", doc.uri, expanded, err)
            doc.metadata["expansion_error"] = str(err)

        if content.is_container:
            doc.mark_filtered(self.name, f"archive expanded into {expanded} member documents")
        return produced

    def _parse_document(self, doc: Document) -> ParsedContent | None:
        """Fill `doc` from its bytes and return the parsed content, or quarantine it and return None."""
        try:
            content = self._parse_bytes(doc)
        except ParseError as err:
            self._quarantine(doc, err)
            return None
        except MemoryError:
            self._quarantine(doc, ParseError(TOO_LARGE, "ran out of memory while parsing", fix="lower parse.max_file_mb"))
            return None
        except RecursionError:
            self._quarantine(doc, ParseError(CORRUPT, "the file nests structures too deeply to parse (Python recursion limit)"))
            return None
        except Exception as err:  # a bug or an unexpected error in a third-party parser
            logger.exception("unexpected error parsing %s", doc.uri)
            self._quarantine(doc, ParseError(CORRUPT, f"the parser failed unexpectedly: {type(err).__name__}: {err}"))
            return None

        doc.format = content.format
        doc.sections = content.sections
        doc.metadata.update(content.metadata)
        doc.data = None
        if not content.is_container and not doc.text.strip():
            self._quarantine(doc, ParseError(EMPTY, f"the {content.format} file contains no text"))
        return content

    def _parse_bytes(self, doc: Document) -> ParsedContent:
        size = _size_bytes(doc)
        if size > self.args.max_file_mb * _MEGABYTE:
            raise ParseError(
                TOO_LARGE,
                f"the file is {size / _MEGABYTE:,.1f} MiB, over the parse.max_file_mb limit of {self.args.max_file_mb:g} MiB",
                fix="raise parse.max_file_mb or remove the file from the source",
            )
        try:
            data = doc.read_bytes()
        except OSError as err:
            raise ParseError(CORRUPT, f"cannot read the file: {err}") from err
        doc.size_bytes = doc.size_bytes or len(data)
        name = _file_name(doc)
        detection = detect_format(data, name)
        if detection.format not in ("empty", "unsupported"):
            doc.format = detection.format
        if detection.mime:
            doc.metadata["mime"] = detection.mime
        return parse_detected(ParseInput(data, doc.uri, name, self.args), detection)

    def _child_document(self, parent: Document, embedded: EmbeddedFile) -> Document:
        separator = "!/" if embedded.kind == "member" else "#attachment/"
        return Document(
            doc_id=f"{parent.doc_id}{separator}{embedded.name}",
            uri=f"{parent.uri}{separator}{embedded.name}",
            source=parent.source,
            content_hash=sha256_hex(embedded.data),
            size_bytes=len(embedded.data),
            mtime=parent.mtime,
            data=embedded.data,
            parent_id=parent.doc_id,
        )

    def _quarantine(self, doc: Document, err: ParseError) -> None:
        message = f"cannot parse {doc.uri}: {err.message}"
        logger.warning("quarantined %s (%s): %s", doc.uri, err.error_class, err.message)
        doc.mark_quarantined(operator=self.name, error_class=err.error_class, message=message, fix=err.fix)


def _too_deep(limit: int) -> ParseError:
    return ParseError(
        TOO_LARGE,
        f"the file is nested more than {limit} archive or attachment levels deep (a possible decompression bomb)",
        fix="raise parse.max_nesting_depth if the source is trusted",
    )


def _size_bytes(doc: Document) -> int:
    if doc.data is not None:
        return len(doc.data)
    if doc.path is not None:
        try:
            return os.path.getsize(doc.path)
        except OSError:
            return 0  # the read below reports the error
    return doc.size_bytes


def _file_name(doc: Document) -> str:
    """Return the file name, which parsers use only as a hint between text dialects."""
    if doc.path:
        return os.path.basename(doc.path)
    last = doc.uri.rsplit("!/", 1)[-1].rsplit("#attachment/", 1)[-1]
    return PurePosixPath(last).name
