"""Optional OCR through Tesseract, for images and PDF pages without a text layer.

Needs the `tesseract` binary and the `ocr` extra (pytesseract). PDF pages are rendered with
pypdfium2, which ragpipe already installs as a dependency of unstructured-client.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import re
import shutil

from operators.parse.errors import CORRUPT, NO_TEXT, ParseError

logger = logging.getLogger(__name__)

OCR_FIX = (
    "install Tesseract (Debian/Ubuntu: apt-get install tesseract-ocr tesseract-ocr-chi-sim) and the "
    "ocr extra (pip install 'ragpipe[ocr]'), and keep parse.ocr enabled"
)
_RENDER_DPI = 300
# Tesseract's chi_sim model puts a space between Han characters; Chinese and Japanese use none.
_CJK = "\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")


def no_text_error(detail: str, ocr_enabled: bool) -> ParseError:
    """Return the quarantine error for content that has no text without OCR."""
    fix = "set parse.ocr to true" if ocr_available() and not ocr_enabled else OCR_FIX
    return ParseError(NO_TEXT, f"no text layer; enable OCR ({detail})", fix=fix)


@functools.lru_cache(maxsize=1)
def ocr_available() -> bool:
    """Return True when both the tesseract binary and pytesseract are installed."""
    return shutil.which("tesseract") is not None and importlib.util.find_spec("pytesseract") is not None


@functools.lru_cache(maxsize=8)
def usable_languages(requested: tuple[str, ...]) -> str:
    """Return the requested Tesseract languages that are installed, joined with `+`."""
    import pytesseract

    try:
        installed = set(pytesseract.get_languages(config=""))
    except (pytesseract.TesseractError, OSError) as err:
        logger.warning("could not list Tesseract languages, using eng: %s", err)
        return "eng"
    usable = [language for language in requested if language in installed]
    missing = sorted(set(requested) - installed)
    if missing:
        logger.warning("Tesseract language data not installed, skipped: %s", ", ".join(missing))
    return "+".join(usable) or "eng"


def ocr_image(data: bytes, languages: list[str]) -> str:
    """Return the text Tesseract reads in an image file's bytes."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ParseError(CORRUPT, f"cannot decode the image: {err}") from err
    return _tesseract(image, languages)


def ocr_pdf_pages(data: bytes, page_numbers: list[int], languages: list[str], password: str | None) -> dict[int, str]:
    """Render the given 1-based PDF pages at 300 dpi and return their OCR text by page number."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data, password=password)
    except pypdfium2.PdfiumError as err:
        raise ParseError(CORRUPT, f"PDFium cannot open the PDF to render pages for OCR: {err}") from err
    try:
        texts = {}
        for number in page_numbers:
            page = document[number - 1]
            image = page.render(scale=_RENDER_DPI / 72).to_pil()
            texts[number] = _tesseract(image, languages)
            page.close()
        return texts
    except pypdfium2.PdfiumError as err:
        raise ParseError(CORRUPT, f"PDFium failed to render a page for OCR: {err}") from err
    finally:
        document.close()


def _tesseract(image: object, languages: list[str]) -> str:
    import pytesseract

    try:
        text = pytesseract.image_to_string(image, lang=usable_languages(tuple(languages)))
    except pytesseract.TesseractError as err:
        raise ParseError(CORRUPT, f"Tesseract failed: {err}") from err
    return _CJK_GAP.sub("", text)
