"""E-mail messages: RFC 5322 files (EML) and Outlook files (MSG).

The text is a header block (Subject, From, To, Cc, Date) followed by the body. Attachments become
embedded files, which the operator turns into child documents.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
import logging
import mimetypes
from email.message import EmailMessage, Message
from typing import Any

from operators.parse.content import EmbeddedFile, ParsedContent, ParseInput
from operators.parse.encodings import UndecodableError, decode_text
from operators.parse.errors import CORRUPT, ParseError
from operators.parse.html import html_to_text
from operators.parse.normalize import normalize_text
from operators.records import Section

logger = logging.getLogger(__name__)

_SHOWN_HEADERS = ("Subject", "From", "To", "Cc", "Date")
# MIME nesting deeper than this is not walked (a malicious message can nest thousands of levels).
_MAX_MIME_DEPTH = 50


def parse_eml(inp: ParseInput) -> ParsedContent:
    """Parse an RFC 5322 message; RFC 2047 encoded headers are decoded."""
    message = email.message_from_bytes(inp.data, policy=email.policy.default)
    headers = {name: _header(message, name) for name in (*_SHOWN_HEADERS, "Message-ID")}
    plain: list[str] = []
    html: list[str] = []
    attachments: list[EmbeddedFile] = []
    _collect(message, plain, html, attachments, depth=0)

    body = "\n\n".join(plain) if plain else "\n\n".join(html_to_text(part)[0] for part in html)
    return _mail_content("eml", headers, body, attachments)


def parse_msg(inp: ParseInput) -> ParsedContent:
    """Parse an Outlook MSG (compound file) through python-oxmsg."""
    from oxmsg import Message as OutlookMessage

    try:
        message = OutlookMessage.load(inp.data)
    except Exception as err:  # python-oxmsg raises assorted errors on damaged compound files
        raise ParseError(CORRUPT, f"python-oxmsg cannot read the MSG file: {err}") from err
    recipients = ", ".join(recipient.email_address for recipient in message.recipients if recipient.email_address)
    headers = {
        "Subject": message.subject or "",
        "From": message.sender or "",
        "To": recipients,
        "Cc": "",
        "Date": message.sent_date.isoformat() if message.sent_date else "",
        "Message-ID": "",
    }
    body = message.body or (html_to_text(message.html_body)[0] if message.html_body else "")
    attachments = []
    for number, attachment in enumerate(message.attachments, start=1):
        data = attachment.file_bytes
        if data is None:
            logger.warning("skipped MSG attachment %d of %s: it is not stored by value", number, inp.uri)
            continue
        name = attachment.file_name or _fallback_name(number, attachment.mime_type)
        attachments.append(EmbeddedFile(name, data, "attachment"))
    return _mail_content("msg", headers, body, attachments)


def _mail_content(kind: str, headers: dict[str, str], body: str, attachments: list[EmbeddedFile]) -> ParsedContent:
    header_block = "\n".join(f"{name}: {headers[name]}" for name in _SHOWN_HEADERS if headers.get(name))
    text = normalize_text(f"{header_block}\n\n{body}")
    metadata: dict[str, Any] = {"attachment_count": len(attachments)}
    for key, name in (("title", "Subject"), ("author", "From"), ("to", "To"), ("date", "Date"), ("message_id", "Message-ID")):
        if headers.get(name):
            metadata[key] = headers[name]
    return ParsedContent(kind, [Section(text)], metadata, children=_unique_names(attachments))


def _collect(part: Message, plain: list[str], html: list[str], attachments: list[EmbeddedFile], depth: int) -> None:
    """Walk the MIME tree: inline text parts go to `plain`/`html`, everything else is an attachment."""
    if depth > _MAX_MIME_DEPTH:
        raise ParseError(CORRUPT, f"MIME parts nest more than {_MAX_MIME_DEPTH} levels deep")
    content_type = part.get_content_type()
    if part.is_multipart() and content_type != "message/rfc822":
        children = part.get_payload()
        if content_type == "multipart/alternative":
            children = _preferred_alternative(children)
        for child in children:
            _collect(child, plain, html, attachments, depth + 1)
        return

    filename = _filename(part)
    disposition = part.get_content_disposition()
    if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
        text = _decoded_payload(part)
        (plain if content_type == "text/plain" else html).append(text)
        return
    data = _attachment_bytes(part)
    if data:
        attachments.append(EmbeddedFile(filename or _fallback_name(len(attachments) + 1, content_type), data, "attachment"))


def _preferred_alternative(children: list[Message]) -> list[Message]:
    """Pick the plain-text alternative when there is one, else keep them all."""
    for child in children:
        if child.get_content_type() == "text/plain":
            return [child]
    return children


def _decoded_payload(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    try:
        text, _ = decode_text(payload, declared=_charset(part))
    except UndecodableError:
        text = payload.decode("utf-8", errors="replace")
    return text


def _attachment_bytes(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        return inner.as_bytes() if isinstance(inner, Message) else b""
    return part.get_payload(decode=True) or b""


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except (ValueError, LookupError):
        return None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, TypeError):
        return None
    if not name:
        return None
    # The name becomes part of a child uri, so path separators are replaced.
    cleaned = name.replace("/", "_").replace("\\", "_").strip()
    return cleaned or None


def _header(message: EmailMessage, name: str) -> str:
    """Return a decoded header; a header the modern parser rejects is decoded from its raw value."""
    try:
        value = message.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    except (ValueError, TypeError, LookupError, IndexError, AttributeError):
        raw = message.get_all(name, failobj=[""])[0]
        try:
            return " ".join(str(email.header.make_header(email.header.decode_header(str(raw)))).split())
        except (ValueError, LookupError, email.errors.HeaderParseError):
            return " ".join(str(raw).split())


def _fallback_name(number: int, mime_type: str | None) -> str:
    extension = mimetypes.guess_extension(mime_type or "") or ".bin"
    return f"attachment-{number}{extension}"


def _unique_names(attachments: list[EmbeddedFile]) -> list[EmbeddedFile]:
    """Suffix repeated attachment names (`a.pdf`, `a (2).pdf`) so child ids stay unique."""
    seen: dict[str, int] = {}
    for attachment in attachments:
        count = seen.get(attachment.name, 0) + 1
        seen[attachment.name] = count
        if count > 1:
            stem, dot, extension = attachment.name.rpartition(".")
            attachment.name = f"{stem} ({count}).{extension}" if dot and stem else f"{attachment.name} ({count})"
    return attachments
