"""ZIP archives: each member becomes a child document; the archive itself is then filtered."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from operators.parse.content import EmbeddedFile, ParsedContent, ParseInput
from operators.parse.errors import TOO_LARGE, ParseError
from operators.parse.zipguard import MEGABYTE, open_zip, read_member


def parse_zip(inp: ParseInput) -> ParsedContent:
    """List the archive's files and check its limits; members are read lazily, one at a time.

    Raises ParseError(too_large) before reading any member when the member count or the declared
    uncompressed total is over its limit.
    """
    archive = open_zip(inp.data, inp.args.max_archive_total_mb)
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) > inp.args.max_archive_members:
        archive.close()
        raise ParseError(
            TOO_LARGE,
            f"archive has {len(members):,} files, over the limit of {inp.args.max_archive_members:,}",
            fix="raise parse.max_archive_members if the archive is trusted",
        )
    metadata = {"member_count": len(members), "uncompressed_bytes": sum(info.file_size for info in members)}
    return ParsedContent("zip", [], metadata, children=_members(archive, members, inp), is_container=True)


def _members(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], inp: ParseInput) -> Iterator[EmbeddedFile]:
    """Yield each member; one that cannot be read carries the error instead of data.

    Reads stop at the remaining total budget as well as at `max_file_mb`, because the declared
    sizes that `open_zip` checked may be false.
    """
    budget = int(inp.args.max_archive_total_mb * MEGABYTE)
    per_file = int(inp.args.max_file_mb * MEGABYTE)
    with archive:
        for info in members:
            limit = min(per_file, budget)
            try:
                data = read_member(archive, info, limit)
            except ParseError as err:
                if err.error_class == TOO_LARGE and limit < per_file:
                    err = _total_exceeded(info.filename, inp.args.max_archive_total_mb)
                yield EmbeddedFile(info.filename, b"", "member", error=err)
                continue
            budget -= len(data)
            yield EmbeddedFile(info.filename, data, "member")


def _total_exceeded(member: str, max_total_mb: float) -> ParseError:
    return ParseError(
        TOO_LARGE,
        f"archive members expand past the {max_total_mb:g} MB total at {member!r}, more than their "
        "declared sizes (a possible decompression bomb)",
        fix="raise parse.max_archive_total_mb if the archive is trusted",
    )
