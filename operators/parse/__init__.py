"""The `parse` operator: detect each file's format from its content and extract its text.

Modules by concept: `detect` (format from bytes), `encodings` (text decoding), one module per
format family (`pdf`, `html`, `text`, `tables`, `office`, `spreadsheets`, `opendocument`, `epub`,
`mail`, `structured`, `archive`, `legacy`, `ocr`), `parsers` (format to parser) and `operator`
(the registered operator, its arguments, quarantine and child documents).
"""

from operators.parse.operator import ParseArgs, ParseOperator

__all__ = ["ParseArgs", "ParseOperator"]
