"""Outbound contracts: what rendering needs, what it produces, what a transport returns.

Frozen dataclasses only. The context carries exactly what may leave postroom:
there is no field for internal notes, conversation status, assignee or
categories, so no template (built-in or tenant override) can leak them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from postroom.rendered import AttachmentRef

Kind = Literal["reply", "ack", "auto_reply", "notification", "move_notice", "staff_notice", "staff_digest"]
Channel = Literal["email", "portal"]

KINDS: tuple[str, ...] = ("reply", "ack", "auto_reply", "notification", "move_notice", "staff_notice",
                          "staff_digest")
AUTOMATIC_KINDS = frozenset({"ack", "auto_reply", "move_notice", "staff_notice", "staff_digest"})


@dataclass(frozen=True)
class Brand:
    """The tenant as customers see it."""

    slug: str
    name: str
    domain: str
    locale: str = "en"
    sender: str | None = None
    portal_url: str | None = None


@dataclass(frozen=True)
class Staff:
    name: str
    email: str
    signature_text: str = ""
    signature_html: str = ""


@dataclass(frozen=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True)
class QuotedMessage:
    """One earlier public message shown under a reply (customer mail or staff reply, never a note)."""

    author: str
    sent_at: datetime
    text: str


@dataclass(frozen=True)
class OutboundContext:
    """Everything a template may use for one outbound message.

    ``template`` names another template set than the kind's own (a rule's ``auto_reply: <name>``).
    """

    kind: str
    tenant: Brand
    recipient: Person
    subject: str
    reference: str
    text: str = ""
    staff: Staff | None = None
    conversation_id: int | None = None
    reply_address: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[AttachmentRef, ...] = ()
    history: tuple[QuotedMessage, ...] = ()
    portal_link: str | None = None
    template: str | None = None
