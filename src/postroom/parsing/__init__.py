"""Parsing stage: raw RFC 5322 bytes -> one immutable ParsedMessage.

``parse`` never raises on bad mail: what was wrong goes into ``defects`` and
each later step (bodies, attachments, trimming, forward, bounce, auto-reply)
is guarded so one failing step costs only its own field. Only bytes that are
not a message at all raise :class:`ParseFailed`, which the pipeline records
as ``parse_failed`` while keeping the raw mail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import Message
from typing import Any, TypeVar

from postroom.errors import ParseFailed
from postroom.model import Address, Attachment, AutoReply, Bounce, Forward, ParsedMessage
from postroom.parsing import (
    addresses,
    attachments,
    autoreply,
    bounces,
    forwarded,
    headers,
    html,
    limits,
    mime,
    trimming,
)
from postroom.parsing.autoreply import is_null_sender
from postroom.parsing.charsets import guess_decode
from postroom.parsing.dates import parse_header_date

__all__ = ["ParseFailed", "is_null_sender", "parse", "parsed_to_json"]

_ID = re.compile(r"<[^<>\s]+>")
_FOLD = re.compile(r"\r?\n[ \t]")
_MAX_FORWARD_SCAN = 300_000
_MAX_DEPTH = 3
#: References kept: the first (the thread's root) and the most recent ones.
_MAX_REFERENCES = 1000
T = TypeVar("T")


def parse(raw: bytes, received_at: datetime | None = None) -> ParsedMessage:
    """Parse raw bytes; never raises on malformed mail (defects are recorded)."""
    return _parse(raw, received_at, 0)


def _parse(raw: bytes, received_at: datetime | None, depth: int) -> ParsedMessage:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ParseFailed(f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip():
        raise ParseFailed("empty message")
    try:
        msg, repaired = mime.load(raw)
    except Exception as exc:  # the email package should not raise; if it does, the mail is unreadable
        raise ParseFailed(f"unreadable MIME: {type(exc).__name__}: {exc}") from exc
    if not list(msg.raw_items()):
        raise ParseFailed("no header fields")
    try:
        return _Builder(raw, msg, received_at, depth, repaired).build()
    except RecursionError as exc:
        raise ParseFailed("MIME structure nested too deeply") from exc


class _Builder:
    """Collects the fields of one ParsedMessage; each step is guarded."""

    def __init__(self, raw: bytes, msg: Message, received_at: datetime | None, depth: int,
                 repaired: bool) -> None:
        self.raw, self.msg, self.received_at, self.depth = raw, msg, received_at, depth
        self.fields = headers.header_index(msg)
        self.defects: list[str] = mime.defects(msg) + (["repaired-header-block"] if repaired else [])
        self.truncated: list[str] = ["mime"] if any(d.startswith("mime-truncated") for d in self.defects) else []

    def guard(self, step: str, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except RecursionError:
            raise
        except Exception as exc:  # one broken step must not lose the message
            self.defects.append(f"{step}-failed: {type(exc).__name__}: {str(exc)[:200]}")
            return default

    def cut(self, field: str, value: str, limit: int, why: str) -> str:
        """``value`` cut at ``limit`` characters; a cut is flagged (``truncated`` and ``defects``)."""
        if len(value) <= limit:
            return value
        self.flag(field, f"{why}, cut at {limit} characters")
        return value[:limit]

    def flag(self, field: str, why: str) -> None:
        self.truncated.append(field)
        self.defects.append(f"{field}-truncated: {why}")

    def build(self) -> ParsedMessage:
        msg = self.msg
        subject = self.cut("subject", self.guard("subject", lambda: self._header("Subject"), ""),
                           limits.MAX_HEADER_TEXT, "decoded header")
        date, fallback = self._date()
        sender = tuple(a for a in self.guard("from", lambda: self._addresses("From"), ()) if a.address)
        reply_to = self.guard("reply-to", lambda: self._addresses("Reply-To"), ())
        if not sender:
            self.defects.append("missing-from")
            sender = reply_to[:1]  # a From without an address: the Reply-To is who can be answered
        message_id = self.guard("message-id", self._message_id, None)
        text_plain, html_raw = self.guard("bodies", lambda: mime.bodies(msg), ("", None))
        text, trim_source = self._texts(text_plain, html_raw)
        cids = html.cid_references(html_raw or "")
        atts = self.guard("attachments", lambda: attachments.collect(msg, cids), ())
        trimmed = self.guard("trimming", lambda: trimming.trim(trim_source), trimming.Trimmed(text, "", ""))
        bounce = self.guard("bounce", lambda: self._bounce(subject), None)
        forward = None if bounce else self.guard("forward", lambda: self._forward(text, subject, trimmed, atts),
                                                 None)
        reason = self.guard("auto-reply", lambda: autoreply.detect(self.fields, subject), None)
        return ParsedMessage(
            message_id=message_id,
            in_reply_to=self._ids("In-Reply-To"),
            references=self._ids("References"),
            subject=subject,
            date=date,
            sender=sender[0] if sender else None,
            reply_to=reply_to,
            to=self.guard("to", lambda: self._addresses("To"), ()),
            cc=self.guard("cc", lambda: self._addresses("Cc"), ()),
            text=text,
            html=self._html(html_raw) if html_raw else None,
            reply_text=trimmed.reply,
            quoted_text=trimmed.quoted,
            signature=trimmed.signature,
            attachments=atts,
            forward=forward,
            auto_reply=AutoReply(reason) if reason else None,
            bounce=bounce,
            headers=self._headers(),
            date_is_fallback=fallback,
            list_id=self._header("List-Id") or None,
            authentication_results=tuple(headers.decode_header_value(v)
                                         for v in self.fields.get("authentication-results", ())),
            size=len(self.raw),
            sender_header=next(iter(self.guard("sender", lambda: self._addresses("Sender"), ())), None),
            auto_submitted=self._header("Auto-Submitted") or None,
            defects=tuple(dict.fromkeys(self.defects)),
            truncated=tuple(dict.fromkeys(self.truncated)),
        )

    def _first(self, name: str) -> str | None:
        """First raw value of a header (``name`` lower-case)."""
        values = self.fields.get(name)
        return values[0] if values else None

    def _header(self, name: str) -> str:
        return headers.decode_header_value(self._first(name.lower()))

    def _date(self) -> tuple[datetime, bool]:
        value = self._first("date")
        found = parse_header_date(value)
        if found is None:
            self.defects.append("invalid-date" if value and value.strip() else "missing-date")
            return self.received_at or datetime.now(UTC), True
        if found.tzinfo is None:
            self.defects.append("date-without-timezone")
            found = found.replace(tzinfo=UTC)
        return found, False

    def _headers(self) -> tuple[tuple[str, str], ...]:
        decoded = tuple((k, headers.decode_header_value(str(v)[: 4 * limits.MAX_HEADER_TEXT]))
                        for k, v in self.msg.raw_items())
        if all(len(v) <= limits.MAX_HEADER_TEXT for _, v in decoded):
            return decoded
        self.flag("headers", f"decoded header values cut at {limits.MAX_HEADER_TEXT} characters")
        return tuple((k, v[: limits.MAX_HEADER_TEXT]) for k, v in decoded)

    def _html(self, html_raw: str) -> str | None:
        done = self.guard("html", lambda: html.sanitize_bounded(html_raw), html.Sanitized(None))
        if done.truncated:
            self.flag("html", f"sanitised HTML over {limits.derived_limit(len(html_raw))} characters "
                              f"({limits.DERIVED_RATIO}x its source) cut")
        if done.flattened:
            self.defects.append(f"html-flattened: elements nested deeper than {limits.MAX_HTML_DEPTH} unwrapped or "
                                f"attributes past {limits.MAX_HTML_ATTRIBUTES} per tag dropped before sanitising")
        return done.html

    def _addresses(self, name: str) -> tuple[Address, ...]:
        values = self.fields.get(name.lower())
        if not values:
            return ()
        value = ", ".join(_FOLD.sub(" ", v) for v in values)
        if len(value) > limits.MAX_ADDRESS_LIST:
            self.flag(name.lower(), f"address list read from its first {limits.MAX_ADDRESS_LIST} characters")
            value = value[: limits.MAX_ADDRESS_LIST]
        if headers.has_surrogates(value):
            value = guess_decode(value.encode("utf-8", errors="surrogateescape"))
        value = value.replace("\x00", "\ufffd")
        return tuple(
            Address(headers.decode_header_value(a.name), a.address) if "=?" in a.name else a
            for a in addresses.parse_list(value)
        )

    def _message_id(self) -> str | None:
        value = (self._first("message-id") or "").strip().replace("\x00", "\ufffd")
        if not value:
            self.defects.append("missing-message-id")
            return None
        found = _ID.search(value)
        return found.group(0) if found else value.split()[0]

    def _ids(self, name: str) -> tuple[str, ...]:
        value = " ".join(self.fields.get(name.lower(), ())).replace("\x00", "\ufffd")
        found = tuple(dict.fromkeys(_ID.findall(value) or value.split()))
        if len(found) <= _MAX_REFERENCES:
            return found
        self.flag(name.lower(), f"{len(found)} ids, kept the first and the last {_MAX_REFERENCES - 1}")
        return found[:1] + found[1 - _MAX_REFERENCES :]

    def _texts(self, text_plain: str, html_raw: str | None) -> tuple[str, str]:
        """The plain text (from HTML when there is no text/plain) and the text to trim."""
        text_plain = text_plain.replace("\r\n", "\n")
        if text_plain.strip() or not html_raw:
            text_plain = self.cut("text", text_plain, limits.MAX_TEXT, "text body")
            return text_plain, text_plain
        rendered = self.guard("html-to-text", lambda: html.render(html_raw, mark_quotes=True), html.Rendered(""))
        if rendered.truncated:
            self.flag("text", f"text rendered from HTML over {limits.derived_limit(len(html_raw))} characters "
                              f"({limits.DERIVED_RATIO}x the HTML) cut")
        if rendered.quote_depth_capped:
            self.defects.append(f"quote-depth-capped: quotes nested deeper than {limits.MAX_QUOTE_DEPTH} levels "
                                f"shown with {limits.MAX_QUOTE_DEPTH} '> ' prefixes")
        return trimming.strip_mark(rendered.text), rendered.text

    def _bounce(self, subject: str) -> Bounce | None:
        return bounces.detect(self.msg, self._first("from") or "", subject)

    def _forward(self, text: str, subject: str, trimmed: trimming.Trimmed,
                 atts: tuple[Attachment, ...]) -> Forward | None:
        if mime.content_type(self.msg) == "multipart/report":
            return None
        attached = next((a for a in atts if a.content_type == "message/rfc822" and a.data), None)
        if attached is not None and self.depth < _MAX_DEPTH:
            try:
                inner = _parse(attached.data, self.received_at, self.depth + 1)
            except ParseFailed as exc:
                self.defects.append(f"attached-message-unreadable: {exc.reason}")
            else:
                return forwarded.from_attached(inner, trimmed.reply)
        others = tuple(a for a in atts if not a.inline)
        return forwarded.from_text(text[:_MAX_FORWARD_SCAN], subject, attachments=others)


def parsed_to_json(parsed: ParsedMessage) -> dict[str, Any]:
    """The stable JSON shape of ``postroom parse --json`` (``sender`` is ``from`` there)."""
    return {
        "message_id": parsed.message_id,
        "in_reply_to": list(parsed.in_reply_to),
        "references": list(parsed.references),
        "subject": parsed.subject,
        "date": parsed.date.isoformat(),
        "from": _address(parsed.sender),
        "reply_to": [_address(a) for a in parsed.reply_to],
        "to": [_address(a) for a in parsed.to],
        "cc": [_address(a) for a in parsed.cc],
        "text": parsed.text,
        "html": parsed.html,
        "reply_text": parsed.reply_text,
        "quoted_text": parsed.quoted_text,
        "signature": parsed.signature,
        "attachments": [_attachment(a) for a in parsed.attachments],
        "forward": _forward(parsed.forward),
        "auto_reply": {"reason": parsed.auto_reply.reason} if parsed.auto_reply else None,
        "bounce": _bounce(parsed.bounce),
        "defects": list(parsed.defects),
        "truncated": list(parsed.truncated),
        "date_is_fallback": parsed.date_is_fallback,
        "list_id": parsed.list_id,
        "auto_submitted": parsed.auto_submitted,
        "size": parsed.size,
    }


def _address(addr: Address | None) -> dict[str, str] | None:
    return {"name": addr.name, "address": addr.address} if addr else None


def _attachment(att: Attachment) -> dict[str, Any]:
    return {
        "filename": att.filename,
        "content_type": att.content_type,
        "size": att.size,
        "sha256": att.sha256,
        "inline": att.inline,
        "content_id": att.content_id,
        "detected_type": att.detected_type,
        "flags": list(att.flags),
    }


def _forward(fwd: Forward | None) -> dict[str, Any] | None:
    if fwd is None:
        return None
    return {
        "from": _address(fwd.sender),
        "to": [_address(a) for a in fwd.to],
        "cc": [_address(a) for a in fwd.cc],
        "date": fwd.date.isoformat() if fwd.date else None,
        "subject": fwd.subject,
        "text": fwd.text,
        "attachments": [_attachment(a) for a in fwd.attachments],
        "note": fwd.note,
        "date_text": fwd.date_text,
        "message_id": fwd.message_id,
    }


def _bounce(bounce: Bounce | None) -> dict[str, Any] | None:
    if bounce is None:
        return None
    return {
        "permanent": list(bounce.permanent),
        "temporary": list(bounce.temporary),
        "original_message_id": bounce.original_message_id,
        "status": bounce.status,
    }

