"""Excel workbooks, XLSX through openpyxl and legacy XLS through xlrd: one section per sheet."""

from __future__ import annotations

import io
from typing import Any

from lxml import etree

from operators.parse.content import ParsedContent, ParseInput
from operators.parse.errors import CORRUPT, ENCRYPTED, ParseError
from operators.parse.normalize import normalize_text
from operators.parse.tables import rows_to_text
from operators.parse.xmlparts import ooxml_properties
from operators.parse.zipguard import MEGABYTE, ZIP_ERRORS, open_zip
from operators.records import Section


def parse_xlsx(inp: ParseInput) -> ParsedContent:
    """Return one section per non-empty worksheet, with `sheet` (its name) in the metadata."""
    import openpyxl

    with open_zip(inp.data, inp.args.max_archive_total_mb) as archive:
        metadata = ooxml_properties(archive, int(inp.args.max_file_mb * MEGABYTE))
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(inp.data), read_only=True, data_only=True)
    except (*ZIP_ERRORS, TypeError, etree.XMLSyntaxError) as err:
        raise ParseError(CORRUPT, f"openpyxl cannot open the workbook: {err}") from err
    try:
        sections = []
        for sheet in workbook.worksheets:
            if not hasattr(sheet, "iter_rows"):
                continue  # a chart sheet
            # Read-only mode trusts the stored sheet dimension, which some writers get wrong.
            sheet.reset_dimensions()
            _append_sheet(sections, sheet.title, sheet.iter_rows(values_only=True))
        metadata["sheet_count"] = len(workbook.sheetnames)
    finally:
        workbook.close()
    return ParsedContent("xlsx", sections, metadata)


def parse_xls(inp: ParseInput) -> ParsedContent:
    """Return one section per non-empty sheet of a legacy binary Excel workbook."""
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=inp.data, on_demand=True)
    except xlrd.biffh.XLRDError as err:
        if "encrypted" in str(err).lower():
            raise ParseError(ENCRYPTED, "the XLS workbook is password-protected", fix="save an unprotected copy") from err
        raise ParseError(CORRUPT, f"xlrd cannot open the workbook: {err}") from err
    sections: list[Section] = []
    for index in range(book.nsheets):
        sheet = book.sheet_by_index(index)
        rows = ([_xls_value(book, cell) for cell in sheet.row(number)] for number in range(sheet.nrows))
        _append_sheet(sections, sheet.name, rows)
        book.unload_sheet(index)
    metadata: dict[str, Any] = {"sheet_count": book.nsheets}
    if book.user_name:
        metadata["author"] = book.user_name
    return ParsedContent("xls", sections, metadata)


def _append_sheet(sections: list[Section], name: str, rows: Any) -> None:
    text = normalize_text(rows_to_text(rows))
    if text:
        sections.append(Section(text, {"sheet": name}))


def _xls_value(book: Any, cell: Any) -> Any:
    import xlrd

    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            return xlrd.xldate.xldate_as_datetime(cell.value, book.datemode)
        except (ValueError, OverflowError):
            return cell.value
    if cell.ctype in (xlrd.XL_CELL_ERROR, xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    return cell.value
