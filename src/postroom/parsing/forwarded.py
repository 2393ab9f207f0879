"""Forwarded mail: recover the original message from an inline or attached forward.

Inline forwards are read with ``email-forward-parser`` (the Python port of
Crisp's email-forward-parser, Apache-2.0): it knows the separators and
header blocks of Gmail, Outlook (desktop, web, new), Apple Mail,
Thunderbird, Yahoo, iOS and others in some twenty languages, which is the
hard, data-heavy part. It is wrapped because it (a) only trusts a subject
without a forward prefix to mean "look for a separator", so a reply quoting
"-----Original Message-----" would count as a forward: replies are never
forwards here; (b) returns dates as the text the client wrote, parsed here
in EN/FR/NL/DE; (c) stops at the first level: forwards of forwards are
followed to the innermost original. ``message/rfc822`` attachments are
parsed as full messages by :func:`postroom.parsing.parse`.
"""

from __future__ import annotations

import re

from emailforwardparser.forward_parser import ForwardMetadata, MailboxResult, get_forwarded_metadata

from postroom.model import Address, Attachment, Forward, ParsedMessage
from postroom.parsing.dates import parse_loose

_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|antw|sv|ref|rép|réf|odp)\s*(?:\[\d+\])?\s*:", re.I)
_MAX_DEPTH = 5
_OPENS_WITH_HEADERS = re.compile(r"^\s*[*_]{0,2}(?:From|De|Van|Von|Fra|Från)\s*[*_]{0,2}\s*:.*\n(?:.*\n){0,2}"
                                 r"\s*[*_]{0,2}(?:Sent|Date|Envoyé|Verzonden|Gesendet|Datum|Sendt|Skickat)\s*[*_]{0,2}\s*:",
                                 re.I)


def from_text(text: str, subject: str, note_fallback: str = "",
              attachments: tuple[Attachment, ...] = ()) -> Forward | None:
    """The innermost original of an inline forward in ``text``, or None."""
    if _REPLY_PREFIX.match(subject or ""):
        return None
    meta = _metadata(text, subject)
    if meta is None:
        return None
    note = meta.message.strip() or note_fallback
    for _ in range(_MAX_DEPTH):
        inner = _metadata(meta.email.body, None)
        if inner is None:
            break
        meta = inner
    return _to_forward(meta, note, attachments)


def _metadata(text: str, subject: str | None) -> ForwardMetadata | None:
    """The library's result; a body that opens with a From:/Date: block counts as forwarded."""
    try:
        meta = get_forwarded_metadata(text, subject or None)
        if not meta.forwarded and subject:
            meta = get_forwarded_metadata(text, None)
        if not meta.forwarded and _OPENS_WITH_HEADERS.match(text):
            meta = get_forwarded_metadata(text, "Fwd: ")
    except Exception:  # regex-heavy third-party code: a failure means "not a forward"
        return None
    email = meta.email
    if not meta.forwarded or not (email.from_.address or email.from_.name or email.body.strip()):
        return None
    return meta


def _mailbox(box: MailboxResult) -> Address | None:
    if not (box.address or box.name):
        return None
    return Address(name=" ".join(box.name.split()).strip("\"' "), address=box.address.strip().lower())


def _to_forward(meta: ForwardMetadata, note: str, attachments: tuple[Attachment, ...]) -> Forward:
    email = meta.email
    return Forward(
        sender=_mailbox(email.from_),
        to=tuple(a for a in (_mailbox(b) for b in email.to) if a),
        cc=tuple(a for a in (_mailbox(b) for b in email.cc) if a),
        date=parse_loose(email.date),
        subject=email.subject.strip(),
        text=email.body.strip("\n"),
        attachments=attachments,
        note=note,
        date_text=email.date.strip(),
    )


def from_attached(parsed: ParsedMessage, note: str) -> Forward:
    """A forward made of an attached message (already parsed, innermost first)."""
    if parsed.forward is not None:
        inner = parsed.forward
        return Forward(inner.sender, inner.to, inner.cc, inner.date, inner.subject, inner.text,
                       inner.attachments, note, inner.date_text, inner.message_id)
    return Forward(
        sender=parsed.sender,
        to=parsed.to,
        cc=parsed.cc,
        date=None if parsed.date_is_fallback else parsed.date,
        subject=parsed.subject,
        text=parsed.text,
        attachments=parsed.attachments,
        note=note,
        date_text=parsed.header("Date") or "",
        message_id=parsed.message_id,
    )

