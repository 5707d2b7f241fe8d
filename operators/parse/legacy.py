"""Legacy binary Office files (DOC, PPT, XLS), converted to DOCX/PPTX/XLSX by LibreOffice."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from operators.parse.errors import CORRUPT, NEEDS_LIBREOFFICE, TIMEOUT, ParseError

_TARGETS = {"doc": "docx", "ppt": "pptx", "xls": "xlsx"}
_LIBREOFFICE_FIX = (
    "install LibreOffice so that `soffice` is on PATH (Debian/Ubuntu: apt-get install "
    "libreoffice-writer libreoffice-impress libreoffice-calc), or convert the file to DOCX/PPTX/XLSX"
)


@functools.lru_cache(maxsize=1)
def soffice_path() -> str | None:
    """Return the LibreOffice executable on PATH, or None."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def convert_legacy(data: bytes, kind: str, timeout_s: float) -> bytes:
    """Return the DOCX, PPTX or XLSX bytes LibreOffice makes from a DOC, PPT or XLS file.

    Raises ParseError(needs_libreoffice) when soffice is not installed.
    """
    executable = soffice_path()
    label = kind.upper()
    if executable is None:
        raise ParseError(NEEDS_LIBREOFFICE, f"the legacy {label} format needs LibreOffice, which is not installed", fix=_LIBREOFFICE_FIX)
    target = _TARGETS[kind]
    with tempfile.TemporaryDirectory(prefix="ragpipe-soffice-") as folder:
        work = Path(folder)
        source = work / f"input.{kind}"
        source.write_bytes(data)
        # A private profile lets conversions run in parallel; a shared one makes soffice exit early.
        command = [
            executable, f"-env:UserInstallation={(work / 'profile').as_uri()}", "--headless", "--norestore",
            "--convert-to", target, "--outdir", str(work / "out"), str(source),
        ]  # fmt: skip
        try:
            completed = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as err:
            raise ParseError(TIMEOUT, f"LibreOffice did not convert the {label} file within {timeout_s:g} s") from err
        converted = work / "out" / f"input.{target}"
        if completed.returncode != 0 or not converted.exists():
            detail = completed.stderr.decode("utf-8", errors="replace").strip()[:300]
            raise ParseError(CORRUPT, f"LibreOffice could not convert the {label} file: {detail or 'no output'}")
        return converted.read_bytes()
