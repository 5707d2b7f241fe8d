"""The operator library: parse, clean, dedupe, chunk and embed steps over `Document` records."""

import os

# Dependencies must not phone home: unstructured and its analytics client honour these.
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

from operators.base import (  # noqa: E402
    GlobalOperator,
    Operator,
    OperatorArgs,
    get_operator_class,
    register,
    registered_names,
)
from operators.records import Chunk, Document, QuarantineInfo, Section  # noqa: E402

__all__ = [
    "Chunk",
    "Document",
    "GlobalOperator",
    "Operator",
    "OperatorArgs",
    "QuarantineInfo",
    "Section",
    "get_operator_class",
    "register",
    "registered_names",
]
