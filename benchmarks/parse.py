"""Parse throughput on the shared corpus: the parse operator against pypdf and unstructured.

PDFs are measured in pages per second against pypdf's own `extract_text` on the same files. The
other formats are measured in MB per second against `unstructured.partition.auto.partition`.
unstructured 0.27 downloads a spaCy model on its first partition call, which fails offline, so
this script hands it a blank spaCy English pipeline with a sentencizer instead. The real model
would only add work, so unstructured's figures are an upper bound. Its PDF partitioner needs the
`pdf` extra, which ragpipe does not install, so it has no PDF column.

    python -m benchmarks.parse [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import SHARED, machine

CORPUS = SHARED / "corpus" / "docs"
MEGABYTE = 1024 * 1024


def ragpipe_parse(path: Path) -> bool:
    """Parse one file with the operator; return True when it produced text."""
    from operators.parse import ParseOperator
    from operators.records import Document

    doc = Document(doc_id=path.name, uri=path.name, source="bench", path=str(path))
    ParseOperator(ocr=False).process_batch([doc])  # OCR would measure Tesseract, not parsing
    return doc.state == "pending"


def pypdf_pages(path: Path) -> int | None:
    """Extract every page with pypdf directly; return the page count, or None if it cannot open the file."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            return None
        for page in reader.pages:
            page.extract_text()
        return len(reader.pages)
    except (PyPdfError, ValueError, KeyError, RecursionError):
        return None


def unstructured_partition() -> Callable[[Path], bool]:
    """Return a function that runs unstructured's auto-partitioner offline."""
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    import spacy
    import unstructured.nlp.tokenize as tokenize
    from unstructured.partition.auto import partition

    blank = spacy.blank("en")
    blank.add_pipe("sentencizer")
    tokenize._get_nlp = lambda: blank  # the bundled loader would download en_core_web_sm

    def run(path: Path) -> bool:
        try:
            return bool(partition(filename=str(path), languages=["eng"]))
        except Exception:  # unstructured raises many types on files it cannot handle
            return False

    return run


def timed(function: Callable[[Path], Any], path: Path, repeat: int) -> tuple[float, Any]:
    """Return the best wall time of `repeat` runs and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(path)
        best = min(best, time.perf_counter() - start)
    return best, result


def measure_pdfs(repeat: int) -> dict[str, Any]:
    """Pages per second over the PDFs that both the operator and pypdf can read."""
    totals = {"files": 0, "pages": 0, "ragpipe_s": 0.0, "pypdf_s": 0.0, "skipped": []}
    for path in sorted(CORPUS.rglob("*.pdf")):
        pypdf_s, pages = timed(pypdf_pages, path, repeat)
        ours_s, parsed = timed(ragpipe_parse, path, repeat)
        if not pages or not parsed:
            totals["skipped"].append(path.relative_to(CORPUS).as_posix())
            continue
        totals["files"] += 1
        totals["pages"] += pages
        totals["pypdf_s"] += pypdf_s
        totals["ragpipe_s"] += ours_s
    return totals


def measure_other_formats(repeat: int) -> dict[str, dict[str, Any]]:
    """MB per second by file extension over the non-PDF files that both tools can parse."""
    partition = unstructured_partition()
    by_format: dict[str, dict[str, Any]] = defaultdict(lambda: {"files": 0, "bytes": 0, "ragpipe_s": 0.0, "unstructured_s": 0.0, "skipped": []})
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".pdf"):
        row = by_format[path.suffix.lstrip(".").lower()]
        ours_s, parsed = timed(ragpipe_parse, path, repeat)
        theirs_s, partitioned = timed(partition, path, repeat)
        if not (parsed and partitioned):
            row["skipped"].append(path.relative_to(CORPUS).as_posix())
            continue
        row["files"] += 1
        row["bytes"] += path.stat().st_size
        row["ragpipe_s"] += ours_s
        row["unstructured_s"] += theirs_s
    return dict(by_format)


def warm_up() -> None:
    """Run both tools once over every non-PDF file and a small PDF, untimed.

    Each format's first file would otherwise pay for importing its libraries.
    """
    partition = unstructured_partition()
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".pdf"):
        ragpipe_parse(path)
        partition(path)
    ragpipe_parse(CORPUS / "unstructured" / "pdf" / "fake-memo.pdf")
    pypdf_pages(CORPUS / "unstructured" / "pdf" / "fake-memo.pdf")


def print_table(pdfs: dict[str, Any], formats: dict[str, dict[str, Any]]) -> None:
    print("| Input | Files | Size | ragpipe parse | pypdf direct | unstructured partition |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| PDF | {pdfs['files']} | {pdfs['pages']} pages | {pdfs['pages'] / pdfs['ragpipe_s']:.1f} pages/s "
        f"| {pdfs['pages'] / pdfs['pypdf_s']:.1f} pages/s | not installed (`pdf` extra) |"
    )
    total = {"files": 0, "bytes": 0, "ragpipe_s": 0.0, "unstructured_s": 0.0}
    for name, row in sorted(formats.items()):
        if not row["files"]:
            continue
        for key in total:
            total[key] += row[key]
        print(_format_row(name, row))
    print(_format_row("**all non-PDF**", total))
    skipped = [path for row in formats.values() for path in row["skipped"]] + pdfs["skipped"]
    print(f"\nSkipped (not parsed by both): {', '.join(skipped) or 'none'}")


def _format_row(name: str, row: dict[str, Any]) -> str:
    megabytes = row["bytes"] / MEGABYTE
    return (
        f"| {name} | {row['files']} | {megabytes:.2f} MB | {megabytes / row['ragpipe_s']:.2f} MB/s | – "
        f"| {megabytes / row['unstructured_s']:.2f} MB/s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per file; the fastest counts (default 1)")
    parser.add_argument("--json", action="store_true", help="also print the raw totals as JSON")
    options = parser.parse_args()
    if not CORPUS.is_dir():
        raise SystemExit(f"shared corpus not found at {CORPUS}; the ../shared folder is required")
    logging.disable(logging.WARNING)  # damaged corpus files make pypdf log a warning each

    warm_up()
    pdfs = measure_pdfs(options.repeat)
    formats = measure_other_formats(options.repeat)
    print_table(pdfs, formats)
    print(f"\nMachine: {machine()}")
    if options.json:
        print(json.dumps({"pdf": pdfs, "formats": formats, "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
