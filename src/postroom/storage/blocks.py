"""Spam and blocked addresses: a conversation marked spam is closed and its contact's addresses are blocked.

Mail from a blocked address is placed by threading's first step in the
unsorted inbox flagged ``blocked``: it never opens or joins a conversation,
never notifies anyone and gets nothing automatic back. Blocks are per tenant
and per address (a spammer's address at one tenant is a customer at another).
Unmarking the conversation lifts the blocks of its contact's addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from postroom.errors import NotFound
from postroom.storage.contacts import normalize_address
from postroom.storage.db import core
from postroom.storage.tables import BlockedAddress, ContactAddress, Conversation

SPAM = "spam"
BLOCKED = "blocked"
_blocked = BlockedAddress.__table__.c
_IS_BLOCKED = select(_blocked.id).where(_blocked.tenant_id == bindparam("tenant_id"),
                                        _blocked.address == bindparam("address"))


@dataclass(frozen=True)
class SpamChange:
    """What marking (or unmarking) a conversation as spam did."""

    conversation_id: int
    status: str
    flags: tuple[str, ...]
    addresses: tuple[str, ...]  # the addresses blocked (or unblocked) by this change


def is_blocked(session: Session, tenant_id: int, address: str) -> bool:
    """A prebuilt Core statement on the (tenant, address) unique index: asked for every inbound message."""
    address = normalize_address(address)
    return bool(address) and core(session, _IS_BLOCKED, {"tenant_id": tenant_id, "address": address}).first() \
        is not None


def _conversation(session: Session, conversation_id: int, tenant_id: int | None) -> Conversation:
    conv = session.get(Conversation, conversation_id)
    if conv is None or (tenant_id is not None and conv.tenant_id != tenant_id):
        raise NotFound(f"no conversation {conversation_id}; list them with: postroom conversations list --tenant T")
    return conv


def _addresses(session: Session, conv: Conversation) -> list[str]:
    if conv.contact_id is None:
        return []
    return list(session.scalars(select(ContactAddress.address).where(ContactAddress.contact_id == conv.contact_id)
                                .order_by(ContactAddress.id)))


def mark_spam(session: Session, conversation_id: int, *, tenant_id: int | None = None,
              now: datetime | None = None) -> SpamChange:
    """Close the conversation, flag it ``spam`` and block its contact's addresses for the tenant."""
    conv = _conversation(session, conversation_id, tenant_id)
    now = now or datetime.now(UTC)
    conv.status, conv.closed_at, conv.updated_at = "closed", conv.closed_at or now, now
    conv.flags = sorted({*(conv.flags or ()), SPAM})
    already = set(session.scalars(select(BlockedAddress.address).where(BlockedAddress.tenant_id == conv.tenant_id)))
    added = [a for a in _addresses(session, conv) if a not in already]
    session.add_all(BlockedAddress(tenant_id=conv.tenant_id, address=a, conversation_id=conv.id, created_at=now)
                    for a in added)
    session.flush()
    return SpamChange(conv.id, conv.status, tuple(conv.flags), tuple(added))


def unmark_spam(session: Session, conversation_id: int, *, tenant_id: int | None = None,
                now: datetime | None = None) -> SpamChange:
    """Undo ``mark_spam``: drop the flag, reopen the conversation and unblock its contact's addresses."""
    conv = _conversation(session, conversation_id, tenant_id)
    now = now or datetime.now(UTC)
    addresses = _addresses(session, conv)
    lifted = list(session.scalars(select(BlockedAddress.address).where(
        BlockedAddress.tenant_id == conv.tenant_id, BlockedAddress.address.in_(addresses)))) if addresses else []
    if lifted:
        session.execute(delete(BlockedAddress).where(BlockedAddress.tenant_id == conv.tenant_id,
                                                     BlockedAddress.address.in_(lifted)))
    if SPAM in (conv.flags or ()):
        conv.flags = [f for f in conv.flags if f != SPAM]
        conv.status, conv.closed_at = "open", None
    conv.updated_at = now
    session.flush()
    return SpamChange(conv.id, conv.status, tuple(conv.flags or ()), tuple(sorted(lifted)))
