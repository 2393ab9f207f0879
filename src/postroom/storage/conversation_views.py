"""What people and exports read about conversations: summaries, messages, events, the inbox, a tenant's dump.

Read-only views returning frozen dataclasses; ORM rows never leave storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from postroom import messageids as refs
from postroom.errors import NotFound, PostroomError
from postroom.storage.db import aware
from postroom.storage.tables import Contact, ContactAddress, Conversation, Message, NotificationEvent, Tenant
from postroom.storage.tables.conversations import STATUSES


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    tenant_id: int
    reference: str
    subject: str
    status: str
    category: str | None
    contact_id: int | None
    contact_email: str | None
    contact_name: str
    responsible_user_id: int | None
    responsible_team_id: int | None
    unit_ref: str | None
    tags: tuple[str, ...]
    flags: tuple[str, ...]
    created_at: datetime
    last_activity_at: datetime
    last_customer_at: datetime | None
    last_staff_at: datetime | None
    message_count: int
    follows_id: int | None = None


@dataclass(frozen=True)
class MessageView:
    id: int
    conversation_id: int | None
    direction: str
    kind: str
    author_name: str
    author_email: str
    author_contact_id: int | None
    author_user_id: int | None
    subject: str
    sent_at: datetime | None
    created_at: datetime
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    reply_text: str
    text: str
    flags: tuple[str, ...]
    matched_via: str
    is_read: bool
    is_answered: bool
    attachments: tuple[dict, ...]
    inbound_id: int | None
    forward: dict | None = None
    forwarded_by: str | None = None
    suggestions: tuple[int, ...] = ()
    similar_contacts: tuple[dict, ...] = ()


@dataclass(frozen=True)
class EventView:
    id: int
    kind: str
    recipient_type: str
    recipient_id: int | None
    conversation_id: int | None
    message_id: int | None
    payload: dict = field(default_factory=dict)
    delivered_at: datetime | None = None


def _tenant_id(session: Session, slug: str) -> int:
    found = session.scalar(select(Tenant.id).where(Tenant.slug == slug.lower()))
    if found is None:
        raise NotFound(f"no tenant {slug!r}; create it with: postroom tenant add {slug}")
    return found


def primary_addresses(session: Session, contact_ids: set[int]) -> dict[int, str]:
    if not contact_ids:
        return {}
    rows = session.execute(select(ContactAddress.contact_id, ContactAddress.address)
                           .where(ContactAddress.contact_id.in_(contact_ids))
                           .order_by(ContactAddress.primary.desc(), ContactAddress.id.desc()))
    return {cid: address for cid, address in rows}


def _summaries(session: Session, convs: Sequence[Conversation]) -> list[ConversationSummary]:
    ids = [c.id for c in convs]
    counts = dict(session.execute(select(Message.conversation_id, func.count()).where(
        Message.conversation_id.in_(ids)).group_by(Message.conversation_id)).all()) if ids else {}
    contact_ids = {c.contact_id for c in convs if c.contact_id is not None}
    emails = primary_addresses(session, contact_ids)
    names = dict(session.execute(select(Contact.id, Contact.name).where(Contact.id.in_(contact_ids))).all()) \
        if contact_ids else {}
    return [ConversationSummary(
        c.id, c.tenant_id, c.reference, c.subject, c.status, c.category, c.contact_id, emails.get(c.contact_id),
        names.get(c.contact_id, ""), c.responsible_user_id, c.responsible_team_id, c.unit_ref, tuple(c.tags or ()),
        tuple(c.flags or ()), aware(c.created_at), aware(c.last_activity_at), aware(c.last_customer_at),
        aware(c.last_staff_at), counts.get(c.id, 0), c.follows_id) for c in convs]


def summaries(session: Session, conversation_ids: Sequence[int]) -> list[ConversationSummary]:
    """Summaries in the order of ``conversation_ids`` (for queries built by other storage modules)."""
    convs = {c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(list(conversation_ids))))}
    return _summaries(session, [convs[i] for i in conversation_ids if i in convs])


def _view(m: Message) -> MessageView:
    return MessageView(
        m.id, m.conversation_id, m.direction, m.kind, m.author_name, m.author_email, m.author_contact_id,
        m.author_user_id, m.subject, aware(m.sent_at), aware(m.created_at), m.message_id, tuple(m.in_reply_to or ()),
        tuple(m.references or ()), m.reply_text, m.text, tuple(m.flags or ()), m.matched_via, m.is_read,
        m.is_answered, tuple(m.attachments or ()), m.inbound_id, m.forward, m.forwarded_by,
        tuple(m.suggestions or ()), tuple(m.similar_contacts or ()))


def list_conversations(session: Session, tenant: str, *, status: str | None = None,
                       limit: int = 100) -> list[ConversationSummary]:
    """Most recently active first (a reopened conversation is back at the top)."""
    if status is not None and status not in STATUSES:
        raise PostroomError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    stmt = (select(Conversation).where(Conversation.tenant_id == _tenant_id(session, tenant))
            .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc()).limit(limit))
    if status:
        stmt = stmt.where(Conversation.status == status)
    return _summaries(session, list(session.scalars(stmt)))


def get_conversation(session: Session, conversation_id: int) -> tuple[ConversationSummary, list[MessageView]]:
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound(f"no conversation {conversation_id}; list them with: postroom conversations list --tenant T")
    messages = session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                               .order_by(Message.id))
    return _summaries(session, [conv])[0], [_view(m) for m in messages]


def get_message(session: Session, message_row: int) -> MessageView:
    message = session.get(Message, message_row)
    if message is None:
        raise NotFound(f"no message {message_row}")
    return _view(message)


def message_row_by_header(session: Session, tenant_id: int, message_id: str) -> int | None:
    mid = refs.canonical(message_id)
    return session.scalar(select(Message.id).where(Message.tenant_id == tenant_id, Message.message_id == mid)) \
        if mid else None


def list_inbox(session: Session, tenant: str, *, limit: int = 100) -> list[MessageView]:
    """The tenant's unsorted inbox, newest first."""
    stmt = (select(Message).where(Message.tenant_id == _tenant_id(session, tenant), Message.conversation_id.is_(None))
            .order_by(Message.id.desc()).limit(limit))
    return [_view(m) for m in session.scalars(stmt)]


