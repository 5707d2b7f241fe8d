"""Route a detected format to its parser."""

from __future__ import annotations

from collections.abc import Callable

from operators.parse.archive import parse_zip
from operators.parse.content import ParsedContent, ParseInput
from operators.parse.detect import Detection
from operators.parse.epub import parse_epub
from operators.parse.errors import EMPTY, ENCRYPTED, NO_TEXT, UNSUPPORTED, ParseError
from operators.parse.html import html_to_text, parse_html
from operators.parse.legacy import convert_legacy
from operators.parse.mail import parse_eml, parse_msg
from operators.parse.ocr import no_text_error, ocr_available, ocr_image
from operators.parse.office import parse_docx, parse_pptx
from operators.parse.opendocument import parse_opendocument
from operators.parse.pandoc import pandoc_to_html
from operators.parse.normalize import normalize_text
from operators.parse.pdf import parse_pdf
from operators.parse.spreadsheets import parse_xls, parse_xlsx
from operators.parse.structured import parse_json, parse_ndjson, parse_xml
from operators.parse.tables import parse_csv
from operators.parse.text import parse_markdown, parse_plain, parse_with_pandoc
from operators.records import Section

Parser = Callable[[ParseInput, Detection], ParsedContent]


def parse_detected(inp: ParseInput, detection: Detection) -> ParsedContent:
    """Parse `inp` as the detected format, raising ParseError when that is not possible."""
    if detection.error is not None:
        raise detection.error
    parser = _PARSERS.get(detection.format)
    if parser is None:
        raise _unsupported(detection)
    return parser(inp, detection)


def _unsupported(detection: Detection) -> ParseError:
    if detection.format == "empty":
        return ParseError(EMPTY, "the file is empty or contains only whitespace")
    mime = detection.mime or "application/octet-stream"
    return ParseError(UNSUPPORTED, f"unsupported file type {mime}", fix="convert it to a supported format (PDF, Office, HTML, text, e-mail) or remove it from the source")


def _encrypted_office(inp: ParseInput, detection: Detection) -> ParsedContent:
    raise ParseError(ENCRYPTED, "the Office file is password-protected (an encrypted OLE package)", fix="save a copy without a password and index that")


def _xls(inp: ParseInput, detection: Detection) -> ParsedContent:
    try:
        import xlrd  # noqa: F401
    except ImportError:
        return _legacy(inp, detection)
    return parse_xls(inp)


def _legacy(inp: ParseInput, detection: Detection) -> ParsedContent:
    converted = convert_legacy(inp.data, detection.format, inp.args.timeout_s)
    modern = ParseInput(converted, inp.uri, inp.name, inp.args)
    modern_parsers = {"doc": parse_docx, "ppt": parse_pptx, "xls": parse_xlsx}
    content = modern_parsers[detection.format](modern)
    content.format = detection.format
    content.metadata["converted_with"] = "libreoffice"
    return content


def _rtf(inp: ParseInput, detection: Detection) -> ParsedContent:
    body, metadata = html_to_text(pandoc_to_html(inp.data, "rtf", inp.args.timeout_s))
    return ParsedContent("rtf", [Section(body)], metadata)


def _image(inp: ParseInput, detection: Detection) -> ParsedContent:
    if not (inp.args.ocr and ocr_available()):
        raise no_text_error(f"{detection.mime} image", inp.args.ocr)
    text = normalize_text(ocr_image(inp.data, inp.args.ocr_languages))
    if not text:
        raise ParseError(NO_TEXT, f"OCR found no text in the {detection.mime} image")
    return ParsedContent("image", [Section(text)], {"ocr": True})


def _text(kind: str) -> Parser:
    """Return a parser for a text dialect; these receive the text `detect_format` decoded."""

    def parse(inp: ParseInput, detection: Detection) -> ParsedContent:
        text, encoding = detection.text or "", detection.encoding or "utf-8"
        if kind == "html":
            return parse_html(text, encoding)
        if kind == "markdown":
            return parse_markdown(text, encoding)
        if kind in ("rst", "org"):
            return parse_with_pandoc(inp, text, encoding, kind)
        if kind in ("csv", "tsv"):
            return parse_csv(text, encoding, delimiter="\t" if kind == "tsv" else None)
        if kind == "json":
            return parse_json(text, encoding, inp.args.json_text_fields)
        if kind == "ndjson":
            return parse_ndjson(text, encoding, inp.args.json_text_fields)
        if kind == "xml":
            return parse_xml(text, encoding)
        if kind == "eml":
            return parse_eml(inp)
        return parse_plain(text, encoding)

    return parse


_PARSERS: dict[str, Parser] = {
    "pdf": lambda inp, _: parse_pdf(inp),
    "docx": lambda inp, _: parse_docx(inp),
    "pptx": lambda inp, _: parse_pptx(inp),
    "xlsx": lambda inp, _: parse_xlsx(inp),
    "xls": _xls,
    "odt": lambda inp, _: parse_opendocument(inp, "odt"),
    "ods": lambda inp, _: parse_opendocument(inp, "ods"),
    "odp": lambda inp, _: parse_opendocument(inp, "odp"),
    "epub": lambda inp, _: parse_epub(inp),
    "msg": lambda inp, _: parse_msg(inp),
    "zip": lambda inp, _: parse_zip(inp),
    "doc": _legacy,
    "ppt": _legacy,
    "rtf": _rtf,
    "image": _image,
    "encrypted_office": _encrypted_office,
    **{kind: _text(kind) for kind in ("html", "markdown", "rst", "org", "csv", "tsv", "json", "ndjson", "xml", "eml", "text")},
}
