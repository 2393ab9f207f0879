"""Storage verbs of the rules stage: the auto-reply rate, decisions on existing conversations, discard retention.

Kept apart from conversations.py (the threading stage's verbs) so each stage
owns its writes; everything runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from postroom.model import ConversationUpdate
from postroom.storage import staff
from postroom.storage.tables import Contact, Conversation, InboundMessage, OutboundMessage, OutboundRecipient

AUTOMATIC_KINDS = ("auto_reply", "ack")


def auto_replied_since(session: Session, tenant_id: int, address: str, since: datetime) -> bool:
    """Whether the tenant queued an automatic answer to ``address`` since ``since`` (queued rows count too)."""
    found = session.scalar(
        select(func.count()).select_from(OutboundMessage).join(OutboundRecipient)
        .where(OutboundMessage.tenant_id == tenant_id, OutboundMessage.kind.in_(AUTOMATIC_KINDS),
               OutboundMessage.created_at >= since, OutboundRecipient.address == address.lower())
    )
    return bool(found)


def contact_attributes(session: Session, contact_id: int | None) -> dict[str, str]:
    """What a rule's ``contact: { attribute: ... }`` can test: the contact's name and unit reference."""
    contact = session.get(Contact, contact_id) if contact_id is not None else None
    if contact is None:
        return {}
    return {k: v for k, v in (("name", contact.name), ("unit", contact.unit_ref or "")) if v}


def update_conversation(session: Session, conversation_id: int, change: ConversationUpdate) -> None:
    """Apply a rules decision to an existing conversation (keys: category, unit, status, assign)."""
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return
    if change.tags:
        conv.tags = sorted({*(conv.tags or []), *change.tags})
    for values, override in ((change.fill or {}, False), (change.set or {}, True)):
        for key, value in values.items():
            if key == "category" and (override or not conv.category):
                conv.category = str(value)
            elif key == "unit" and (override or not conv.unit_ref):
                conv.unit_ref = str(value)
            elif key == "status" and override:
                conv.status = str(value)
            elif key == "assign" and (override or (conv.responsible_user_id is None
                                                   and conv.responsible_team_id is None)):
                _assign(session, conv, value)
    session.flush()


def _assign(session: Session, conv: Conversation, assign: object) -> None:
    kind, value = getattr(assign, "kind", None), str(getattr(assign, "value", ""))
    if kind == "user":
        user = staff.user_by_email(session, conv.tenant_id, value)
        if user is not None and user.active:  # a deactivated user is never assigned
            conv.responsible_user_id, conv.responsible_team_id = user.id, None
    elif kind == "team":
        team = staff.team_by_name(session, conv.tenant_id, value)
        if team is not None:
            conv.responsible_team_id, conv.responsible_user_id = team.id, None


def purge_discarded(session: Session, *, older_than: timedelta, now: datetime | None = None,
                    limit: int = 500) -> Sequence[int]:
    """Delete discarded inbound rows whose retention has run out (counted from their last change); their ids.

    Only ``discarded`` rows are touched, and only once ``older_than`` has
    passed since the row was last updated, so nothing goes before its time.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    ids = list(session.scalars(
        select(InboundMessage.id).where(InboundMessage.status == "discarded", InboundMessage.updated_at < cutoff)
        .order_by(InboundMessage.id).limit(limit)
    ))
    if ids:
        session.execute(delete(InboundMessage).where(InboundMessage.id.in_(ids),
                                                     InboundMessage.status == "discarded"))
    return ids
