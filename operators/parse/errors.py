"""The exception every format parser raises when a file cannot become text."""

from __future__ import annotations

# Error classes recorded in `QuarantineInfo.error_class` by the parse operator. The executor also
# uses `timeout` and `crash` for documents whose worker timed out or died.
ENCRYPTED = "encrypted"
CORRUPT = "corrupt"
UNSUPPORTED = "unsupported"
NO_TEXT = "no_text"
TOO_LARGE = "too_large"
TIMEOUT = "timeout"
EMPTY = "empty"
NEEDS_LIBREOFFICE = "needs_libreoffice"


class ParseError(Exception):
    """A file that cannot be parsed, with the quarantine error class and the fix for the user."""

    def __init__(self, error_class: str, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.fix = fix
