"""Fallback text extraction through PDFium for pages whose CJK fonts pypdf cannot map to Unicode.

A Type0 (CID) font that names a predefined CMap such as `Identity-V` and has no `/ToUnicode`
table needs the Adobe character collections (Japan1, GB1, CNS1, Korea1) to become Unicode. pypdf
(7.x) does not ship them and returns unrelated characters; PDFium does. pypdfium2 is installed
with ragpipe as a dependency of unstructured-client.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def has_unmapped_cid_font(page: Any) -> bool:
    """Return True when the page uses a CID font with a predefined CMap and no /ToUnicode."""
    try:
        fonts = page["/Resources"]["/Font"].get_object()
        for font in fonts.values():
            font = font.get_object()
            if font.get("/Subtype") == "/Type0" and "/ToUnicode" not in font and isinstance(font.get("/Encoding"), str):
                return True
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError):
        return False
    return False


class PdfiumText:
    """Per-page text from PDFium; the document is opened on first use and stays open until close()."""

    def __init__(self, data: bytes, password: str | None) -> None:
        self._data = data
        self._password = password or None
        self._document: Any = None
        self._unavailable = False

    def page_text(self, number: int) -> str | None:
        """Return the text of the 1-based page, or None when PDFium cannot provide it."""
        document = self._open()
        if document is None:
            return None
        import pypdfium2

        try:
            page = document[number - 1]
            text_page = page.get_textpage()
            text = text_page.get_text_range()
            text_page.close()
            page.close()
        except (pypdfium2.PdfiumError, IndexError, ValueError) as err:
            logger.debug("PDFium could not read page %d: %s", number, err)
            return None
        return text

    def close(self) -> None:
        if self._document is not None:
            self._document.close()
            self._document = None

    def _open(self) -> Any:
        if self._document is not None or self._unavailable:
            return self._document
        try:
            import pypdfium2
        except ImportError:
            self._unavailable = True
            return None
        try:
            self._document = pypdfium2.PdfDocument(self._data, password=self._password)
        except pypdfium2.PdfiumError as err:
            logger.debug("PDFium could not open the document: %s", err)
            self._unavailable = True
        return self._document
