"""The `parse` operator: detect each file's format from its content and extract its text.

`detect` finds the format from the bytes and `encodings` decodes text. Each format family has
its own module: `pdf`, `html`, `text`, `tables`, `office`, `spreadsheets`, `opendocument`,
`epub`, `mail`, `structured`, `archive`, `legacy` and `ocr`. `parsers` maps a format to its
parser, and `operator` holds the registered operator, its arguments, quarantine and child
documents.
"""

from operators.parse.operator import ParseArgs, ParseOperator

__all__ = ["ParseArgs", "ParseOperator"]
