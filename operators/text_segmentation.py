"""Boundary finders for chunking: paragraphs, sentences, lines, clauses and words as spans.

Every splitter takes the full text and a span `[start, end)` of it and returns the sub-spans in
order, trimmed of surrounding whitespace and never empty. Working with offsets instead of slices
lets the chunker report `char_start`/`char_end` into the original text without searching for it.

Chinese and Japanese put no spaces between words or sentences, so a sentence ends at CJK
punctuation (。！？；and their half-width and vertical forms) whether or not whitespace follows.
Thai separates phrases and sentences with a space but not words, so a space between two Thai
characters ends a sentence.
"""

from __future__ import annotations

import re

Span = tuple[int, int]

# Characters of scripts written without spaces between words: CJK ideographs (with extensions and
# compatibility forms), hiragana, katakana (with phonetic extensions and half-width forms) and Thai.
UNSPACED_SCRIPT_CHARS = (
    "\u0e00-\u0e7f"  # Thai
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width katakana
    "\U00020000-\U0003134f"  # CJK extensions B to G
)
_UNSPACED_CHAR = re.compile(f"[{UNSPACED_SCRIPT_CHARS}]")

# Closing quotes and brackets that belong to the sentence they follow.
_CLOSERS = "\"'”’»)\\]）］」』】〕〉》"

_SENTENCE_END = re.compile(
    # CJK terminators end a sentence even without whitespace after them.
    f"(?P<cjk>[。｡．！？；︒︕︖﹒﹔﹖﹗]+[{_CLOSERS}]*)"
    # Latin terminators need whitespace, the end of the span, or an unspaced-script character next.
    f"|(?P<latin>[.!?…]+[{_CLOSERS}]*)(?=\\s|$|[{UNSPACED_SCRIPT_CHARS}])"
)
_CLAUSE_END = re.compile(
    f"[，、：﹐﹑﹕][{_CLOSERS}]*"
    f"|[,;:][{_CLOSERS}]*(?=\\s|[{UNSPACED_SCRIPT_CHARS}])"
)
_THAI_GAP = re.compile(r"(?<=[\u0e00-\u0e7f])[^\S\n]+(?=[\u0e00-\u0e7f])")
_PARAGRAPH_GAP = re.compile(r"\n[^\S\n]*\n\s*")
_LINE_GAP = re.compile(r"\s*\n\s*")
_WHITESPACE = re.compile(r"\s+")


def trim_span(text: str, start: int, end: int) -> Span:
    """Return `[start, end)` narrowed to exclude leading and trailing whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _spans_between_cuts(text: str, start: int, end: int, cuts: list[int]) -> list[Span]:
    spans = []
    previous = start
    for cut in [*cuts, end]:
        piece_start, piece_end = trim_span(text, previous, cut)
        if piece_start < piece_end:
            spans.append((piece_start, piece_end))
        previous = cut
    return spans


def _split_at_gaps(text: str, start: int, end: int, gap: re.Pattern[str]) -> list[Span]:
    spans = []
    previous = start
    for match in gap.finditer(text, start, end):
        piece_start, piece_end = trim_span(text, previous, match.start())
        if piece_start < piece_end:
            spans.append((piece_start, piece_end))
        previous = match.end()
    piece_start, piece_end = trim_span(text, previous, end)
    if piece_start < piece_end:
        spans.append((piece_start, piece_end))
    return spans


def split_paragraphs(text: str, start: int, end: int) -> list[Span]:
    """Split at blank lines (lines that are empty or contain only spaces)."""
    return _split_at_gaps(text, start, end, _PARAGRAPH_GAP)


def split_lines(text: str, start: int, end: int) -> list[Span]:
    return _split_at_gaps(text, start, end, _LINE_GAP)


def split_words(text: str, start: int, end: int) -> list[Span]:
    """Split at whitespace. A run of Chinese or Japanese text without spaces stays one word."""
    return _split_at_gaps(text, start, end, _WHITESPACE)


def split_sentences(text: str, start: int, end: int) -> list[Span]:
    """Split after sentence-final punctuation, and at spaces between Thai characters.

    A Latin terminator followed by a lowercase letter ("e.g. this", "approx. five") does not end a
    sentence. Abbreviations before a capital ("Mr. Smith") still split, and the chunker's merging
    usually puts such pieces back together.
    """
    cuts = []
    for match in _SENTENCE_END.finditer(text, start, end):
        cut = match.end()
        if match.group("latin") is not None:
            following = cut
            while following < end and text[following].isspace():
                following += 1
            if following < end and text[following].islower():
                continue
        cuts.append(cut)
    for match in _THAI_GAP.finditer(text, start, end):
        cuts.append(match.start())
    cuts.sort()
    return _spans_between_cuts(text, start, end, cuts)


def split_clauses(text: str, start: int, end: int) -> list[Span]:
    """Split after commas, semicolons and colons (Latin ones only when whitespace follows)."""
    cuts = [match.end() for match in _CLAUSE_END.finditer(text, start, end)]
    return _spans_between_cuts(text, start, end, cuts)


def is_unspaced_script(char: str) -> bool:
    """Return True for a character of Chinese, Japanese or Thai text (no spaces between words)."""
    return _UNSPACED_CHAR.match(char) is not None
