"""Detect the character encoding of text bytes and decode them.

Order of evidence: a byte order mark, the zero-byte pattern of UTF-16/UTF-32 without a BOM, strict
UTF-8, an encoding the file declares (HTML meta, XML declaration, MIME charset), and finally
charset-normalizer's statistical guess.
"""

from __future__ import annotations

import codecs
import logging
import re

from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

logger = logging.getLogger(__name__)

# Longer BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# charset-normalizer reads this many bytes of large inputs; the whole file is decoded afterwards.
_DETECTION_SAMPLE_BYTES = 256 * 1024

# Wide-encoding candidates are scored on this many bytes (a multiple of 4).
_WIDE_SAMPLE_BYTES = 8192

_DECLARED_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""",
    re.IGNORECASE,
)

# Multi-byte encodings for which the cp1252 preference below must not apply.
_MULTIBYTE_PREFIXES = ("utf", "gb", "big5", "cp9", "euc", "shift", "iso2022", "hz", "johab", "cp1361")


class UndecodableError(ValueError):
    """The bytes are not text in any encoding we can detect."""


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode `data` and return `(text, encoding)`; the BOM, if any, is not part of the text.

    `declared` is an encoding the container names (a MIME charset); it is trusted only when the
    bytes are valid in it. Raises `UndecodableError` for bytes that are binary, not text.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace"), encoding

    wide = _guess_utf16_or_utf32(data)
    if wide is not None:
        return data.decode(wide, errors="replace"), wide

    if b"\x00" in data[:_DETECTION_SAMPLE_BYTES]:
        raise UndecodableError("NUL bytes outside a UTF-16/UTF-32 pattern")

    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass

    for candidate in (declared, declared_charset(data)):
        if candidate and _is_known_codec(candidate) and codecs.lookup(candidate).name == "iso8859-1":
            # Browsers and mail clients read a Latin-1 label as its superset cp1252 (WHATWG).
            candidate = "cp1252"
        text = _decode_strict(data, candidate)
        if text is not None:
            return text, codecs.lookup(candidate).name

    return _decode_by_statistics(data)


def declared_charset(data: bytes) -> str | None:
    """Return the charset named by an HTML `<meta>` or an XML declaration near the start."""
    match = _DECLARED_CHARSET.search(data[:4096])
    if match is None:
        return None
    name = (match.group(1) or match.group(2)).decode("ascii")
    return name if _is_known_codec(name) else None


def _guess_utf16_or_utf32(data: bytes) -> str | None:
    """Recognize BOM-less UTF-16/UTF-32 text, which contains zero bytes where 8-bit text has none.

    Each wide encoding that decodes a sample strictly to printable characters is a candidate, and
    the one whose text charset-normalizer finds least garbled wins: reading UTF-16-BE as LE turns
    CJK text into unrelated code points that score high.
    """
    sample = data[: _WIDE_SAMPLE_BYTES]
    if b"\x00" not in sample or len(data) % 2:
        return None
    encodings = ("utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be") if len(data) % 4 == 0 else ("utf-16-le", "utf-16-be")
    scored = []
    for encoding in encodings:
        text = _decode_sample(sample, encoding)
        if text is not None:
            scored.append((mess_ratio(text, 1.0), encoding))
    return min(scored)[1] if scored else None


def _decode_sample(sample: bytes, encoding: str) -> str | None:
    """Decode a wide-encoding sample strictly; return None unless it is mostly printable text."""
    try:
        text = sample.decode(encoding)
    except UnicodeDecodeError:
        # The cut may split a surrogate pair; retry without the last four bytes.
        try:
            text = sample[:-4].decode(encoding)
        except UnicodeDecodeError:
            return None
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


def _decode_by_statistics(data: bytes) -> tuple[str, str]:
    matches = from_bytes(data[:_DETECTION_SAMPLE_BYTES])
    best = matches.best()
    if best is None:
        raise UndecodableError("no text encoding fits the bytes")
    encoding = best.encoding
    if _prefer_cp1252(data, encoding, best.chaos):
        encoding = "cp1252"
    # The sample may end inside a multi-byte character, so the full decode replaces rather than fails.
    return data.decode(encoding, errors="replace"), codecs.lookup(encoding).name


def _prefer_cp1252(data: bytes, guess: str, guess_chaos: float) -> bool:
    """Return True when cp1252 reads the bytes as cleanly as a single-byte statistical guess.

    On short Western European text charset-normalizer (3.x) often names cp1250 or a Mac code page.
    Those decode umlauts the same but misread curly quotes and the euro sign, and cp1252 is far
    more common.
    NOTE: ISO-8859-15 text that uses its own letters (œ, Œ, Š, Ž) or € also reads cleanly as
    cp1252, so those characters come out wrong.
    """
    if guess.lower().replace("-", "").startswith(_MULTIBYTE_PREFIXES) or guess == "cp1252":
        return False
    try:
        text = data[:_DETECTION_SAMPLE_BYTES].decode("cp1252")
    except UnicodeDecodeError:
        return False
    return mess_ratio(text, 1.0) <= guess_chaos + 0.01


def _decode_strict(data: bytes, encoding: str | None) -> str | None:
    if not encoding or not _is_known_codec(encoding):
        return None
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _is_known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True
