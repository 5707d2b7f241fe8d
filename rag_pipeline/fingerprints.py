"""Fingerprints that decide when stored results are stale, stage by stage.

- `parse_fp` covers the operators before `chunk` (parse, clean, deduplication) and their versions.
- `chunk_fp` covers `chunk` and the operators after it, except `embed`.
- `embed_fp` covers the embedding model (name, revision, dimension, normalization).

A change of `chunk_fp` alone re-chunks documents from their cached parse output; a change of
`embed_fp` alone re-embeds stored chunks. `capability_key` changes when a quarantined document
might now succeed: a parse setting such as a PDF password changed, or a tool such as LibreOffice
or Tesseract appeared on the PATH.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass

from operators.base import Operator

# Tools whose presence changes what `parse` can read.
OPTIONAL_TOOLS = ("soffice", "tesseract")


@dataclass(frozen=True)
class Fingerprints:
    parse_fp: str
    chunk_fp: str
    embed_fp: str
    retry_key: str


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def chunk_position(operators: list[Operator]) -> int:
    return next(i for i, op in enumerate(operators) if op.name == "chunk")


def embed_position(operators: list[Operator]) -> int:
    return next(i for i, op in enumerate(operators) if op.name == "embed")


def compute_fingerprints(operators: list[Operator]) -> Fingerprints:
    split = chunk_position(operators)
    before = [op.fingerprint() for op in operators[:split]]
    after = [op.fingerprint() for op in operators[split:] if op.name != "embed"]
    embed_fp = operators[embed_position(operators)].model_fingerprint()
    return Fingerprints(_digest(before), _digest(after), embed_fp, capability_key(operators))


def capability_key(operators: list[Operator]) -> str:
    parse_args = [op.args.model_dump(mode="json") for op in operators if op.name == "parse"]
    tools = {tool: shutil.which(tool) is not None for tool in OPTIONAL_TOOLS}
    return _digest({"parse": parse_args, "tools": tools})
