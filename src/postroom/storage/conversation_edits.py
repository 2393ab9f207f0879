"""Staff edits of conversations: status, category, subject, responsible (one or many at once), mark read.

One verb serves a single conversation and a bulk change, so both check the
same things: every conversation and the new responsible user or team belong
to the caller's tenant, or nothing changes at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage import conversations
from postroom.storage.tables import Conversation, Message, StaffUser, Team
from postroom.storage.tables.conversations import STATUSES

EDITABLE = ("status", "category", "subject", "responsible_user_id", "responsible_team_id")
MAX_BULK = 500
MAX_CATEGORY = 100
MAX_SUBJECT = 2000


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise PostroomError(f"status {value!r}: use one of {', '.join(STATUSES)}")
    return value


def _category(value: Any) -> str | None:
    """Trimmed; blank clears the category."""
    category = (value or "").strip()
    if len(category) > MAX_CATEGORY:
        raise PostroomError(f"a category has at most {MAX_CATEGORY} characters")
    return category or None


def _subject(value: Any) -> str:
    """White space collapsed; a subject is never blank."""
    subject = " ".join((value or "").split())
    if not subject or len(subject) > MAX_SUBJECT:
        raise PostroomError(f"a subject needs 1 to {MAX_SUBJECT} characters")
    return subject


_NORMALISED = {"status": _status, "category": _category, "subject": _subject}


def _check_responsible(session: Session, tenant_id: int, checked: dict[str, Any]) -> None:
    """A new responsible user is active and a new responsible team exists, both in the caller's tenant."""
    user = checked.get("responsible_user_id")
    if user is not None and session.scalar(select(StaffUser.tenant_id).where(
            StaffUser.id == user, StaffUser.active.is_(True))) != tenant_id:
        raise PostroomError(f"no active staff user {user} in this tenant")
    team = checked.get("responsible_team_id")
    if team is not None and session.scalar(select(Team.tenant_id).where(Team.id == team)) != tenant_id:
        raise PostroomError(f"no team {team} in this tenant")


def _check(session: Session, tenant_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise PostroomError(f"cannot change {', '.join(sorted(unknown))}; editable: {', '.join(EDITABLE)}")
    checked = dict(changes)
    for name, normalised in _NORMALISED.items():
        if name in checked:
            checked[name] = normalised(checked[name])
    _check_responsible(session, tenant_id, checked)
    return checked


def _tenant_conversations(session: Session, tenant_id: int, ids: list[int]) -> dict[int, Conversation]:
    """Every conversation asked for, or NotFound naming the ones the tenant does not have."""
    convs = {c.id: c for c in session.scalars(select(Conversation).where(Conversation.tenant_id == tenant_id,
                                                                          Conversation.id.in_(ids)))}
    missing = [i for i in ids if i not in convs]
    if missing:
        raise NotFound(f"no conversation {', '.join(map(str, missing))}")
    return convs


def _apply(conv: Conversation, checked: dict[str, Any], now: datetime) -> None:
    """Write the checked keys; a status that changes sets or clears ``closed_at``."""
    if "status" in checked and checked["status"] != conv.status:
        conv.status = checked["status"]
        conv.closed_at = now if conv.status == "closed" else None
    for name in ("category", "subject", "responsible_user_id", "responsible_team_id"):
        if name in checked:
            setattr(conv, name, checked[name])
    conv.updated_at = now


def update_conversations(session: Session, tenant_id: int, conversation_ids: Sequence[int], *,
                         now: datetime | None = None, **changes: Any) -> list[int]:
    """Apply the same changes to the tenant's conversations; all or nothing.

    Only the keys given change (``responsible_user_id=None`` un-assigns). The
    subject key used by threading stays as the customer's mail had it, so a
    customer replying under the old subject still finds the conversation.
    A newly assigned user gets an ``assigned`` event.
    """
    ids = list(dict.fromkeys(conversation_ids))
    if not ids:
        return []
    if len(ids) > MAX_BULK:
        raise PostroomError(f"at most {MAX_BULK} conversations at once")
    checked = _check(session, tenant_id, changes)
    convs = _tenant_conversations(session, tenant_id, ids)
    now = now or datetime.now(UTC)
    assignee = checked.get("responsible_user_id")
    for conv_id in ids:
        conv = convs[conv_id]
        newly_assigned = assignee is not None and assignee != conv.responsible_user_id
        _apply(conv, checked, now)
        if newly_assigned:
            conversations.add_event(session, tenant_id, "assigned", "user", conv.responsible_user_id,
                                    conversation_id=conv.id, reference=conv.reference, subject=conv.subject)
    session.flush()
    return ids


def mark_conversation_read(session: Session, conversation_id: int, read: bool = True) -> int:
    """Mark every message of the conversation read (or unread); the number of messages that changed."""
    result = session.execute(update(Message).where(Message.conversation_id == conversation_id,
                                                   Message.is_read != read).values(is_read=read))
    return result.rowcount or 0
