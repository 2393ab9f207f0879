"""Stage contracts: small frozen dataclasses passed between stages.

No I/O here. Every stage takes and returns these, so any stage can be
called from a test without a broker, an SMTP server or (mostly) a database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Address:
    """A mailbox: display name (may be empty) and lower-cased addr-spec."""

    name: str
    address: str

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class Envelope:
    """What the SMTP session (or an ingest command) knew about a message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    peer: str = ""
    helo: str = ""
    received_at: datetime | None = None


@dataclass(frozen=True)
class Attachment:
    """One attachment; the bytes travel beside it and go to the blob store."""

    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool = False
    content_id: str | None = None
    detected_type: str | None = None
    flags: tuple[str, ...] = ()
    data: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class Forward:
    """The original message recovered from an inline or attached forward."""

    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None
    subject: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    note: str = ""
    date_text: str = ""
    message_id: str | None = None


@dataclass(frozen=True)
class AutoReply:
    reason: str


@dataclass(frozen=True)
class Bounce:
    permanent: tuple[str, ...]
    temporary: tuple[str, ...]
    original_message_id: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class ParsedMessage:
    """Everything later stages read about one inbound message."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    date: datetime
    sender: Address | None
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    text: str = ""
    html: str | None = None
    reply_text: str = ""
    quoted_text: str = ""
    signature: str = ""
    attachments: tuple[Attachment, ...] = ()
    forward: Forward | None = None
    auto_reply: AutoReply | None = None
    bounce: Bounce | None = None
    defects: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    date_is_fallback: bool = False
    list_id: str | None = None
    authentication_results: tuple[str, ...] = ()
    size: int = 0
    sender_header: Address | None = None
    auto_submitted: str | None = None
    #: Fields cut by the parsing stage's cost bounds (postroom.parsing.limits); the raw mail is whole.
    truncated: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitive, or None."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


@dataclass(frozen=True)
class ConversationUpdate:
    """What the rules change on an existing conversation: ``set`` overrides, ``fill`` only sets empty fields.

    Built by the rules stage, applied by storage; here so that neither imports the other.
    """

    tags: tuple[str, ...] = ()
    set: dict[str, object] | None = None
    fill: dict[str, object] | None = None


def to_jsonable(value: Any) -> Any:
    """Turn contracts into JSON-ready data (dates ISO 8601, bytes dropped)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is tuple or kind is list:
        return _items_to_jsonable(value)
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return _fields_to_jsonable(value, names)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return _items_to_jsonable(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def _items_to_jsonable(value: tuple | list) -> list:
    return [v if type(v) in _PLAIN else to_jsonable(v) for v in value]


def _fields_to_jsonable(value: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        item = getattr(value, name)
        if type(item) in _PLAIN:
            out[name] = item
        elif not isinstance(item, bytes):
            out[name] = to_jsonable(item)
    return out


#: Types returned as they are, checked first: most values of a ParsedMessage are strings or None (then tuples).
_PLAIN = frozenset({str, int, float, bool, type(None)})
#: Field names per dataclass: ``dataclasses.fields`` rebuilds its tuple on every call (~3 per field here).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
