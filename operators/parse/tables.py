"""Tables as readable text, and CSV/TSV files with their delimiter detected.

A table with a header row becomes one line per row, `Header: value | Header: value`, so that every
chunk cut from it still names its columns. Other tables, and those wider than
`_MAX_LABELLED_COLUMNS` (repeating hundreds of column names on every row would multiply the text
size), keep their first row as the first line and plain `value | value` rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from operators.parse.content import ParsedContent
from operators.parse.normalize import normalize_text
from operators.records import Section

_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_LINES = 50
_MAX_LABELLED_COLUMNS = 30
_HEADER_LOOKAHEAD_ROWS = 50

# Python's csv module rejects fields over 128 KiB by default; long-text exports exceed that.
csv.field_size_limit(1 << 30)


def parse_csv(text: str, encoding: str, delimiter: str | None = None) -> ParsedContent:
    """Parse delimited text; the delimiter is detected unless given."""
    delimiter = delimiter or detect_delimiter(text)
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    body = rows_to_text(rows)
    metadata = {"encoding": encoding, "delimiter": delimiter}
    return ParsedContent("csv", [Section(normalize_text(body))], metadata)


def detect_delimiter(text: str) -> str:
    """Return the delimiter that splits the first lines into the most consistent column count.

    A delimiter scores by the share of lines that have the most common field count, and it counts
    only when that count is above one. Ties go to the earlier entry of `_DELIMITERS`.
    """
    lines = [line for line in text.splitlines()[:_SNIFF_LINES] if line.strip()]
    best, best_score = ",", 0.0
    for delimiter in _DELIMITERS:
        counts = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
        if not counts:
            continue
        width, frequency = Counter(counts).most_common(1)[0]
        score = frequency / len(counts) if width > 1 else 0.0
        if score > best_score:
            best, best_score = delimiter, score
    return best


def looks_like_tsv(text: str) -> bool:
    """Return True when at least three lines split into the same two or more tab-separated fields.

    Only tabs count: prose often has the same number of commas on a few lines in a row.
    """
    lines = [line for line in text.splitlines()[:_SNIFF_LINES] if line.strip()]
    if len(lines) < 3:
        return False
    counts = {len(row) for row in csv.reader(lines, delimiter="\t")}
    return len(counts) == 1 and counts.pop() > 1


def rows_to_text(rows: Iterable[Sequence[Any]]) -> str:
    """Render rows as lines, labelling values with the header row when the table has one."""
    cleaned = ([format_cell(value) for value in raw] for raw in rows)
    non_empty = (row for row in cleaned if any(row))
    header = next(non_empty, None)
    if header is None:
        return ""
    lookahead = list(itertools.islice(non_empty, _HEADER_LOOKAHEAD_ROWS))
    labelled = len(header) <= _MAX_LABELLED_COLUMNS and _has_header(header, lookahead)

    lines = [] if labelled else [_join(header)]
    for row in itertools.chain(lookahead, non_empty):
        lines.append(_labelled(header, row) if labelled else _join(row))
    if not lines:
        lines.append(_join(header))  # a header with no data rows is still text
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    """Return a cell value as text: integral floats without `.0`, dates in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return " ".join(str(value).split())


def _has_header(header: list[str], rows: list[list[str]]) -> bool:
    """Return True when the first row names the columns below it.

    Its cells must be distinct and non-numeric, and at least one column below must be numeric. So a
    first row that is just data (all text) is not mistaken for a header, and it is kept as the
    first line instead.
    """
    filled = [cell for cell in header if cell]
    if len(filled) < max(1, len(header) // 2) or len(set(filled)) != len(filled):
        return False
    if any(_is_number(cell) for cell in filled):
        return False
    for column, label in enumerate(header):
        values = [row[column] for row in rows if column < len(row) and row[column]]
        if label and values and sum(_is_number(value) for value in values) >= 0.8 * len(values):
            return True
    return False


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", ""))
    except ValueError:
        return False
    return True


def _labelled(header: list[str], row: list[str]) -> str:
    pairs = []
    for index, value in enumerate(row):
        if not value:
            continue
        label = header[index] if index < len(header) else ""
        pairs.append(f"{label}: {value}" if label else value)
    return " | ".join(pairs)


def _join(row: list[str]) -> str:
    return " | ".join(cell for cell in row if cell)
