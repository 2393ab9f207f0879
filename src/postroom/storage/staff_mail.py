"""Staff mail settings and the events still to be mailed: plain verbs for ``postroom.outbound.staff_mail``.

Every read is bounded to one tenant: a user's events are the tenant's events
addressed to them or to a team of that tenant they belong to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage.conversation_views import EventView
from postroom.storage.tables import Message, NotificationEvent, StaffMailSetting, StaffUser, Team, TeamMember

MODES = ("off", "immediate", "digest")
MAILED_KINDS = ("new_conversation", "customer_message", "mention", "assigned", "delivery_failed")
DEFAULT_EVERY = 60


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class MailSetting:
    user_id: int
    tenant_id: int
    email: str
    name: str
    mode: str
    every_minutes: int
    after_event_id: int
    last_mailed_at: datetime | None


@dataclass(frozen=True)
class MessageGist:
    """What a notification may show of a message: its kind decides whether the text may be shown at all."""

    id: int
    kind: str
    direction: str
    author_name: str
    author_email: str
    text: str


def get_setting(session: Session, tenant_id: int, user_id: int) -> MailSetting:
    """The user's setting (``off`` when never set); NotFound for a user of another tenant."""
    user = session.get(StaffUser, user_id)
    if user is None or user.tenant_id != tenant_id:
        raise NotFound(f"no staff user {user_id}")
    row = session.get(StaffMailSetting, user_id)
    if row is None:
        return MailSetting(user.id, tenant_id, user.email, user.name, "off", DEFAULT_EVERY, 0, None)
    return MailSetting(user.id, tenant_id, user.email, user.name, row.mode, row.every_minutes, row.after_event_id,
                       _aware(row.last_mailed_at))


def set_mode(session: Session, tenant_id: int, user_id: int, mode: str, every_minutes: int | None = None
             ) -> MailSetting:
    """Turn mail on (from the newest event on: no backlog), off, or change the digest interval."""
    if mode not in MODES:
        raise PostroomError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if every_minutes is not None and not 1 <= every_minutes <= 7 * 24 * 60:
        raise PostroomError(f"--every {every_minutes}: minutes between digests, from 1 to 10080 (a week)")
    if every_minutes is not None and mode != "digest":
        raise PostroomError("--every applies to --mode digest only")
    before = get_setting(session, tenant_id, user_id)
    row = session.get(StaffMailSetting, user_id)
    if row is None:
        row = StaffMailSetting(user_id=user_id, tenant_id=tenant_id, mode="off", every_minutes=DEFAULT_EVERY,
                               after_event_id=0)
        session.add(row)
    if before.mode == "off" and mode != "off":
        newest = session.scalar(select(func.max(NotificationEvent.id)).where(NotificationEvent.tenant_id == tenant_id))
        row.after_event_id = newest or 0
        row.last_mailed_at = datetime.now(UTC)
    row.mode = mode
    if every_minutes is not None:
        row.every_minutes = every_minutes
    session.flush()
    return get_setting(session, tenant_id, user_id)


def mail_on(session: Session) -> list[MailSetting]:
    """Every active user of every tenant with mail on."""
    rows = session.execute(select(StaffMailSetting, StaffUser.email, StaffUser.name)
                           .join(StaffUser, StaffUser.id == StaffMailSetting.user_id)
                           .where(StaffMailSetting.mode != "off", StaffUser.active.is_(True),
                                  StaffUser.tenant_id == StaffMailSetting.tenant_id)
                           .order_by(StaffMailSetting.user_id))
    return [MailSetting(s.user_id, s.tenant_id, email, name, s.mode, s.every_minutes, s.after_event_id,
                        _aware(s.last_mailed_at)) for s, email, name in rows]


def pending_events(session: Session, setting: MailSetting, *, limit: int = 200) -> list[EventView]:
    """The user's mailed kinds of events after the cursor: to them, or to a team of their tenant they are in."""
    teams = (select(TeamMember.team_id).join(Team, Team.id == TeamMember.team_id)
             .where(TeamMember.user_id == setting.user_id, Team.tenant_id == setting.tenant_id))
    stmt = (select(NotificationEvent)
            .where(NotificationEvent.tenant_id == setting.tenant_id, NotificationEvent.id > setting.after_event_id,
                   NotificationEvent.kind.in_(MAILED_KINDS),
                   or_(and_(NotificationEvent.recipient_type == "user",
                            NotificationEvent.recipient_id == setting.user_id),
                       and_(NotificationEvent.recipient_type == "team", NotificationEvent.recipient_id.in_(teams))))
            .order_by(NotificationEvent.id).limit(limit))
    return [EventView(e.id, e.kind, e.recipient_type, e.recipient_id, e.conversation_id, e.message_id,
                      dict(e.payload or {}), _aware(e.delivered_at)) for e in session.scalars(stmt)]


def message_gists(session: Session, tenant_id: int, message_rows: Sequence[int]) -> dict[int, MessageGist]:
    ids = sorted(set(message_rows))
    if not ids:
        return {}
    rows = session.execute(select(Message.id, Message.kind, Message.direction, Message.author_name,
                                  Message.author_email, Message.reply_text, Message.text)
                           .where(Message.tenant_id == tenant_id, Message.id.in_(ids)))
    return {r.id: MessageGist(r.id, r.kind, r.direction, r.author_name, r.author_email, r.reply_text or r.text or "")
            for r in rows}


def advance(session: Session, setting: MailSetting, through_event_id: int, now: datetime) -> bool:
    """Move the cursor past the mailed events, only if nobody else moved it since it was read (then False)."""
    done = session.execute(update(StaffMailSetting)
                           .where(StaffMailSetting.user_id == setting.user_id,
                                  StaffMailSetting.after_event_id == setting.after_event_id)
                           .values(after_event_id=through_event_id, last_mailed_at=now))
    return done.rowcount == 1
