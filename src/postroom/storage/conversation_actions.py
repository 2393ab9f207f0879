"""What staff and the sweeper do to conversations: move a message, mark read, set status, assign, autoclose.

Each verb runs in the caller's transaction; moving a customer's message into
another contact's conversation needs ``force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from postroom import trust
from postroom.errors import NotFound, PostroomError
from postroom.statuses import ConversationStatus
from postroom.storage import contacts, conversation_views, conversations, threading_lookup
from postroom.storage.db import aware
from postroom.storage.tables import Conversation, Message, Tenant
from postroom.storage.tables.conversations import STATUSES
from postroom.threading_policy import ThreadingPolicy


@dataclass(frozen=True)
class Moved:
    """What a move did; ``notice_contact_id`` is whom the customer notice goes to (None: nobody)."""

    message_id: int
    from_conversation_id: int | None
    to_conversation_id: int
    created_conversation: bool
    author_contact_id: int | None
    notice_contact_id: int | None = None
    emptied: bool = False  # the conversation it left has no message any more: closed, flagged emptied_by_move


EMPTIED_BY_MOVE = "emptied_by_move"


def _contact_label(session: Session, contact_id: int | None) -> str:
    if contact_id is None:
        return "no contact"
    email = conversation_views.primary_addresses(session, {contact_id}).get(contact_id)
    return f"contact {contact_id} ({email})" if email else f"contact {contact_id}"


def move_message(session: Session, message_row: int, *, to_conversation_id: int | None = None,
                 new: bool = False, force: bool = False, author_email: str | None = None,
                 author_name: str | None = None, now: datetime | None = None) -> Moved:
    """Move a message (from the unsorted inbox or another conversation) into a conversation, or a new one.

    ``author_email`` corrects the author the parser recovered. A customer's
    message moved into a conversation of another contact is refused unless
    ``force``: that contact would see a stranger's words in their thread. A
    customer's message moved between conversations raises a ``message_moved``
    event (and the caller's notice) only when its author is the target's
    contact: nobody learns of a conversation they are not part of. A
    conversation left without messages is closed and flagged ``emptied_by_move``.
    """
    if new == (to_conversation_id is not None):
        raise PostroomError("give either a conversation to move to or new=True")
    now = now or datetime.now(UTC)
    message = session.get(Message, message_row)
    if message is None:
        raise NotFound(f"no message {message_row}; list the unsorted inbox with: postroom inbox list --tenant T")
    customer = _correct_author(session, message, author_email, author_name)
    source = message.conversation_id
    lookup = threading_lookup.SqlLookup(session, message.tenant_id)
    author = lookup.live_contact(message.author_contact_id) if message.author_contact_id is not None else None
    if new:
        values = conversations.new_conversation_values(session, message.tenant_id, subject=message.subject,
                                                       contact_id=message.author_contact_id, now=now)
        target = session.get(Conversation, conversations.create_conversation(session, values))
    else:
        target = _existing_target(session, lookup, message, to_conversation_id, customer=customer, author=author,
                                  force=force)
    _land(message, target, now)
    notice = None
    if source is not None and customer and author is not None and target.contact_id is not None \
            and lookup.live_contact(target.contact_id) == author:
        notice = author
        conversations.add_event(session, message.tenant_id, "message_moved", "contact", author,
                                conversation_id=target.id, message_id=message.id, from_conversation_id=source,
                                reference=target.reference)
    session.flush()
    emptied = source is not None and _empty(session, source, now)
    return Moved(message.id, source, target.id, new, message.author_contact_id, notice, emptied)


def _correct_author(session: Session, message: Message, author_email: str | None, author_name: str | None) -> bool:
    """Apply a staff correction of the author; whether the message is a customer's (then linked to a contact)."""
    if author_email:
        message.author_email = contacts.normalize_address(author_email)
        message.author_name = (author_name or "")[:200]
        message.author_contact_id = None
    if author_name is not None and not author_email:
        message.author_name = author_name[:200]
    customer = message.direction == "in" and bool(message.author_email) and message.author_user_id is None
    if customer:
        message.author_contact_id = contacts.ensure_contact(session, message.tenant_id, message.author_email,
                                                            message.author_name)
    return customer


def _existing_target(session: Session, lookup: threading_lookup.SqlLookup, message: Message,
                     conversation_id: int | None, *, customer: bool, author: int | None, force: bool) -> Conversation:
    """The conversation to move into; another contact's takes ``force`` for a customer's message."""
    target = session.get(Conversation, conversation_id)
    if target is None or target.tenant_id != message.tenant_id:
        raise NotFound(f"no conversation {conversation_id} for this message's tenant")
    if target.id == message.conversation_id:
        raise PostroomError(f"message {message.id} is already in conversation {target.id}")
    owner = lookup.live_contact(target.contact_id) if target.contact_id is not None else None
    if customer and owner != author and not force:
        raise PostroomError(f"message {message.id} is from {_contact_label(session, author)} but conversation "
                            f"{target.id} is {_contact_label(session, owner)}'s; confirm with --force "
                            f"(API: \"force\": true)")
    return target


def _land(message: Message, target: Conversation, now: datetime) -> None:
    """The message joins ``target``: suggestions cleared, a stranger's flag dropped, a customer's mail reopens."""
    message.conversation_id = target.id
    message.suggestions = []
    if trust.FOREIGN in (message.flags or ()):  # staff put it here: its author is a participant from now on
        message.flags = [f for f in message.flags if f != trust.FOREIGN]
    if message.direction == "in":
        target.last_customer_at = max(filter(None, (aware(target.last_customer_at), now)))
        if target.status == ConversationStatus.CLOSED:
            target.status, target.closed_at = ConversationStatus.OPEN, None
    target.last_activity_at = now
    target.updated_at = now


def _empty(session: Session, conversation_id: int, now: datetime) -> bool:
    """Close a conversation that has no message left, flagged ``emptied_by_move``; True if it was empty."""
    if session.scalar(select(func.count()).select_from(Message).where(Message.conversation_id == conversation_id)):
        return False
    conv = session.get_one(Conversation, conversation_id)
    conv.status, conv.closed_at, conv.updated_at = "closed", now, now
    conv.flags = sorted({*(conv.flags or ()), EMPTIED_BY_MOVE})
    session.flush()
    return True


def mark_read(session: Session, message_row: int, read: bool = True) -> None:
    session.execute(update(Message).where(Message.id == message_row).values(is_read=read))


def set_status(session: Session, conversation_id: int, status: str, *, now: datetime | None = None) -> None:
    if status not in STATUSES:
        raise PostroomError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound(f"no conversation {conversation_id}")
    now = now or datetime.now(UTC)
    conv.status = status
    conv.closed_at = now if status == "closed" else None
    conv.updated_at = now


def assign(session: Session, conversation_id: int, *, user_id: int | None = None, team_id: int | None = None) -> None:
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        raise NotFound(f"no conversation {conversation_id}")
    conv.responsible_user_id = user_id
    conv.responsible_team_id = team_id
    session.flush()


def autoclose(session: Session, *, now: datetime | None = None) -> dict[int, list[int]]:
    """Close conversations idle longer than their tenant's ``autoclose_days``; tenant id -> closed ids."""
    now = now or datetime.now(UTC)
    closed: dict[int, list[int]] = {}
    for tenant in session.scalars(select(Tenant)):
        days = ThreadingPolicy.from_settings(tenant.settings).autoclose_days
        if not days:
            continue
        cutoff = now - timedelta(days=days)
        ids = list(session.scalars(select(Conversation.id).where(
            Conversation.tenant_id == tenant.id, Conversation.status != ConversationStatus.CLOSED,
            Conversation.last_activity_at < cutoff)))
        if ids:
            session.execute(update(Conversation).where(Conversation.id.in_(ids))
                            .values(status=ConversationStatus.CLOSED, closed_at=now, updated_at=now))
            closed[tenant.id] = ids
    return closed
