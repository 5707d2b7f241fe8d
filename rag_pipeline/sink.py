"""Sinks for finished documents: chunk rows staged to Parquet, and one manifest entry per document."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from operators.records import Document
from rag_pipeline.fingerprints import Fingerprints
from rag_pipeline.index import chunk_schema
from rag_pipeline.state import PARSED_SCHEMA, ManifestEntry

logger = logging.getLogger(__name__)

_ROWS_PER_WRITE = 2048


class ChunkStager:
    """Buffers chunk rows and appends them to one Parquet file under the run's staging folder."""

    def __init__(self, folder: Path, dimension: int, run_id: str, fingerprints: Fingerprints) -> None:
        self.folder = folder
        self.schema = chunk_schema(dimension)
        self.dimension = dimension
        self.run_id = run_id
        self.fingerprints = fingerprints
        self.parsed = ParsedStager(folder)
        self.rows: list[dict] = []
        self.vectors: list[np.ndarray] = []
        self.count = 0
        self._writer: pq.ParquetWriter | None = None

    def add(self, doc: Document) -> None:
        if doc.sections:
            self.parsed.add(doc, self.fingerprints.parse_fp)
        for chunk in doc.chunks:
            vector = np.asarray(chunk.vector, dtype=np.float32)
            if vector.shape != (self.dimension,):
                raise ValueError(
                    f"chunk {chunk.chunk_id} of {doc.uri} has a vector of shape {vector.shape}, "
                    f"expected ({self.dimension},); was the embed step skipped?"
                )
            self.rows.append(
                {
                    "chunk_id": chunk.chunk_id,
                    "doc_id": doc.doc_id,
                    "uri": doc.uri,
                    "source": doc.source,
                    "text": chunk.text,
                    "ordinal": chunk.ordinal,
                    "char_start": chunk.char_start,
                    "char_end": chunk.char_end,
                    "token_count": chunk.token_count,
                    "content_hash": doc.content_hash,
                    "text_hash": chunk.text_hash,
                    "parse_fp": self.fingerprints.parse_fp,
                    "chunk_fp": self.fingerprints.chunk_fp,
                    "embed_fp": self.fingerprints.embed_fp,
                    "metadata": json.dumps(chunk.metadata, ensure_ascii=False, default=str),
                    "run_id": self.run_id,
                }
            )
            self.vectors.append(vector)
        if len(self.rows) >= _ROWS_PER_WRITE:
            self._write()

    def _write(self) -> None:
        if not self.rows:
            return
        columns = {name: [row[name] for row in self.rows] for name in self.rows[0]}
        flat = pa.array(np.stack(self.vectors).reshape(-1), type=pa.float32())
        columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, self.dimension)
        table = pa.table(columns).select(self.schema.names).cast(self.schema)
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.folder / "chunks.parquet", self.schema)
        self._writer.write_table(table)
        self.count += len(self.rows)
        self.rows, self.vectors = [], []

    def finish(self) -> pads.Dataset | None:
        """Close the file and return it as a dataset, or None when nothing was staged."""
        self._write()
        if self._writer is None:
            return None
        self._writer.close()
        logger.info("staged %d chunks in %s", self.count, self.folder)
        return pads.dataset(self.folder / "chunks.parquet", format="parquet", schema=self.schema)


class ParsedStager:
    """Stages the cleaned sections of indexed documents for the parse cache."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "parsed.parquet"
        self.rows: list[dict] = []
        self._writer: pq.ParquetWriter | None = None

    def add(self, doc: Document, parse_fp: str) -> None:
        sections = [{"text": s.text, "metadata": s.metadata} for s in doc.sections]
        self.rows.append(
            {
                "doc_id": doc.doc_id,
                "content_hash": doc.content_hash,
                "parse_fp": parse_fp,
                "format": doc.format,
                "sections": json.dumps(sections, ensure_ascii=False, default=str),
                "metadata": json.dumps(doc.metadata, ensure_ascii=False, default=str),
            }
        )
        if len(self.rows) >= 256:
            self._write()

    def _write(self) -> None:
        if not self.rows:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, PARSED_SCHEMA)
        self._writer.write_table(pa.Table.from_pylist(self.rows, schema=PARSED_SCHEMA))
        self.rows = []

    def finish(self) -> pads.Dataset | None:
        self._write()
        if self._writer is None:
            return None
        self._writer.close()
        return pads.dataset(self.path, format="parquet", schema=PARSED_SCHEMA)


# Fixes by error class, used when an operator gave no specific fix. A quarantined file is tried again
# when its bytes change, so every fix ends with replacing the file.
DEFAULT_FIXES = {
    "empty": "the file has no text; fill or remove it (it is tried again when its bytes change)",
    "corrupt": "the file is damaged; export or download it again (it is tried again when its bytes change)",
    "unsupported": "convert the file to a supported format or exclude it with `sources[].exclude`",
    "no_text": "install Tesseract for OCR (Debian: tesseract-ocr) or remove the file",
    "encrypted": "remove the password from the file, or add it to `parse.pdf_passwords` for PDFs",
    "too_large": "raise `parse.max_file_mb` or split the file",
}


def manifest_entry_for(doc: Document, run_id: str, fingerprints: Fingerprints) -> ManifestEntry:
    quarantine = doc.quarantine
    if quarantine is not None and not quarantine.fix:
        quarantine.fix = DEFAULT_FIXES.get(quarantine.error_class)
    return ManifestEntry(
        doc_id=doc.doc_id,
        uri=doc.uri,
        source=doc.source,
        state=doc.state,
        content_hash=doc.content_hash,
        size_bytes=doc.size_bytes,
        mtime_ns=int(doc.metadata.get("mtime_ns", 0)),
        reason=doc.reason,
        duplicate_of=doc.duplicate_of,
        similarity=doc.similarity,
        error_class=quarantine.error_class if quarantine else None,
        error_message=quarantine.message if quarantine else None,
        fix=quarantine.fix if quarantine else None,
        operator=quarantine.operator if quarantine else None,
        format=doc.format,
        chunks=len(doc.chunks),
        text_hash=doc.metadata.get("text_hash"),
        parse_fp=fingerprints.parse_fp,
        chunk_fp=fingerprints.chunk_fp,
        embed_fp=fingerprints.embed_fp,
        parent_id=doc.parent_id,
        run_id=run_id,
        extra=_extra_fields(doc, fingerprints),
    )


def _extra_fields(doc: Document, fingerprints: Fingerprints) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if doc.quarantine is not None:
        extra["retry_key"] = fingerprints.retry_key
    if doc.depends_on:
        extra["depends_on"] = list(doc.depends_on)
    return extra
