"""Parsing stage: raw RFC 5322 bytes -> ParsedMessage.

Interim implementation on the standard library's ``email`` package; the
parsing issue replaces the internals, keeping ``parse``'s signature.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from datetime import UTC, datetime

from postroom.model import Address, ParsedMessage


def _addresses(value: str | None) -> tuple[Address, ...]:
    if not value:
        return ()
    return tuple(
        Address(name=name, address=addr.lower())
        for name, addr in email.utils.getaddresses([str(value)])
        if addr
    )


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


def parse(raw: bytes, received_at: datetime | None = None) -> ParsedMessage:
    """Parse raw bytes; never raises on malformed mail (defects are recorded)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    fallback = received_at or datetime.now(UTC)
    try:
        date = email.utils.parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else fallback
    except (TypeError, ValueError):
        date = fallback
    body = msg.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    html_part = msg.get_body(preferencelist=("html",))
    senders = _addresses(msg["From"])
    return ParsedMessage(
        message_id=str(msg["Message-ID"]).strip() if msg["Message-ID"] else None,
        in_reply_to=_ids(msg["In-Reply-To"]),
        references=_ids(msg["References"]),
        subject=str(msg["Subject"] or ""),
        date=date,
        sender=senders[0] if senders else None,
        to=_addresses(msg["To"]),
        cc=_addresses(msg["Cc"]),
        text=text,
        reply_text=text,
        html=html_part.get_content() if html_part is not None else None,
        defects=tuple(type(d).__name__ for d in msg.defects),
        headers=tuple((k, str(v)) for k, v in msg.items()),
        size=len(raw),
    )
