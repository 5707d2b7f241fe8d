"""Token-aware planning of chunk boundaries over one document's text.

The text is tokenized once, paragraph by paragraph, and `TokenIndex` keeps the character offsets of
every token, so the number of tokens in any span is two bisections instead of a new tokenizer call.
`plan_chunks` then splits oversized spans at paragraphs, sentences, lines, clauses, words and
finally tokens, merges the pieces greedily up to the budget across those boundaries, and prepends
overlap taken from the end of the previous chunk. A full chunk ends at the coarsest boundary past
half its budget (see `MIN_FILL_SHARE`), so chunks end at paragraphs where that costs little
while a short title still shares a chunk with the text after it.

Greedy merging alone lets one inserted paragraph shift every later chunk boundary. To keep chunk
ids stable under edits, a piece whose content hash falls below a threshold proportional to its
token count is an anchor: merging never continues past it. Anchors depend only on the piece's own
text, so an edit changes chunks only up to the next anchor, about `ANCHOR_SPACING` chunks later.
Texts shorter than `ANCHOR_SPACING` budgets have no anchors.
"""

from __future__ import annotations

import hashlib
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from operators.text_segmentation import (
    Span,
    is_unspaced_script,
    split_clauses,
    split_lines,
    split_paragraphs,
    split_sentences,
    split_words,
    trim_span,
)

# Expected distance between anchors, in chunk budgets. Larger values give fewer under-filled
# chunks at anchors but let an edit change more chunks after it.
ANCHOR_SPACING = 4

# A chunk may end at a coarser boundary before the budget is full, but only once it has at least
# this share of the budget, so short titles and paragraphs join the text that follows them.
MIN_FILL_SHARE = 0.5
# A chunk filled below this share of the budget splits the next piece further instead of ending.
REFINE_BELOW_SHARE = 0.25

# Coarsest boundary first. Spans that still exceed the budget after `split_words` are cut at
# token boundaries, which for Chinese and Japanese means between characters.
_SPLITTERS: tuple[Callable[[str, int, int], list[Span]], ...] = (
    split_paragraphs,
    split_sentences,
    split_lines,
    split_clauses,
    split_words,
)


def _is_bert_split_char(char: str) -> bool:
    # The BERT pre-tokenizer splits on whitespace and punctuation, and its normalizer puts spaces
    # around CJK ideographs, so no token crosses a boundary next to one of these characters.
    if char.isspace():
        return True
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    if unicodedata.category(char).startswith("P"):
        return True
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2FA1F
    )


class TokenIndex:
    """Character offsets of the model tokens of one text, for counting tokens in spans.

    `count(start, end)` equals the tokenizer's count for `text[start:end]` on its own when both
    ends are exact boundaries (see `is_exact_boundary`). Elsewhere it is an estimate, and callers
    re-tokenize the span to get the true count.
    """

    def __init__(self, text: str, tokenizer, bert_boundaries: bool) -> None:
        """Tokenize `text` paragraph by paragraph with a `tokenizers.Tokenizer` without truncation.

        `bert_boundaries` states that the tokenizer is BERT's WordPiece with the BERT
        pre-tokenizer, whose token boundaries `is_exact_boundary` can predict.
        """
        self.text = text
        self.bert_boundaries = bert_boundaries
        self.starts: list[int] = []
        self.ends: list[int] = []
        paragraphs = split_paragraphs(text, 0, len(text))
        encodings = tokenizer.encode_batch(
            [text[start:end] for start, end in paragraphs], add_special_tokens=False
        )
        for (paragraph_start, _), encoding in zip(paragraphs, encodings):
            offsets = encoding.offsets
            self.starts.extend([paragraph_start + token_start for token_start, _ in offsets])
            self.ends.extend([paragraph_start + token_end for _, token_end in offsets])

    def count(self, start: int, end: int) -> int:
        return max(0, bisect_right(self.ends, end) - bisect_left(self.starts, start))

    def token_starts(self, start: int, end: int) -> list[int]:
        """Return the start offsets of the tokens that begin in `[start, end)`."""
        return self.starts[bisect_left(self.starts, start) : bisect_left(self.starts, end)]

    def is_exact_boundary(self, position: int) -> bool:
        """Return True when cutting the text at `position` cannot change how a side tokenizes."""
        if position <= 0 or position >= len(self.text):
            return True
        if not self.bert_boundaries:
            return False
        return _is_bert_split_char(self.text[position - 1]) or _is_bert_split_char(
            self.text[position]
        )


