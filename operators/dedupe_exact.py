"""The `dedupe_exact` operator: drop documents whose normalized text equals an earlier document's.

The normalized text is NFKC-normalized, case-folded, with every whitespace run collapsed to one
space, so the same text in another encoding, case or line wrapping counts as a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from typing import Any, ClassVar

from operators.base import GlobalOperator, OperatorArgs, register
from operators.records import Document

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")


def normalize_for_hash(text: str) -> str:
    """Return the text NFKC-normalized, case-folded and with whitespace runs collapsed."""
    normalized = unicodedata.normalize("NFKC", text).casefold()
    return _WHITESPACE.sub(" ", normalized).strip()


def normalized_text_hash(text: str) -> str:
    """Return the sha256 hex digest of `normalize_for_hash(text)`."""
    return hashlib.sha256(normalize_for_hash(text).encode("utf-8")).hexdigest()


class DedupeExactArgs(OperatorArgs):
    """`dedupe_exact` takes no arguments."""


@register
class DedupeExactOperator(GlobalOperator):
    """Keep the first document with a given normalized text and mark the others duplicates of it.

    Documents arrive sorted by doc_id, so the keeper does not depend on scheduling. Documents
    indexed by earlier runs take precedence, so a new document with the text of one of them is
    marked a duplicate of it. Every pending document gets its hash in `metadata["text_hash"]`,
    which the engine stores for later runs. Documents whose normalized text is empty are never
    marked duplicates.
    """

    name: ClassVar[str] = "dedupe_exact"
    Args: ClassVar[type[OperatorArgs]] = DedupeExactArgs
    streaming: ClassVar[bool] = True  # the first document with a hash wins; nothing is revised later
    keeps_text: ClassVar[bool] = True

    def __init__(self, args: OperatorArgs | None = None, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self._keepers: dict[str, str] = {}
        self._indexed_hashes: set[str] = set()

    def begin(self, context: Any) -> None:
        self._keepers = dict(context.indexed_text_hashes)
        self._indexed_hashes = set(self._keepers)
        logger.info(
            "dedupe_exact: run %s starts with %d text hashes of indexed documents",
            context.run_id,
            len(self._keepers),
        )

    def process(self, doc: Document) -> Document:
        normalized = normalize_for_hash(doc.text)
        text_hash = hashlib.sha256(normalized.encode("utf-8")).hexdigest()
        doc.metadata["text_hash"] = text_hash
        if not normalized:
            return doc

        keeper_id = self._keepers.setdefault(text_hash, doc.doc_id)
        if keeper_id != doc.doc_id:
            doc.mark_duplicate(keeper_id, f"duplicate of {keeper_id}")
            if text_hash in self._indexed_hashes:
                self.stats["duplicates_of_indexed"] += 1
        return doc
