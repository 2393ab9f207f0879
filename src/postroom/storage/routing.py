"""Storage verbs of the rules stage: the auto-reply rate, decisions on existing conversations, discard retention.

Kept apart from conversations.py (the threading stage's verbs) so each stage
owns its writes; everything runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from postroom.model import ConversationUpdate
from postroom.statuses import InboundStatus
from postroom.storage import staff
from postroom.storage.tables import Contact, Conversation, InboundMessage, OutboundMessage, OutboundRecipient
from postroom.storage.tables.conversations import STATUSES

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


_DECIDED_COLUMNS = ("tags", "category", "unit_ref", "status", "responsible_user_id", "responsible_team_id")


def update_conversation(session: Session, conversation_id: int, change: ConversationUpdate) -> None:
    """Apply a rules decision to an existing conversation (keys: category, unit, status, assign)."""
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return
    current = {name: getattr(conv, name) for name in _DECIDED_COLUMNS}
    for name, value in decided_values(session, conv.tenant_id, current, change).items():
        setattr(conv, name, value)
    session.flush()


def decided_values(session: Session, tenant_id: int, current: Mapping[str, Any],
                   change: ConversationUpdate) -> dict[str, Any]:
    """The columns a rules decision changes, given the conversation's ``current`` ones: the one way a decision
    applies, to a conversation being created (everything in ``set``) or an existing one.

    Tags add up; ``fill`` only sets what is still empty; a status outside the known ones is ignored.
    """
    out: dict[str, Any] = {}
    if change.tags:
        out["tags"] = sorted({*(current.get("tags") or []), *change.tags})
    for values, override in ((change.fill or {}, False), (change.set or {}, True)):
        seen = {**current, **out}
        for key, value in values.items():
            if override or _still_empty(key, seen):
                out.update(_decided(session, tenant_id, seen, key, value))
    return out


_TEXT_COLUMNS = {"category": "category", "unit": "unit_ref"}


def _still_empty(key: str, seen: Mapping[str, Any]) -> bool:
    """Whether ``fill`` may set ``key``; a status is never empty, so ``fill`` leaves it alone."""
    if key == "assign":
        return seen.get("responsible_user_id") is None and seen.get("responsible_team_id") is None
    column = _TEXT_COLUMNS.get(key)
    return column is not None and not seen.get(column)


def _decided(session: Session, tenant_id: int, seen: Mapping[str, Any], key: str, value: object) -> dict[str, Any]:
    """The columns one decided ``key`` writes; an unknown key or status writes none."""
    if key in _TEXT_COLUMNS:
        return {_TEXT_COLUMNS[key]: str(value)}
    if key == "status":
        return {"status": str(value)} if value in STATUSES else {}
    if key == "assign":
        return _responsible(session, tenant_id, seen, value)
    return {}


def _responsible(session: Session, tenant_id: int, current: Mapping[str, Any], assign: object) -> dict[str, Any]:
    """Who becomes responsible: a user keeps the responsible team only if they are one of its members, and a
    team keeps the responsible user only if that user is a member; a deactivated user is never assigned."""
    kind, value = getattr(assign, "kind", None), str(getattr(assign, "value", ""))
    team_id, user_id = current.get("responsible_team_id"), current.get("responsible_user_id")
    if kind == "user":
        user = staff.user_by_email(session, tenant_id, value)
        if user is None or not user.active:
            return {}
        keep = team_id is not None and staff.is_member(session, team_id, user.id)
        return {"responsible_user_id": user.id, "responsible_team_id": team_id if keep else None}
    if kind == "team":
        team = staff.team_by_name(session, tenant_id, value)
        if team is None:
            return {}
        keep = user_id is not None and staff.is_member(session, team.id, user_id)
        return {"responsible_team_id": team.id, "responsible_user_id": user_id if keep else None}
    return {}


def purge_discarded(session: Session, *, older_than: timedelta, now: datetime | None = None,
                    limit: int = 500) -> Sequence[int]:
    """Delete discarded inbound rows whose retention has run out (counted from their last change); their ids.

    Only ``discarded`` rows are touched, and only once ``older_than`` has
    passed since the row was last updated, so nothing goes before its time.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    ids = list(session.scalars(
        select(InboundMessage.id)
        .where(InboundMessage.status == InboundStatus.DISCARDED, InboundMessage.updated_at < cutoff)
        .order_by(InboundMessage.id).limit(limit)
    ))
    if ids:
        session.execute(delete(InboundMessage).where(InboundMessage.id.in_(ids),
                                                     InboundMessage.status == InboundStatus.DISCARDED))
    return ids
