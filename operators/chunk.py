"""The `chunk` operator: split each document's text into pieces sized for the embedding model.

Token counts come from the embedding model's own tokenizer, so a chunk of `max_tokens` tokens is
never truncated by the model. Boundaries are planned by `operators.chunk_planner`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from typing import Any, ClassVar

from pydantic import Field, model_validator

from operators.base import Operator, OperatorArgs, register
from operators.chunk_planner import TokenIndex, plan_chunks, split_at_middle_token
from operators.models import load_fast_tokenizer, model_max_seq_length, special_token_count
from operators.records import Chunk, Document
from operators.text_segmentation import Span

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256

# A chunk needs at least one letter or digit in any script, so "* * *" or "。" alone is dropped.
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def max_chunk_tokens(tokenizer_name: str) -> int:
    """Return the model's maximum sequence length minus the special tokens its tokenizer adds."""
    tokenizer = load_fast_tokenizer(tokenizer_name)
    return model_max_seq_length(tokenizer_name) - special_token_count(tokenizer)


class ChunkArgs(OperatorArgs):
    max_tokens: int = Field(
        DEFAULT_MAX_TOKENS,
        gt=0,
        description="Maximum model tokens per chunk, special tokens excluded. At most the model's "
        "input limit minus its special tokens (254 for all-MiniLM-L6-v2).",
        json_schema_extra={"default_text": f"{DEFAULT_MAX_TOKENS} or the model's limit, whichever is lower"},
    )
    overlap_tokens: int = Field(
        32,
        ge=0,
        description="Maximum tokens a chunk repeats from the end of the previous chunk; less than max_tokens.",
    )
    tokenizer: str = Field(
        "all-MiniLM-L6-v2",
        description="Embedding model whose tokenizer counts the tokens: a bundled model name or "
        "a local folder.",
    )

    @model_validator(mode="before")
    @classmethod
    def _cap_default_max_tokens(cls, data: Any) -> Any:
        # all-MiniLM-L6-v2 takes 256 tokens including [CLS] and [SEP], so the documented default of
        # 256 would not fit its own default model. Only an explicit value above the limit fails.
        if isinstance(data, dict) and "max_tokens" not in data:
            tokenizer = data.get("tokenizer", cls.model_fields["tokenizer"].default)
            if isinstance(tokenizer, str):
                data = {**data, "max_tokens": min(DEFAULT_MAX_TOKENS, max_chunk_tokens(tokenizer))}
        return data

    @model_validator(mode="after")
    def _check_limits(self) -> ChunkArgs:
        limit = max_chunk_tokens(self.tokenizer)
        if self.max_tokens > limit:
            raise ValueError(
                f"max_tokens={self.max_tokens} exceeds the {limit} tokens that model "
                f"{self.tokenizer!r} accepts per input after special tokens; set max_tokens to "
                f"{limit} or less"
            )
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(
                f"overlap_tokens={self.overlap_tokens} must be less than "
                f"max_tokens={self.max_tokens}"
            )
        return self


def chunk_id(doc_id: str, text: str, occurrence: int) -> str:
    """Return a stable id from the document id, the chunk text and how many identical chunk texts
    come before it in the same document."""
    payload = f"{doc_id}\x00{occurrence}\x00{text}".encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:32]


class _PageLookup:
    """Page numbers of the sections that a character span of the document text touches."""

    def __init__(self, doc: Document) -> None:
        spans = [
            (start, end, section.metadata["page"])
            for start, end, section in doc.section_spans()
            if "page" in section.metadata
        ]
        self.starts = [start for start, _, _ in spans]
        self.ends = [end for _, end, _ in spans]
        self.pages = [page for _, _, page in spans]

    def pages_for(self, start: int, end: int) -> list[Any]:
        first = bisect_right(self.ends, start)
        last = bisect_left(self.starts, end)
        pages: list[Any] = []
        for page in self.pages[first:last]:
            if page not in pages:
                pages.append(page)
        return pages