@dataclass(frozen=True)
class PlannedChunk:
    start: int  # where the chunk begins, overlap included
    core_start: int  # where the text not shared with the previous chunk begins
    end: int


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    # Index in `_SPLITTERS` of the boundary before this piece: 0 for a paragraph break, larger
    # for finer ones; `len(_SPLITTERS)` for a cut between tokens.
    boundary: int
    # True for a part of a piece that `merge` split further to fill a chunk. Such parts can be
    # single words, whose hash must not make them anchors.
    refined: bool = False


class _Planner:
    def __init__(self, index: TokenIndex, budget: int, first_budget: int | None = None) -> None:
        self.index = index
        self.text = index.text
        self.budget = budget
        # The first chunk gets no overlap, so its own part may use the whole chunk size.
        self.first_budget = max(budget, first_budget or budget)
        # A text of at most ANCHOR_SPACING budgets gets no anchors: an edit there changes about
        # as many chunks as it has anyway, and anchors would only cost extra, under-filled chunks.
        self.use_anchors = index.count(0, len(index.text)) > ANCHOR_SPACING * budget

    def split(self, start: int, end: int, level: int, boundary: int = 0) -> list[_Piece]:
        """Return pieces of at most `budget` tokens covering `[start, end)`, not yet merged.

        A span that fits stays whole. A longer one is split at the coarsest boundary, from
        `_SPLITTERS[level]` on, that splits it, and each part is split again as needed.
        """
        if self.index.count(start, end) <= self.budget:
            return [_Piece(start, end, boundary)]
        parts: list[Span] = []
        while level < len(_SPLITTERS):
            parts = _SPLITTERS[level](self.text, start, end)
            level += 1
            if len(parts) > 1:
                break
        if len(parts) <= 1:
            spans = self.split_tokens(start, end)
            return [
                _Piece(piece_start, piece_end, boundary if position == 0 else len(_SPLITTERS))
                for position, (piece_start, piece_end) in enumerate(spans)
            ]
        pieces: list[_Piece] = []
        for position, (part_start, part_end) in enumerate(parts):
            pieces.extend(self.split(part_start, part_end, level, boundary if position == 0 else level - 1))
        return pieces

    def split_tokens(self, start: int, end: int) -> list[Span]:
        """Cut `[start, end)` every `budget` tokens, for runs with no other boundary."""
        token_starts = self.index.token_starts(start, end)
        cuts = token_starts[self.budget :: self.budget]
        spans = []
        previous = start
        for cut in [*cuts, end]:
            piece_start, piece_end = trim_span(self.text, previous, cut)
            if piece_start < piece_end:
                spans.append((piece_start, piece_end))
            previous = cut
        return spans

    def is_anchor(self, start: int, end: int) -> bool:
        digest = hashlib.blake2b(self.text[start:end].encode("utf-8"), digest_size=8).digest()
        share = self.index.count(start, end) / (ANCHOR_SPACING * self.budget)
        return int.from_bytes(digest, "big") < share * 2**64

    def merge(self, pieces: list[_Piece]) -> list[Span]:
        """Join consecutive pieces into chunks of at most `chunk_budget` tokens each.

        A chunk ends after an anchor piece, or where the next piece does not fit. In the second
        case `choose_cut` may end it earlier, at a coarser boundary.
        """
        merged: list[Span] = []
        current: list[_Piece] = []
        queue = list(reversed(pieces))
        while queue:
            piece = queue.pop()
            budget = self.chunk_budget(merged)
            if current and self.index.count(current[0].start, piece.end) > budget:
                # A chunk less than REFINE_BELOW_SHARE full takes part of the next piece instead
                # of ending short, so a long sentence after a short clause leaves no tiny chunk.
                # Anchors stay whole, so where chunks end after them does not depend on the text
                # before them.
                filled = self.index.count(current[0].start, current[-1].end)
                if filled < budget * REFINE_BELOW_SHARE and not self.is_kept_anchor(piece):
                    parts = self.split_finer(piece)
                    if len(parts) > 1:
                        queue.extend(reversed(parts))
                        continue
                kept_count = self.choose_cut(current, piece, budget)
                merged.append((current[0].start, current[kept_count - 1].end))
                current = current[kept_count:]
                queue.append(piece)
                continue
            current.append(piece)
            if self.is_kept_anchor(piece):
                merged.append((current[0].start, piece.end))
                current = []
        if current:
            merged.append((current[0].start, current[-1].end))
        return merged

    def is_kept_anchor(self, piece: _Piece) -> bool:
        return self.use_anchors and not piece.refined and self.is_anchor(piece.start, piece.end)

    def split_finer(self, piece: _Piece) -> list[_Piece]:
        """Split a piece at the coarsest boundary below a paragraph that splits it, or return it whole."""
        for level in range(1, len(_SPLITTERS)):
            parts = _SPLITTERS[level](self.text, piece.start, piece.end)
            if len(parts) > 1:
                return [
                    _Piece(start, end, piece.boundary if position == 0 else level, refined=True)
                    for position, (start, end) in enumerate(parts)
                ]
        return [piece]

    def chunk_budget(self, merged: list[Span]) -> int:
        return self.budget if merged else self.first_budget

    def choose_cut(self, current: list[_Piece], incoming: _Piece, budget: int) -> int:
        """Return how many pieces of `current` the chunk keeps when `incoming` does not fit.

        It keeps all of them unless an earlier cut falls at a coarser boundary (a paragraph
        instead of a sentence) and still leaves the chunk at least `MIN_FILL_SHARE` full. So a
        short title or paragraph does not become a chunk of its own, and chunks still end at
        paragraphs where that costs little.
        """
        min_tokens = budget * MIN_FILL_SHARE
        best, best_boundary = len(current), incoming.boundary
        for kept_count in range(len(current) - 1, 0, -1):
            if self.index.count(current[0].start, current[kept_count - 1].end) < min_tokens:
                break
            if current[kept_count].boundary < best_boundary:
                best, best_boundary = kept_count, current[kept_count].boundary
        return best

    def overlap_start(self, previous_start: int, core_start: int, overlap_tokens: int) -> int:
        """Return where the overlap before `core_start` begins, or `core_start` for none.

        The overlap is the longest run of whole sentences at the end of the previous chunk that
        fits in `overlap_tokens`. When the last sentence alone is too long, it is the longest run
        of its final words, or for Chinese, Japanese and Thai text, of its final characters. It
        never reaches back to `previous_start`, so no chunk repeats the previous one whole.
        """
        if overlap_tokens <= 0:
            return core_start
        # Only text within `overlap_tokens` tokens of `core_start` can be overlap, so the search
        # starts at the token just beyond that distance. A piece beginning exactly there is
        # partial or too long, so candidates must start after `window_start`.
        tokens_before = bisect_left(self.index.starts, core_start)
        window_start = previous_start
        if tokens_before > overlap_tokens:
            token_beyond = self.index.starts[tokens_before - overlap_tokens - 1]
            window_start = max(previous_start, token_beyond)

        def earliest_fitting(candidates: list[int]) -> int | None:
            # Walk back from the end, because the token count only grows as the start moves earlier.
            best = None
            for start in reversed(candidates):
                if start <= window_start or self.index.count(start, core_start) > overlap_tokens:
                    break
                best = start
            return best

        sentences = split_sentences(self.text, window_start, core_start)
        if not sentences:
            return core_start
        start = earliest_fitting([sentence_start for sentence_start, _ in sentences])
        if start is not None:
            return start

        words = split_words(self.text, *sentences[-1])
        start = earliest_fitting([word_start for word_start, _ in words])
        if start is not None:
            return start

        characters = [
            token_start
            for token_start in self.index.token_starts(*words[-1])
            if is_unspaced_script(self.text[token_start])
            and self.index.is_exact_boundary(token_start)
        ]
        start = earliest_fitting(characters)
        return core_start if start is None else start


