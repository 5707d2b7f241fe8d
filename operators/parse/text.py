"""Plain text and lightweight markup: Markdown, reStructuredText, Org."""

from __future__ import annotations

import functools

from operators.parse.content import ParsedContent, ParseInput
from operators.parse.html import html_to_text
from operators.parse.normalize import normalize_text
from operators.parse.pandoc import pandoc_to_html
from operators.records import Section


def parse_plain(text: str, encoding: str) -> ParsedContent:
    """Return decoded plain text as one section."""
    return ParsedContent("text", [Section(normalize_text(text))], {"encoding": encoding})


def parse_markdown(text: str, encoding: str) -> ParsedContent:
    """Render Markdown to HTML and take its text, so raw HTML blocks get the HTML clean-up too."""
    body, metadata = html_to_text(_markdown_renderer().render(text))
    metadata["encoding"] = encoding
    return ParsedContent("markdown", [Section(body)], metadata)


def parse_with_pandoc(inp: ParseInput, text: str, encoding: str, source_format: str) -> ParsedContent:
    """Convert reStructuredText or Org through pandoc; the input is re-encoded as UTF-8 for it."""
    html = pandoc_to_html(text.encode("utf-8"), source_format, inp.args.timeout_s)
    body, metadata = html_to_text(html)
    metadata["encoding"] = encoding
    return ParsedContent(source_format, [Section(body)], metadata)


@functools.lru_cache(maxsize=1)
def _markdown_renderer():
    from markdown_it import MarkdownIt

    # CommonMark plus GitHub tables and strikethrough; raw HTML is passed on to the HTML clean-up.
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
