"""Bounces: failed recipients (flufl.bounce) and the original Message-ID.

flufl.bounce (GNU Mailman's detectors) knows RFC 3464 DSNs and some thirty
non-standard MTA formats. Its detectors are heuristics and a few match
ordinary mail, so they only run on messages that look like a bounce
(a delivery-status part, an X-Failed-Recipients header, a
mailer-daemon/postmaster sender, or a bounce subject). Two plain-text forms
it misses (or reads only partly) are added here: Exim's "The following
address(es) failed:" block (wrapped, ``addr:`` with the reason below, or
"(generated from addr)" for an alias) and one-line "Delivery failed …: addr".
It reads the same compat32 message tree the rest of the stage uses (the
policy it is tested with), so the bytes are parsed once.
"""

from __future__ import annotations

import logging
import re
from email.message import Message

from flufl.bounce import all_failures

from postroom.model import Bounce
from postroom.parsing import headers, html, mime

logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery|mdaemon|mailerdaemon|bounce", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status|failure|failed|notification|report|problem)|returned mail|"
    r"failure notice|mail delivery|could not be delivered|nondeliverable|non-deliver|delayed mail|"
    r"warning: could not send|message not delivered|rejected|unzustellbar|non remis|onbestelbaar|"
    r"niet bezorgd|nicht zugestellt|échec de la remise|returned to sender|delivery has failed",
    re.I,
)
_MAX_TEXT = 100_000
_DSN_TYPES = ("multipart/report", "message/delivery-status")
_ADDR = r"[^\s<>()\"'@,;:]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_EXIM_INTRO = re.compile(r"following\s+address(?:es|\(es\))?\s+failed\s*:", re.I)
#: An Exim block line naming a failed address: "  addr", "  <addr>", "addr:" or "(generated from addr)".
_EXIM_ADDRESS = re.compile(rf"^\s*(?:<?({_ADDR})>?\s*:?|\((?:generated|expanded) from:?\s*<?({_ADDR})>?\))\s*$", re.M)
#: Postfix names the address it was given beside the one an alias expanded to: "<final> (expanded from <given>): …".
#: The given one is the address the sender knows, so it is the one reported.
_EXPANDED = re.compile(rf"^\s*<?{_ADDR}>?\s*\(expanded from\s*<?({_ADDR})>?\)\s*:", re.I | re.M)
_TEMPORARY = re.compile(r"[^\n]{0,80}\b(?:temporary|temporarily|deferred|delayed|still trying|try again)", re.I)
_DELIVERY_FAILED = re.compile(rf"^\s*Delivery (?:has )?failed\b[^:\n]{{0,60}}:\s*<?({_ADDR})>?\s*\.?\s*$", re.I | re.M)
#: Where the returned original starts: nothing below it is about the failure.
_ORIGINAL_STARTS = re.compile(
    r"^.*(?:copy of the (?:original )?message|original message follows|header of the original message|"
    r"original message details|message text follows).*$",
    re.I | re.M,
)
_MESSAGE_ID = re.compile(r"^\s*Message-ID\s*:\s*(<[^<>\s]+>)", re.I | re.M)


def looks_like_bounce(msg: Message, sender: str, subject: str) -> bool:
    """Cheap signals first; the part walk only for multipart mail (a DSN may sit in multipart/mixed)."""
    if _BOUNCE_SENDER.search(sender or "") or _BOUNCE_SUBJECT.search(subject or ""):
        return True
    if mime.content_type(msg) in _DSN_TYPES or msg.get("X-Failed-Recipients"):
        return True
    return msg.is_multipart() and any(mime.content_type(p) in _DSN_TYPES for p in msg.walk())


def detect(msg: Message, sender: str, subject: str) -> Bounce | None:
    """A Bounce with the failed recipients, or None when this is not a bounce."""
    if not looks_like_bounce(msg, sender, subject):
        return None
    temporary, permanent = _failures(msg)
    permanent |= _text_failures(msg) - temporary
    if not temporary and not permanent:
        return None
    own_id = headers.raw_header(msg, "Message-ID")
    return Bounce(
        permanent=tuple(sorted(permanent)),
        temporary=tuple(sorted(temporary - permanent)),
        original_message_id=original_message_id(msg, own_id),
        status=_status(msg),
    )


def _failures(msg: Message) -> tuple[set[str], set[str]]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd mail must not lose the message
        return set(), set()
    return _addresses(temporary), _addresses(permanent)


def _text_failures(msg: Message) -> set[str]:
    """Permanent failures stated in the first text part, above the returned original."""
    text = _notice_text(msg)
    cut = _ORIGINAL_STARTS.search(text)
    text = text[: cut.start()] if cut else text
    found = {m.group(1) for m in _DELIVERY_FAILED.finditer(text)}
    if not any(mime.content_type(p) == "message/delivery-status" for p in msg.walk()):
        # a notice without a delivery-status part: its text is all there is (with one, the DSN says which
        # failures are temporary)
        found |= {m.group(1) for m in _EXPANDED.finditer(text) if not _TEMPORARY.match(text, m.end())}
    intro = _EXIM_INTRO.search(text)
    if intro:
        found |= {m.group(1) or m.group(2) for m in _EXIM_ADDRESS.finditer(text, intro.end())}
    return _addresses(found)


def _notice_text(msg: Message) -> str:
    """The first text/plain part, else the first text/html part rendered to text (HTML-only notices)."""
    leaves = [p for p in mime.walk_leaves(msg) if mime.content_type(p) in ("text/plain", "text/html")]
    plain = next((p for p in leaves if mime.content_type(p) == "text/plain"), None)
    if plain is not None:
        return mime.part_text(plain)[:_MAX_TEXT]
    if not leaves:
        return ""
    return html.render(mime.part_text(leaves[0])[:_MAX_TEXT]).text


def _addresses(found) -> set[str]:
    out = set()
    for item in found:
        text = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
        text = text.strip().strip("<>").strip().lower()
        if "@" in text:
            out.add(text)
    return out


def original_message_id(msg: Message, own_id: str | None) -> str | None:
    """The returned message's Message-ID: from the attached message or headers, else the text."""
    for part in msg.walk():
        ctype = mime.content_type(part)
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else None
            value = headers.raw_header(inner, "Message-ID") if isinstance(inner, Message) else None
            if value and value.strip():
                return value.strip()
        elif ctype == "text/rfc822-headers":
            found = _MESSAGE_ID.search(mime.part_text(part))
            if found:
                return found.group(1)
    for part in mime.walk_leaves(msg):
        if mime.content_type(part).startswith("text/"):
            for found in _MESSAGE_ID.finditer(mime.part_text(part)):
                if found.group(1) != (own_id or "").strip():
                    return found.group(1)
    return None


def _status(msg: Message) -> str | None:
    for part in msg.walk():
        if mime.content_type(part) == "message/delivery-status":
            found = re.search(r"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", _delivery_status_text(part), re.M | re.I)
            if found:
                return found.group(1)
    return None


def _delivery_status_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n".join(str(p) for p in payload)
    return mime.part_text(part)