def plan_chunks(index: TokenIndex, max_tokens: int, overlap_tokens: int) -> list[PlannedChunk]:
    """Plan chunks of at most `max_tokens` tokens (by `index.count`) over the whole text.

    Each chunk's own part after the first contains at most `max_tokens - overlap_tokens` tokens,
    so the overlap taken from the end of the previous chunk always fits.
    """
    start, end = trim_span(index.text, 0, len(index.text))
    if start == end:
        return []
    planner = _Planner(index, max_tokens - overlap_tokens, first_budget=max_tokens)
    cores = planner.merge(planner.split(start, end, 0))
    chunks = [PlannedChunk(cores[0][0], cores[0][0], cores[0][1])]
    for (previous_start, _), (core_start, core_end) in zip(cores, cores[1:]):
        chunk_start = planner.overlap_start(previous_start, core_start, overlap_tokens)
        chunks.append(PlannedChunk(chunk_start, core_start, core_end))
    return chunks


def split_at_middle_token(index: TokenIndex, start: int, end: int) -> list[Span]:
    """Split `[start, end)` in two at the token start nearest its middle.

    Used when re-tokenizing a planned chunk on its own shows more tokens than the estimate allowed.
    Returns the span unchanged when it contains a single token.
    """
    token_starts = index.token_starts(start + 1, end)
    if not token_starts:
        return [(start, end)]
    cut = token_starts[len(token_starts) // 2]
    spans = [trim_span(index.text, start, cut), trim_span(index.text, cut, end)]
    return [(s, e) for s, e in spans if s < e]
