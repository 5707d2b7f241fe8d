"""Convert documents to HTML with the pandoc binary that the pypandoc-binary wheel ships."""

from __future__ import annotations

import functools
import shutil
import subprocess

from operators.parse.errors import CORRUPT, TIMEOUT, UNSUPPORTED, ParseError


@functools.lru_cache(maxsize=1)
def pandoc_path() -> str | None:
    """Return the pandoc executable: the bundled one, else one on PATH, else None."""
    try:
        import pypandoc

        return pypandoc.get_pandoc_path()
    except (ImportError, OSError):
        return shutil.which("pandoc")


def pandoc_to_html(data: bytes, source_format: str, timeout_s: float) -> str:
    """Run `pandoc -f source_format -t html` on UTF-8 `data` and return the HTML.

    HTML, not pandoc's plain output, so that tables read the same as in every other format.
    Raises ParseError: `unsupported` when pandoc is missing, `timeout` or `corrupt` when it fails.
    """
    executable = pandoc_path()
    if executable is None:
        raise ParseError(
            UNSUPPORTED,
            f"parsing {source_format} needs pandoc, which was not found",
            fix="install the Python package pypandoc-binary (a ragpipe dependency) or put pandoc on PATH",
        )
    command = [executable, "--from", source_format, "--to", "html", "--wrap=none", "--sandbox"]
    try:
        completed = subprocess.run(command, input=data, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise ParseError(TIMEOUT, f"pandoc did not finish converting {source_format} within {timeout_s:g} s") from err
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", errors="replace").strip()[:300]
        raise ParseError(CORRUPT, f"pandoc failed to read the {source_format} file: {detail}")
    return completed.stdout.decode("utf-8", errors="replace")
