"""Filtered, paginated conversation lists for the portal: one tenant's rows only, with a total count.

Free text is a portable ``ILIKE`` (``lower() LIKE`` on SQLite, ASCII case
folding only) over the subject and the stored text of the messages: good
enough for a tenant's few thousand conversations. PostgreSQL full-text
search (a ``tsvector`` column with a GIN index) is the step up if it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from postroom.errors import PostroomError
from postroom.storage import conversation_views
from postroom.storage.conversation_views import ConversationSummary
from postroom.storage.tables import ContactAddress, Conversation, Message
from postroom.storage.tables.conversations import STATUSES

MAX_LIMIT = 500


@dataclass(frozen=True)
class ConversationFilter:
    """Every field is optional; the ones given must all hold (AND)."""

    status: str | None = None
    category: str | None = None
    responsible_user_id: int | None = None
    responsible_team_id: int | None = None
    unassigned: bool | None = None
    unread: bool | None = None
    unanswered: bool | None = None
    contact_email: str | None = None
    unit_ref: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class ConversationPage:
    total: int
    offset: int
    limit: int
    items: list[ConversationSummary]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _nobody_responsible() -> ColumnElement[bool]:
    return and_(Conversation.responsible_user_id.is_(None), Conversation.responsible_team_id.is_(None))


def _unread() -> ColumnElement[bool]:
    return exists().where(Message.conversation_id == Conversation.id, Message.direction == "in",
                          Message.is_read.is_(False))


def _waiting_for_staff() -> ColumnElement[bool]:
    """The customer wrote after the last staff reply (automatic mail does not move last_customer_at)."""
    return and_(Conversation.last_customer_at.is_not(None),
                or_(Conversation.last_staff_at.is_(None), Conversation.last_staff_at < Conversation.last_customer_at))


#: Filter fields that ask for a column's value, and yes/no fields with the condition that ``True`` asks for.
_EQUALS = {"category": Conversation.category, "responsible_user_id": Conversation.responsible_user_id,
           "responsible_team_id": Conversation.responsible_team_id, "unit_ref": Conversation.unit_ref}
_YES_NO = {"unassigned": _nobody_responsible, "unread": _unread, "unanswered": _waiting_for_staff}


def _contact_is(tenant_id: int, email: str) -> ColumnElement[bool]:
    return exists().where(ContactAddress.tenant_id == tenant_id, ContactAddress.contact_id == Conversation.contact_id,
                          ContactAddress.address == email.strip().lower())


def _text_matches(tenant_id: int, text: str) -> ColumnElement[bool]:
    """The subject or a message's subject or text holds ``text``, or it is the reference (``#`` optional)."""
    pattern = _like(text)
    return or_(
        Conversation.subject.ilike(pattern, escape="\\"),
        Conversation.reference == text.upper().lstrip("#"),
        exists().where(Message.tenant_id == tenant_id, Message.conversation_id == Conversation.id,
                       or_(Message.subject.ilike(pattern, escape="\\"), Message.text.ilike(pattern, escape="\\"))),
    )


def _conditions(tenant_id: int, f: ConversationFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Conversation.tenant_id == tenant_id]
    if f.status is not None:
        if f.status not in STATUSES:
            raise PostroomError(f"status {f.status!r}: use one of {', '.join(STATUSES)}")
        where.append(Conversation.status == f.status)
    for name, column in _EQUALS.items():
        value = getattr(f, name)
        if value is not None:
            where.append(column == value)
    for name, condition in _YES_NO.items():
        wanted = getattr(f, name)
        if wanted is not None:
            where.append(condition() if wanted else not_(condition()))
    if f.contact_email is not None:
        where.append(_contact_is(tenant_id, f.contact_email))
    text = (f.text or "").strip()
    if text:
        where.append(_text_matches(tenant_id, text))
    return where


def search(session: Session, tenant_id: int, f: ConversationFilter = ConversationFilter(), *,
           offset: int = 0, limit: int = 50) -> ConversationPage:
    """Most recently active first; ``total`` counts every match, not just this page."""
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise PostroomError(f"limit must be 1..{MAX_LIMIT} and offset at least 0")
    where = _conditions(tenant_id, f)
    total = session.scalar(select(func.count()).select_from(Conversation).where(*where)) or 0
    ids = list(session.scalars(select(Conversation.id).where(*where)
                               .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
                               .offset(offset).limit(limit)))
    return ConversationPage(total, offset, limit, conversation_views.summaries(session, ids))
