"""Open ZIP containers (archives, OOXML, ODF, EPUB) with limits against decompression bombs.

The sizes in a ZIP directory are declared by whoever made the file, so members are also read
through a bounded reader that stops at the limit whatever the header declares.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from operators.parse.errors import CORRUPT, ENCRYPTED, TOO_LARGE, ParseError

MEGABYTE = 1024 * 1024

# Exceptions zipfile raises on damaged archives: bad headers or CRCs, corrupt deflate data, a
# missing member (KeyError), unknown compression methods or versions (NotImplementedError).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, KeyError, NotImplementedError, EOFError, OSError, ValueError)


def open_zip(data: bytes, max_total_mb: float) -> zipfile.ZipFile:
    """Open `data` as a ZIP file whose declared uncompressed total is at most `max_total_mb`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except ZIP_ERRORS as err:
        raise ParseError(CORRUPT, f"invalid ZIP container: {err}") from err
    declared = sum(info.file_size for info in archive.infolist())
    if declared > max_total_mb * MEGABYTE:
        archive.close()
        raise ParseError(
            TOO_LARGE,
            f"ZIP container declares {declared / MEGABYTE:,.0f} MB uncompressed, over the "
            f"{max_total_mb:g} MB limit (a possible decompression bomb)",
            fix="raise parse.max_archive_total_mb if the file is trusted",
        )
    return archive


def read_member(archive: zipfile.ZipFile, name: str | zipfile.ZipInfo, limit_bytes: int) -> bytes:
    """Read one member, raising ParseError when it is encrypted, damaged or over `limit_bytes`."""
    try:
        info = name if isinstance(name, zipfile.ZipInfo) else archive.getinfo(name)
    except KeyError as err:
        raise ParseError(CORRUPT, f"ZIP container has no member {name!r}") from err
    if info.flag_bits & 0x1:
        raise ParseError(ENCRYPTED, f"ZIP member {info.filename!r} is password-protected")
    try:
        with archive.open(info) as handle:
            data = handle.read(limit_bytes + 1)
    except ZIP_ERRORS as err:
        raise ParseError(CORRUPT, f"cannot read ZIP member {info.filename!r}: {err}") from err
    if len(data) > limit_bytes:
        raise ParseError(
            TOO_LARGE,
            f"ZIP member {info.filename!r} expands past {limit_bytes / MEGABYTE:,.0f} MB",
            fix="raise parse.max_file_mb if the file is trusted",
        )
    return data


def read_optional(archive: zipfile.ZipFile, name: str, limit_bytes: int) -> bytes | None:
    """Read a member that may be absent; return None when it is."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    return read_member(archive, info, limit_bytes)
