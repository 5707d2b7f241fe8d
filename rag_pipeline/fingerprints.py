"""Fingerprints that decide when stored results are stale.

`pipeline_fp` covers every operator except `embed` (parse, clean, dedupe, chunk settings and
operator versions); `embed_fp` covers the embedding model. `capability_key` changes when a
quarantined document might now succeed: a parse setting such as a PDF password changed, or a tool
such as LibreOffice or Tesseract appeared on the PATH.
"""

from __future__ import annotations

import hashlib
import json
import shutil

from operators.base import Operator

# Tools whose presence changes what `parse` can read.
OPTIONAL_TOOLS = ("soffice", "tesseract")


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pipeline_fingerprints(operators: list[Operator]) -> tuple[str, str]:
    embed_fp = ""
    parts = []
    for op in operators:
        if op.name == "embed":
            embed_fp = op.model_fingerprint()
        else:
            parts.append(op.fingerprint())
    return _digest(parts), embed_fp


def capability_key(operators: list[Operator]) -> str:
    parse_args = [op.args.model_dump(mode="json") for op in operators if op.name == "parse"]
    tools = {tool: shutil.which(tool) is not None for tool in OPTIONAL_TOOLS}
    return _digest({"parse": parse_args, "tools": tools})