@register
class ChunkOperator(Operator):
    """Split text into chunks of at most `max_tokens` model tokens, cutting at paragraph,
    sentence, line, clause and word boundaries before cutting between tokens."""

    name: ClassVar[str] = "chunk"
    Args: ClassVar[type[OperatorArgs]] = ChunkArgs
    kind = "map"
    # 2: chunks merge across paragraph breaks, so a short title no longer becomes its own chunk.
    version: ClassVar[str] = "2"
    # The tokenizer counts by its files' content, not by the path or name it was loaded from.
    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset({"tokenizer"})

    args: ChunkArgs

    def fingerprint_extra(self) -> dict[str, Any]:
        from operators.models import tokenizer_revision

        return {"tokenizer": tokenizer_revision(self.args.tokenizer)}

    def setup(self) -> None:
        from tokenizers import Tokenizer
        from tokenizers.models import WordPiece
        from tokenizers.pre_tokenizers import BertPreTokenizer

        # A private copy, because the model's tokenizer.json may enable truncation and padding
        # (all-MiniLM-L6-v2 truncates to 128 tokens) and the cached tokenizer is shared.
        self._tokenizer = Tokenizer.from_str(load_fast_tokenizer(self.args.tokenizer).to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._bert_boundaries = isinstance(self._tokenizer.model, WordPiece) and isinstance(
            self._tokenizer.pre_tokenizer, BertPreTokenizer
        )

    def process(self, doc: Document) -> Document:
        doc.chunks = self.chunk_document(doc)
        if not doc.chunks:
            doc.mark_filtered("chunk", "no chunkable text")
        self.stats["chunks"] += len(doc.chunks)
        return doc

    def chunk_document(self, doc: Document) -> list[Chunk]:
        self.ensure_setup()
        text = doc.text
        index = TokenIndex(text, self._tokenizer, self._bert_boundaries)
        planned = plan_chunks(index, self.args.max_tokens, self.args.overlap_tokens)
        spans_with_counts = self._count_tokens(index, [(p.start, p.end) for p in planned])

        pages = _PageLookup(doc)
        occurrences: Counter[str] = Counter()
        chunks: list[Chunk] = []
        for (start, end), token_count in spans_with_counts:
            chunk_text = text[start:end]
            if token_count == 0 or _LETTER_OR_DIGIT.search(chunk_text) is None:
                continue
            metadata: dict[str, Any] = {}
            chunk_pages = pages.pages_for(start, end)
            if chunk_pages:
                metadata["pages"] = chunk_pages
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(doc.doc_id, chunk_text, occurrences[chunk_text]),
                    text=chunk_text,
                    ordinal=len(chunks),
                    char_start=start,
                    char_end=end,
                    token_count=token_count,
                    metadata=metadata,
                )
            )
            occurrences[chunk_text] += 1
        return chunks

    def _count_tokens(self, index: TokenIndex, spans: list[Span]) -> list[tuple[Span, int]]:
        """Return each span with its exact token count, splitting spans that exceed `max_tokens`.

        Spans whose ends are exact boundaries keep the count from the index. The others, such as
        cuts inside a Japanese word, or every span for tokenizers other than BERT's, are
        re-tokenized on their own in one batch call.
        """
        counted: list[tuple[Span, int]] = []
        pending = list(spans)
        while pending:
            to_encode = [
                (start, end)
                for start, end in pending
                if not (index.is_exact_boundary(start) and index.is_exact_boundary(end))
            ]
            encodings = self._tokenizer.encode_batch(
                [index.text[start:end] for start, end in to_encode], add_special_tokens=False
            )
            exact_counts = {span: len(e.ids) for span, e in zip(to_encode, encodings)}
            oversized: list[Span] = []
            for span in pending:
                count = exact_counts.get(span)
                if count is None:
                    count = index.count(*span)
                if count <= self.args.max_tokens:
                    counted.append((span, count))
                    continue
                halves = split_at_middle_token(index, *span)
                if len(halves) == 1:
                    # NOTE: a span that the index counts as one token but that re-tokenizes into
                    # more than max_tokens cannot be cut further, so it is kept over the limit.
                    # That needs max_tokens of 1 or 2, and no such case is known for WordPiece.
                    counted.append((span, count))
                    continue
                oversized.extend(halves)
            pending = oversized
        counted.sort(key=lambda item: item[0])
        return counted
