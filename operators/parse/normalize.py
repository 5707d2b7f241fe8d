"""Text clean-up shared by every format: newlines, control characters, base64 payloads."""

from __future__ import annotations

import re
import unicodedata

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\u200b\ufeff]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_TRAILING_SPACE = re.compile(r"[ \t\xa0]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")

# A data: URI, or a run of at least 120 base64 characters with no space. The run must mix upper
# case, lower case and a digit or `+`/`/`, so long words, hex digests and DNA strings are kept.
_DATA_URI = re.compile(r"data:[\w.+-]+/[\w.+-]+(?:;[\w=.-]+)*;base64,[A-Za-z0-9+/=\s]*", re.IGNORECASE)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{120,}={0,2}")


def normalize_text(text: str) -> str:
    """Return `text` with Unix newlines, NFC composition, no control characters or base64 blobs."""
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL_CHARS.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = strip_base64(text)
    text = _TRAILING_SPACE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def strip_base64(text: str) -> str:
    """Remove data: URIs and long base64 runs, which carry binary payloads, not language."""
    text = _DATA_URI.sub("", text)
    return _BASE64_RUN.sub(_drop_if_base64, text)


def _drop_if_base64(match: re.Match[str]) -> str:
    run = match.group(0)
    mixed = (
        re.search(r"[a-z]", run) is not None
        and re.search(r"[A-Z]", run) is not None
        and re.search(r"[0-9+/]", run) is not None
    )
    return "" if mixed else run
