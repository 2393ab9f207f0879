"""Bounces of stored messages: flag the bounced message, record the bounce, list what outbound has not handled.

The pipeline records a bounce in its own transaction; outbound/bounces.py acts on the
unhandled ones (recipients, staff warning) and marks them handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from postroom.storage.db import aware, core, expire_loaded
from postroom.storage.tables import Message, MessageBounce

_messages = Message.__table__.c
_tenant = bindparam("tenant_id")
_FLAGS_WITH_MESSAGE_ID = select(_messages.id, _messages.flags).where(_messages.tenant_id == _tenant,
                                                                    _messages.message_id == bindparam("message_id"))
_INSERT_BOUNCE = insert(MessageBounce.__table__)
_SET_MESSAGE_FLAGS = update(Message.__table__).where(_messages.id == bindparam("message_row"))


def flag_bounced(session: Session, tenant_id: int, message_id: str) -> int | None:
    """Mark the stored message with this Message-ID (a staff reply, say) ``bounced``; its row id, if there is one."""
    target = core(session, _FLAGS_WITH_MESSAGE_ID, {"tenant_id": tenant_id, "message_id": message_id}).first()
    if target is None:
        return None
    core(session, _SET_MESSAGE_FLAGS, {"message_row": target.id, "flags": sorted({*(target.flags or []), "bounced"})})
    expire_loaded(session, Message, target.id)
    return target.id


def record_bounce(session: Session, tenant_id: int, original_message_id: str, *, permanent: Sequence[str] = (),
                  temporary: Sequence[str] = (), status: str | None = None,
                  bounce_message_row: int | None = None) -> int | None:
    """Record a bounce against the stored message with that (canonical) Message-ID; the bounce row id, or None if
    no stored message has it."""
    target = flag_bounced(session, tenant_id, original_message_id)
    if target is None:
        return None
    return core(session, _INSERT_BOUNCE, dict(
        tenant_id=tenant_id, message_id=target, bounce_message_id=bounce_message_row, permanent=list(permanent),
        temporary=list(temporary), status=status)).inserted_primary_key[0]


@dataclass(frozen=True)
class BounceInfo:
    id: int
    message_id: int
    conversation_id: int | None
    header_message_id: str | None
    permanent: tuple[str, ...]
    temporary: tuple[str, ...]
    status: str | None
    created_at: datetime


def unhandled_bounces(session: Session, tenant_id: int) -> list[BounceInfo]:
    """Bounces the outbound side has not acted on yet (``mark_bounce_handled`` when done)."""
    return list_bounces(session, tenant_id, unhandled_only=True)


_bounces = MessageBounce.__table__.c
_BOUNCES = (select(_bounces.id, _messages.id, _messages.conversation_id, _messages.message_id, _bounces.permanent,
                   _bounces.temporary, _bounces.status, _bounces.created_at)
            .join_from(MessageBounce.__table__, Message.__table__, _messages.id == _bounces.message_id)
            .where(_bounces.tenant_id == _tenant).order_by(_bounces.id))
_UNHANDLED_BOUNCES = _BOUNCES.where(_bounces.handled_at.is_(None))
_BOUNCE_HANDLED = update(MessageBounce.__table__).where(_bounces.id == bindparam("bounce_id"))


def list_bounces(session: Session, tenant_id: int, *, unhandled_only: bool = False) -> list[BounceInfo]:
    """Prebuilt Core statements: the pipeline asks for the unhandled ones after every bounce it records."""
    rows = core(session, _UNHANDLED_BOUNCES if unhandled_only else _BOUNCES, {"tenant_id": tenant_id})
    return [BounceInfo(bounce_id, message_row, conversation_id, header_id, tuple(permanent), tuple(temporary),
                       status, aware(created_at))
            for bounce_id, message_row, conversation_id, header_id, permanent, temporary, status, created_at in rows]


def mark_bounce_handled(session: Session, bounce_id: int) -> None:
    core(session, _BOUNCE_HANDLED, {"bounce_id": bounce_id, "handled_at": datetime.now(UTC)})
    expire_loaded(session, MessageBounce, bounce_id)
