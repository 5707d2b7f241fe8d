"""Detection of running page headers and footers across a document's pages."""

from __future__ import annotations

import math
import re
from collections import Counter

_DIGITS = re.compile(r"\d+")
# Roman page numbers from i to xxxix, as front matter uses ("Contents iv").
_ROMAN_NUMERAL = re.compile(r"\b(?=[ivx]+\b)x{0,3}(?:ix|iv|v?i{0,3})\b")
_SPACES = re.compile(r"\s+")
# "1 / 21", "3-4" or "2.1": numbers joined by separators count as one number.
_NUMBER_GROUP = re.compile(r"0(?:\s*[/\-–—.:,]\s*0)*")


def edge_line_key(line: str) -> str:
    """Return the form of a line under which headers and footers of different pages compare equal.

    Case is folded, and numbers, including small Roman numerals, become "0", so "Page 3 of 9" and
    "Page 4 of 9" share a key. A group such as "1 / 21" also becomes "0", so a running title
    numbered "iv" in the front matter and "3 / 21" in the body is one header.
    """
    key = _SPACES.sub(" ", line.casefold()).strip()
    key = _DIGITS.sub("0", key)
    key = _ROMAN_NUMERAL.sub("0", key)
    return _NUMBER_GROUP.sub("0", key)


def _edge_line_indexes(lines: list[str], count: int) -> tuple[list[int], list[int]]:
    """Return the indexes of the first and of the last `count` non-empty lines.

    On a short page each edge shrinks so that at least one line in the middle is never looked at,
    because the lines of a three-line page are its body, not its furniture.
    """
    non_empty = [index for index, line in enumerate(lines) if line.strip()]
    count = min(count, max(1, (len(non_empty) - 1) // 2))
    return non_empty[:count], non_empty[-count:] if non_empty else []


def remove_repeated_edge_lines(
    pages: list[str], edge_lines: int, min_share: float
) -> tuple[list[str], int]:
    """Remove running headers and footers from page texts.

    A header is a line among the first `edge_lines` non-empty lines of at least `min_share` of the
    non-empty pages, and of at least two, compared by `edge_line_key`. Footers are found the same
    way among the last lines. A matching line is removed only at that edge of a page, never from
    the body. Returns the new page texts and the number of lines removed.
    """
    split_pages = [page.split("\n") for page in pages]
    edges = [_edge_line_indexes(lines, edge_lines) for lines in split_pages]

    top_counts: Counter[str] = Counter()
    bottom_counts: Counter[str] = Counter()
    for lines, (top, bottom) in zip(split_pages, edges):
        top_counts.update({edge_line_key(lines[index]) for index in top})
        bottom_counts.update({edge_line_key(lines[index]) for index in bottom})

    non_empty_pages = sum(1 for page in pages if page)
    threshold = max(2, math.ceil(min_share * non_empty_pages))
    headers = {key for key, count in top_counts.items() if count >= threshold}
    footers = {key for key, count in bottom_counts.items() if count >= threshold}
    if not headers and not footers:
        return pages, 0

    removed = 0
    result = []
    for lines, (top, bottom) in zip(split_pages, edges):
        drop = {index for index in top if edge_line_key(lines[index]) in headers}
        drop |= {index for index in bottom if edge_line_key(lines[index]) in footers}
        removed += len(drop)
        result.append("\n".join(line for index, line in enumerate(lines) if index not in drop))
    return result, removed
