"""Reading notification events the way a portal delivers them: one tenant, optionally one staff user.

A user's events are the ones addressed to them and to the teams they are a
member of. An event has one ``delivered_at``: a team event delivered to one
member counts as delivered for the team.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from postroom.errors import NotFound
from postroom.storage.conversation_views import EventView
from postroom.storage.db import aware
from postroom.storage.tables import NotificationEvent, TeamMember

RECIPIENT_TYPES = ("user", "team", "tenant", "contact", "operator")


def list_events(session: Session, tenant_id: int, *, user_id: int | None = None, recipient_type: str | None = None,
                pending_only: bool = False, after_id: int = 0, limit: int = 100) -> list[EventView]:
    """Oldest first from ``after_id`` on, so a poller can page with the last id it saw."""
    stmt = (select(NotificationEvent).where(NotificationEvent.tenant_id == tenant_id, NotificationEvent.id > after_id)
            .order_by(NotificationEvent.id).limit(limit))
    if user_id is not None:
        teams = select(TeamMember.team_id).where(TeamMember.user_id == user_id)
        stmt = stmt.where(or_(
            and_(NotificationEvent.recipient_type == "user", NotificationEvent.recipient_id == user_id),
            and_(NotificationEvent.recipient_type == "team", NotificationEvent.recipient_id.in_(teams))))
    if recipient_type is not None:
        stmt = stmt.where(NotificationEvent.recipient_type == recipient_type)
    if pending_only:
        stmt = stmt.where(NotificationEvent.delivered_at.is_(None))
    return [EventView(e.id, e.kind, e.recipient_type, e.recipient_id, e.conversation_id, e.message_id,
                      dict(e.payload or {}), aware(e.delivered_at)) for e in session.scalars(stmt)]


def mark_delivered(session: Session, tenant_id: int, event_ids: Sequence[int]) -> list[int]:
    """Mark the tenant's events delivered (idempotent); any id not of this tenant refuses the whole call."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return []
    own = set(session.scalars(select(NotificationEvent.id).where(NotificationEvent.tenant_id == tenant_id,
                                                                 NotificationEvent.id.in_(ids))))
    missing = [i for i in ids if i not in own]
    if missing:
        raise NotFound(f"no notification event {', '.join(map(str, missing))}")
    session.execute(update(NotificationEvent).where(NotificationEvent.id.in_(ids),
                                                    NotificationEvent.delivered_at.is_(None))
                    .values(delivered_at=datetime.now(UTC)))
    return ids