def dump(session: Session, tenant: str) -> list[dict]:
    """One JSON-ready object per conversation: id, reference, subject, status, contact, message_ids (in order)."""
    tenant_id = _tenant_id(session, tenant)
    convs = list(session.scalars(select(Conversation).where(Conversation.tenant_id == tenant_id)
                                 .order_by(Conversation.id)))
    ids: dict[int, list[str]] = {c.id: [] for c in convs}
    rows = session.execute(select(Message.conversation_id, Message.message_id).where(
        Message.tenant_id == tenant_id, Message.conversation_id.is_not(None), Message.message_id.is_not(None))
        .order_by(Message.id))
    for cid, mid in rows:
        ids.setdefault(cid, []).append(mid)
    emails = primary_addresses(session, {c.contact_id for c in convs if c.contact_id is not None})
    return [{"id": c.id, "reference": c.reference, "subject": c.subject, "status": c.status,
             "contact": emails.get(c.contact_id), "message_ids": ids.get(c.id, [])} for c in convs]


def events(session: Session, tenant_id: int, *, pending_only: bool = False,
           conversation_id: int | None = None) -> list[EventView]:
    stmt = select(NotificationEvent).where(NotificationEvent.tenant_id == tenant_id).order_by(NotificationEvent.id)
    if pending_only:
        stmt = stmt.where(NotificationEvent.delivered_at.is_(None))
    if conversation_id is not None:
        stmt = stmt.where(NotificationEvent.conversation_id == conversation_id)
    return [EventView(e.id, e.kind, e.recipient_type, e.recipient_id, e.conversation_id, e.message_id,
                      dict(e.payload or {}), aware(e.delivered_at)) for e in session.scalars(stmt)]


def mark_events_delivered(session: Session, event_ids: Sequence[int]) -> None:
    if event_ids:
        session.execute(update(NotificationEvent).where(NotificationEvent.id.in_(list(event_ids)))
                        .values(delivered_at=datetime.now(UTC)))
