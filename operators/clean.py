"""The `clean` operator: normalize each section's text and drop page furniture and markup leftovers.

Cleaning works section by section so that page metadata stays attached to its text. Each section
gets Unicode NFKC normalization and loses its control characters. `<script>`/`<style>` blocks and
base64 blobs that a parser let through are removed, and whitespace is normalized. Lines that repeat
at the top or bottom of many pages (running headers and footers) are removed last.

NFKC turns ligatures such as "ﬁ" into "fi", full-width letters and digits into ASCII, and the
ideographic space into a plain space. It would also turn the full-width punctuation of Chinese and
Japanese text (！？；：，（）) into ASCII, which changes how the text reads and drops the width that
CJK typography expects, so those characters (U+FF01 to U+FF60 minus letters and digits) are kept.
Ideographic punctuation such as 。、「」 is unchanged by NFKC anyway.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import ClassVar

from pydantic import Field

from operators.base import Operator, OperatorArgs, register
from operators.page_furniture import remove_repeated_edge_lines
from operators.records import Document

logger = logging.getLogger(__name__)

_FULLWIDTH_PUNCTUATION = re.compile("[\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff60]+")

# Vertical tab, form feed, file/group/record separators, NEL and the Unicode line and paragraph
# separators end a line in Python's str.splitlines, so they become "\n" rather than disappear.
_LINE_BREAK = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Other C0 and C1 controls (tab and newline excluded), DEL, the soft hyphen, zero-width space,
# word joiner, byte order mark, and lone surrogates left by lenient decoding.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b\u2060\ufeff\ud800-\udfff]"
)

_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_DATA_URI = re.compile(r"data:[\w.+-]+/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64,[A-Za-z0-9+/]*=*")
# One unbroken run, or three or more lines of 60+ characters such as a MIME attachment's lines of
# 76, with an optional last line that ends in "=" padding.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")
_BASE64_LINES = re.compile(
    r"^(?:[A-Za-z0-9+/]{60,}={0,2}(?:\n|$)){3,}(?:[A-Za-z0-9+/]*={1,2}$)?", re.MULTILINE
)

_HORIZONTAL_SPACE_RUN = re.compile(r"[^\S\n]{2,}|[^\S \n]")
_SPACE_AROUND_NEWLINE = re.compile(r"[^\S\n]*\n[^\S\n]*")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_unicode(text: str) -> str:
    """Apply NFKC everywhere except to full-width punctuation."""
    if text.isascii():
        return text
    pieces = []
    position = 0
    for match in _FULLWIDTH_PUNCTUATION.finditer(text):
        pieces.append(unicodedata.normalize("NFKC", text[position : match.start()]))
        pieces.append(match.group())
        position = match.end()
    pieces.append(unicodedata.normalize("NFKC", text[position:]))
    return "".join(pieces)


def remove_control_characters(text: str) -> str:
    return _INVISIBLE.sub("", _LINE_BREAK.sub("\n", text))


def _looks_like_base64(run: str) -> bool:
    # Real base64 of binary data mixes cases and digits, while a long word, hex digest or DNA
    # string does not.
    has_upper = any(c.isupper() for c in run)
    has_lower = any(c.islower() for c in run)
    return has_upper and has_lower and any(c.isdigit() for c in run)


def remove_markup_leftovers(text: str) -> str:
    """Remove `<script>`/`<style>` elements, base64 data URIs and long base64 blobs."""
    if "<" in text:
        text = _SCRIPT_OR_STYLE.sub("", text)
    if "base64," in text:
        text = _DATA_URI.sub("", text)
    text = _BASE64_RUN.sub(lambda m: "" if _looks_like_base64(m.group()) else m.group(), text)
    return _BASE64_LINES.sub(lambda m: "" if _looks_like_base64(m.group()) else m.group(), text)


def _collapse_space_run(match: re.Match[str]) -> str:
    return "\t" if "\t" in match.group() else " "


def normalize_whitespace(text: str) -> str:
    """Collapse space runs to one space (or one tab where the run had a tab), strip every line,
    and keep at most one blank line in a row. Never adds a space, so CJK text stays unspaced."""
    text = _HORIZONTAL_SPACE_RUN.sub(_collapse_space_run, text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


class CleanArgs(OperatorArgs):
    header_footer_lines: int = Field(
        2,
        ge=0,
        le=10,
        description="Non-empty lines at the top and at the bottom of each page checked for "
        "running headers and footers; 0 turns the check off.",
    )
    header_footer_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Share of a document's pages at whose top or bottom a line must appear to be "
        "removed as a header or footer (it must appear on at least two pages).",
    )
    header_footer_min_pages: int = Field(
        3,
        ge=2,
        description="Minimum number of non-empty sections (pages) a document needs before "
        "headers and footers are looked for.",
    )
    remove_markup: bool = Field(
        True,
        description="Remove <script>/<style> blocks and base64 blobs that a parser left in the "
        "text.",
    )


@register
class CleanOperator(Operator):
    """Normalize Unicode and whitespace, and remove control characters, markup leftovers and
    running page headers and footers."""

    name: ClassVar[str] = "clean"
    Args: ClassVar[type[OperatorArgs]] = CleanArgs
    kind = "map"

    args: CleanArgs

    def process(self, doc: Document) -> Document:
        texts = [self.clean_text(section.text) for section in doc.sections]

        pages = sum(1 for text in texts if text)
        if self.args.header_footer_lines > 0 and pages >= self.args.header_footer_min_pages:
            texts, removed = remove_repeated_edge_lines(
                texts, self.args.header_footer_lines, self.args.header_footer_share
            )
            if removed:
                self.stats["header_footer_lines_removed"] += removed
                texts = [normalize_whitespace(text) for text in texts]

        for section, text in zip(doc.sections, texts):
            section.text = text
        if not any(texts):
            doc.mark_filtered("clean", "no text left after cleaning")
        return doc

    def clean_text(self, text: str) -> str:
        """Clean one section's text, apart from the header and footer removal across pages."""
        text = normalize_unicode(text)
        text = remove_control_characters(text)
        if self.args.remove_markup:
            text = remove_markup_leftovers(text)
        return normalize_whitespace(text)
