"""Enumerate the documents of each configured source.

Document ids are stable and documented: `<source name>:<path relative to the source folder>` for
a folder of files, and `<source name>:<id field value>` for JSON Lines records. Listing reads no
document text: it returns lightweight `Document` stubs with a content hash of the raw bytes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from operators.records import Document, Section
from rag_pipeline.config import FilesSource, JsonlSource, PipelineConfig, source_name

logger = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20


class SourceError(RuntimeError):
    """A source cannot be read at all (missing folder, unreadable file). The run stops before any change."""


@dataclass(frozen=True)
class KnownFile:
    """The size, modification time and hash the manifest stored for a file, so unchanged files are not hashed again."""

    size_bytes: int
    mtime_ns: int
    content_hash: str


def list_documents(
    config: PipelineConfig, known: dict[str, KnownFile] | None = None
) -> list[Document]:
    """Return a stub for every document of every source, sorted by doc_id."""
    known = known or {}
    docs: list[Document] = []
    for source in config.sources:
        name = source_name(source)
        if isinstance(source, FilesSource):
            docs.extend(_list_files(source, name, known))
        else:
            docs.extend(_list_jsonl(source, name))
    docs.sort(key=lambda d: d.doc_id)
    return docs


def _list_files(source: FilesSource, name: str, known: dict[str, KnownFile]) -> Iterator[Document]:
    root = source.path
    if not root.is_dir():
        raise SourceError(
            f"source {name!r}: folder {root} does not exist or is not a folder; "
            "fix `sources[].path` (relative paths resolve against the config file's folder)"
        )
    for path in sorted(_walk(root)):
        rel = path.relative_to(root).as_posix()
        if not any(fnmatch.fnmatch(rel, pattern) or _glob_match(rel, pattern) for pattern in source.include):
            continue
        if any(fnmatch.fnmatch(rel, pattern) or _glob_match(rel, pattern) for pattern in source.exclude):
            continue
        doc_id = f"{name}:{rel}"
        doc = Document(doc_id=doc_id, uri=str(path), source=name, path=str(path))
        try:
            stat = path.stat()
            doc.size_bytes = stat.st_size
            doc.mtime = stat.st_mtime
            previous = known.get(doc_id)
            if previous and previous.size_bytes == stat.st_size and previous.mtime_ns == stat.st_mtime_ns:
                doc.content_hash = previous.content_hash
            else:
                doc.content_hash = hash_file(path)
            doc.metadata["mtime_ns"] = stat.st_mtime_ns
        except OSError as err:
            doc.mark_quarantined(
                "source", "unreadable", f"cannot read {path}: {err.strerror or err}",
                fix="check the file's permissions and that it is not locked by another program",
            )
        yield doc


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith("."):
                continue
            yield Path(dirpath) / filename


def _glob_match(rel: str, pattern: str) -> bool:
    """Match `**/` prefixes against files at the top level too, as users expect."""
    if pattern.startswith("**/"):
        return fnmatch.fnmatch(rel, pattern[3:])
    return False


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _list_jsonl(source: JsonlSource, name: str) -> Iterator[Document]:
    path = source.path
    if not path.is_file():
        raise SourceError(
            f"source {name!r}: JSON Lines file {path} does not exist; fix `sources[].path` "
            "(relative paths resolve against the config file's folder)"
        )
    seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            uri = f"{path}#L{line_number}"
            try:
                record = json.loads(raw_line)
                if not isinstance(record, dict):
                    raise ValueError("the line is not a JSON object")
            except ValueError as err:
                doc = Document(doc_id=f"{name}:line-{line_number}", uri=uri, source=name)
                doc.mark_quarantined(
                    "source", "corrupt", f"{path} line {line_number}: invalid JSON ({err})",
                    fix="fix or remove the line; each line must be one JSON object",
                )
                yield doc
                continue
            yield _record_document(record, source, name, uri, line_number, seen)


def _record_document(
    record: dict, source: JsonlSource, name: str, uri: str, line_number: int, seen: dict[str, int]
) -> Document:
    raw_id = record.get(source.id_field)
    doc_id = f"{name}:{raw_id}" if raw_id not in (None, "") else f"{name}:line-{line_number}"
    doc = Document(doc_id=doc_id, uri=uri, source=name, format="record")
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8")
    doc.content_hash = hashlib.sha256(canonical).hexdigest()
    doc.size_bytes = len(canonical)
    if raw_id in (None, ""):
        doc.mark_quarantined(
            "source", "missing_id", f"{path_line(source, line_number)}: field {source.id_field!r} is missing or empty",
            fix=f"give every record a unique `{source.id_field}` or change `id_field`",
        )
        return doc
    if doc_id in seen:
        doc.mark_quarantined(
            "source", "duplicate_id",
            f"{path_line(source, line_number)}: id {raw_id!r} was already used on line {seen[doc_id]}",
            fix="make record ids unique; only the first record with an id is indexed",
        )
        doc.doc_id = f"{doc_id}#line-{line_number}"
        return doc
    seen[doc_id] = line_number
    parts = []
    for field_name in source.text_fields:
        value = record.get(field_name)
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
        elif isinstance(value, list):
            parts.extend(str(v) for v in value if v)
    doc.sections = [Section(text="\n\n".join(parts))] if parts else []
    doc.metadata.update({k: record[k] for k in source.metadata_fields if k in record})
    if not parts:
        doc.mark_quarantined(
            "source", "empty", f"{path_line(source, line_number)}: none of the text fields {source.text_fields} has text",
            fix="check `text_fields` in the source config",
        )
    return doc


def path_line(source: JsonlSource, line_number: int) -> str:
    return f"{source.path} line {line_number}"
