"""Staff messages in a conversation and what an outbound reply carries: its thread headers and reply address.

Called by the outbound side in its own transaction; a reply marks the customer's
messages answered and may make the replier responsible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from postroom import messageids as refs
from postroom import subjects, tokens
from postroom.errors import NotFound, PostroomError
from postroom.storage import staff
from postroom.storage.tables import Conversation, Message
from postroom.storage.tables.conversations import STATUSES
from postroom.storage.tenants import tenant_secret

KINDS = ("email", "note", "portal")


def add_staff_message(session: Session, conversation_id: int, user_id: int, *, kind: str = "email",
                      text: str = "", html: str | None = None, subject: str | None = None,
                      message_id: str | None = None, in_reply_to: Sequence[str] = (),
                      references: Sequence[str] = (), attachments: Sequence[dict] = (),
                      status: str | None = None, now: datetime | None = None) -> int:
    """Add a staff reply (email/portal) or internal note; the first replier of an unowned conversation owns it.

    Returns the message row id. A reply marks the customer's messages answered;
    a note changes nothing but the conversation's activity.
    """
    if kind not in KINDS:
        raise PostroomError(f"message kind {kind!r}: use one of {', '.join(KINDS)}")
    if status is not None and status not in STATUSES:
        raise PostroomError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    now = now or datetime.now(UTC)
    conv, user = _conversation_and_writer(session, conversation_id, user_id)
    message = Message(
        tenant_id=conv.tenant_id, conversation_id=conv.id, direction="out", kind=kind, author_user_id=user.id,
        author_name=user.name, author_email=user.email, subject=subject if subject is not None else conv.subject,
        sent_at=now, created_at=now, text=text, html=html, reply_text=text,
        message_id=refs.canonical(message_id) if message_id else None,
        in_reply_to=list(refs.merge_ids(in_reply_to)), references=list(refs.merge_ids(references)),
        attachments=list(attachments), is_read=True, flags=[], matched_via="staff",
    )
    session.add(message)
    session.flush()
    if kind != "note":
        _answered(session, conv, user.id, now)
    if status is not None:
        conv.status = status
        conv.closed_at = now if status == "closed" else None
    conv.last_activity_at = now
    conv.updated_at = now
    session.flush()
    return message.id


def _conversation_and_writer(session: Session, conversation_id: int,
                             user_id: int) -> tuple[Conversation, staff.StaffUserInfo]:
    """The conversation and the staff user writing in it: an active member of its tenant."""
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound(f"no conversation {conversation_id}")
    user = staff.get_user(session, user_id)
    if user.tenant_id != conv.tenant_id:
        raise PostroomError(f"staff user {user_id} is not of the conversation's tenant")
    if not user.active:
        raise PostroomError(f"staff user {user.email} is deactivated and cannot write in conversations")
    return conv, user


def _answered(session: Session, conv: Conversation, user_id: int, now: datetime) -> None:
    """A staff reply answers the customer's messages; its writer becomes responsible if nobody (of the team) is."""
    if conv.responsible_user_id is None and (
            conv.responsible_team_id is None or staff.is_member(session, conv.responsible_team_id, user_id)):
        conv.responsible_user_id = user_id
    session.execute(update(Message).where(Message.conversation_id == conv.id, Message.direction == "in",
                                          Message.is_answered.is_(False)).values(is_answered=True))
    conv.last_staff_at = now


@dataclass(frozen=True)
class ThreadHeaders:
    """What an outbound reply in this conversation sets: In-Reply-To, References, the tagged subject."""

    in_reply_to: str | None
    references: tuple[str, ...]
    message_ids: tuple[str, ...]
    subject: str
    reference: str


def thread_headers(session: Session, conversation_id: int) -> ThreadHeaders:
    """Message-IDs of the conversation in order; reply to the latest customer message (else the latest)."""
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound(f"no conversation {conversation_id}")
    rows = session.execute(select(Message.message_id, Message.direction).where(
        Message.conversation_id == conversation_id, Message.message_id.is_not(None)).order_by(Message.id)).all()
    ids = tuple(mid for mid, _ in rows)
    inbound_ids = [mid for mid, direction in rows if direction == "in"]
    parent = inbound_ids[-1] if inbound_ids else (ids[-1] if ids else None)
    return ThreadHeaders(parent, refs.thread_references(ids), ids, subjects.tag_subject(conv.subject, conv.reference),
                         conv.reference)


def reply_address(session: Session, conversation_id: int, tenant_domain: str, contact_id: int | None = None) -> str:
    """``reply+<token>@<tenant domain>`` for the conversation's contact (or ``contact_id``)."""
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound(f"no conversation {conversation_id}")
    contact = contact_id if contact_id is not None else conv.contact_id
    if contact is None:
        raise PostroomError(f"conversation {conversation_id} has no contact to address")
    return tokens.make_reply_address(tenant_secret(session, conv.tenant_id), tenant_domain, conv.id, contact)
