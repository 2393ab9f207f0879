"""The threading stage's view of storage: the tenant's threading policy and the lookup ``match`` reads.

``SqlLookup`` answers the threading strategies' questions (it satisfies
``threading.strategies.ConversationLookup``) with prebuilt Core statements;
the flow runs the strategies, which are pure, over it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BindParameter, Executable, Select, bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from postroom import trust
from postroom.errors import NotFound
from postroom.storage import contacts, staff
from postroom.storage.db import aware, core
from postroom.storage.tables import (
    BlockedAddress,
    Contact,
    ContactAddress,
    Conversation,
    InboundMessage,
    Message,
    OutboundMessage,
    Tenant,
    TenantDomain,
    ThreadRef,
)
from postroom.storage.tenants import TenantCache, tenant_changed
from postroom.threading_model import ConversationRef, SentMessage
from postroom.threading_policy import SETTINGS_KEY, ThreadingPolicy

MAX_WRITTEN_LOOKED_AT = 50  # a sender's newest messages read to see whether one was trusted
_conversations = Conversation.__table__.c
_messages = Message.__table__.c
_outbound = OutboundMessage.__table__.c
_thread_refs = ThreadRef.__table__.c


# --- tenant policy -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadingTenant:
    """What threading reads about a tenant for every message (cached in ``_threading_tenants``)."""

    slug: str
    secret: bytes
    domains: tuple[str, ...]
    policy: ThreadingPolicy


def _load_threading_tenant(session: Session, tenant_id: int) -> ThreadingTenant:
    tenants_c, domains_c = Tenant.__table__.c, TenantDomain.__table__.c
    row = core(session, select(tenants_c.slug, tenants_c.secret, tenants_c.settings)
               .where(tenants_c.id == tenant_id)).first()
    if row is None:
        raise NotFound(f"no tenant {tenant_id}")
    domains = tuple(core(session, select(domains_c.domain).where(domains_c.tenant_id == tenant_id)
                         .order_by(domains_c.id)).scalars())
    return ThreadingTenant(row.slug, bytes.fromhex(row.secret), domains, ThreadingPolicy.from_settings(row.settings))


_threading_tenants: TenantCache[ThreadingTenant] = TenantCache(_load_threading_tenant)


def threading_tenant(session: Session, tenant_id: int) -> ThreadingTenant:
    """Slug, secret, custom domains and threading policy; see ``TenantCache`` for how fresh."""
    return _threading_tenants.get(session, tenant_id)


def threading_policy(session: Session, tenant_id: int) -> ThreadingPolicy:
    return threading_tenant(session, tenant_id).policy


def set_threading_settings(session: Session, slug: str, **changes: Any) -> ThreadingPolicy:
    """Validate and store threading settings (autoclose_days, heuristic, new_mail, strict_senders, loop_*)."""
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug.lower()))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    policy = ThreadingPolicy.from_settings(tenant.settings).updated(**changes)
    tenant.settings = {**(tenant.settings or {}), SETTINGS_KEY: policy.as_settings()}
    session.flush()
    tenant_changed(session, tenant.id)
    return policy


def set_inbound_stage(session: Session, inbound_id: int, stage: str, **values: object) -> None:
    """Show where an inbound row is (``threading``, ``rules``, ``storage``) without touching status or lease."""
    session.execute(update(InboundMessage).where(InboundMessage.id == inbound_id)
                    .values(stage=stage, updated_at=datetime.now(UTC), **values))


# --- the threading lookup ------------------------------------------------------------------------------------


_REF_COLUMNS = (_conversations.id, _conversations.contact_id, _conversations.status, _conversations.subject_key,
                _conversations.reference, _conversations.last_activity_at)
# Prebuilt statements with bound parameters for the lookups every message makes: building a select costs
# several times what executing a cached one does.
_tenant = bindparam("tenant_id")
_contact_addresses = ContactAddress.__table__.c
_blocked = BlockedAddress.__table__.c
# An address's contact, its name and whether the tenant blocked the address, in one statement: threading asks
# for the contact and the block of every sender, storage for the name (``contacts.KnownContact``).
_of_address = (_contact_addresses.tenant_id == _tenant, _contact_addresses.address == bindparam("address"))
_SENDER = select(
    select(_contact_addresses.contact_id).where(*_of_address).scalar_subquery(),
    select(Contact.__table__.c.name).join_from(ContactAddress.__table__, Contact.__table__,
                                               Contact.__table__.c.id == _contact_addresses.contact_id)
    .where(*_of_address).scalar_subquery(),
    exists().where(_blocked.tenant_id == _tenant, _blocked.address == bindparam("address")))
_newest = (_conversations.last_activity_at.desc(), _conversations.id.desc())
_REFS = select(*_REF_COLUMNS).where(_conversations.tenant_id == _tenant)
_CONVERSATION = _REFS.where(_conversations.id == bindparam("id"))
_BY_REFERENCE = _REFS.where(_conversations.reference == bindparam("reference"))
_RECENT_BY_SUBJECT = _REFS.where(
    _conversations.contact_id == bindparam("contact_id"), _conversations.subject_key == bindparam("key"),
    _conversations.last_activity_at >= bindparam("since")).order_by(*_newest).limit(5)
_LATEST_BY_SUBJECT = _REFS.where(_conversations.contact_id == bindparam("contact_id"),
                                 _conversations.subject_key == bindparam("key")).order_by(*_newest).limit(1)
_OPEN_FOR_CONTACT = _REFS.where(_conversations.contact_id == bindparam("contact_id"),
                                _conversations.status != "closed").order_by(*_newest).limit(10)


@functools.cache
def _by_message_ids(count: int) -> Select:
    """For ``count`` ids: an ``IN`` of that many bound parameters (ids0, ids1…), cached per count, because an
    expanding ``IN`` re-renders its SQL on every execution and these run for almost every message."""
    return select(_messages.message_id, _messages.conversation_id).where(
        _messages.tenant_id == _tenant, _messages.message_id.in_(_id_params(count)),
        _messages.conversation_id.is_not(None))


@functools.cache
def _by_related_ids(count: int) -> Select:
    """As ``_by_message_ids``, for ids that stored messages referenced."""
    return (select(_thread_refs.ref, _messages.conversation_id)
            .join_from(ThreadRef.__table__, Message.__table__, _messages.id == _thread_refs.message_id)
            .where(_thread_refs.tenant_id == _tenant, _thread_refs.ref.in_(_id_params(count)),
                   _messages.conversation_id.is_not(None))
            .order_by(_messages.id.desc()))


def _id_params(count: int) -> list[BindParameter]:
    return [bindparam(f"ids{i}") for i in range(count)]


def _ids(tenant_id: int, ids: Sequence[str]) -> dict[str, Any]:
    return {"tenant_id": tenant_id, **{f"ids{i}": value for i, value in enumerate(ids)}}


_MERGED_INTO = select(Contact.__table__.c.merged_into_id).where(Contact.__table__.c.id == bindparam("id"))
_STARTED = select(func.count()).select_from(Conversation.__table__).where(
    _conversations.tenant_id == _tenant, _conversations.contact_id == bindparam("contact_id"),
    _conversations.created_at >= bindparam("since"))
_SENT = select(_outbound.id, _outbound.conversation_id, _outbound.message_id).where(
    _outbound.id == bindparam("id"), _outbound.tenant_id == _tenant)
# The flags of what an address wrote to a conversation, newest first (``SqlLookup.has_written``).
_WRITTEN = (select(_messages.flags).where(_messages.conversation_id == bindparam("id"),
                                          _messages.author_email == bindparam("address"), _messages.direction == "in")
            .order_by(_messages.id.desc()).limit(MAX_WRITTEN_LOOKED_AT))
_BY_SUBJECT = _REFS.where(_conversations.subject_key == bindparam("key")).order_by(*_newest).limit(
    bindparam("limit"))


def _ref(c: Any) -> ConversationRef:
    """From a Conversation or a row of ``_REF_COLUMNS``."""
    return ConversationRef(c.id, c.contact_id, c.status, c.subject_key, c.reference,
                           aware(c.last_activity_at) or datetime.now(UTC))


class SqlLookup:
    """``ConversationLookup`` over one tenant's rows: every query is filtered by tenant and uses an index.

    Core statements (``_core``): these run several times per inbound message.
    """

    def __init__(self, session: Session, tenant_id: int) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self._addresses: dict[str, tuple[contacts.KnownContact, bool]] = {}

    def _refs(self, stmt: Executable, **params: Any) -> list[ConversationRef]:
        return [_ref(r) for r in core(self.session, stmt, {"tenant_id": self.tenant_id, **params})]

    def conversation(self, conversation_id: int) -> ConversationRef | None:
        found = self._refs(_CONVERSATION, id=conversation_id)
        return found[0] if found else None

    def by_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = core(self.session, _by_message_ids(len(ids)), _ids(self.tenant_id, ids))
        return {mid: cid for mid, cid in rows}

    def by_related_ids(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        found: dict[str, int] = {}
        for ref, cid in core(self.session, _by_related_ids(len(ids)), _ids(self.tenant_id, ids)):
            found.setdefault(ref, cid)
        return found

    def by_reference(self, reference: str) -> ConversationRef | None:
        found = self._refs(_BY_REFERENCE, reference=reference.upper())
        return found[0] if found else None

    def _address(self, address: str) -> tuple[contacts.KnownContact, bool]:
        """The address's contact and whether it is blocked (``_SENDER``); a lookup lives for one (read-only) match,
        where the sender is asked for by the match, the blocked step and inbox suggestions."""
        address = contacts.normalize_address(address)
        if address not in self._addresses:
            row = core(self.session, _SENDER, {"tenant_id": self.tenant_id, "address": address}).one()
            self._addresses[address] = (contacts.KnownContact(row[0], row[1]), bool(row[2]))
        return self._addresses[address]

    def contacts_read(self) -> dict[str, contacts.KnownContact]:
        """The contact of each address this lookup read, by normalised address: what storage would read again."""
        return {address: known for address, (known, _blocked) in self._addresses.items()}

    def contact_by_address(self, address: str) -> int | None:
        return self._address(address)[0].contact_id

    def live_contact(self, contact_id: int) -> int:
        for _ in range(10):
            merged = core(self.session, _MERGED_INTO, {"id": contact_id}).scalar()
            if merged is None:
                break
            contact_id = merged
        return contact_id

    def recent_by_subject(self, contact_id: int, key: str, since: datetime) -> list[ConversationRef]:
        return self._refs(_RECENT_BY_SUBJECT, contact_id=contact_id, key=key[:500], since=since)

    def latest_by_subject(self, contact_id: int, key: str) -> ConversationRef | None:
        found = self._refs(_LATEST_BY_SUBJECT, contact_id=contact_id, key=key[:500])
        return found[0] if found else None

    def open_for_contact(self, contact_id: int) -> list[ConversationRef]:
        return self._refs(_OPEN_FOR_CONTACT, contact_id=contact_id)

    def conversations_started(self, contact_id: int, since: datetime) -> int:
        return core(self.session, _STARTED, {"tenant_id": self.tenant_id, "contact_id": contact_id,
                                             "since": since}).scalar() or 0

    def by_subject(self, key: str, limit: int) -> list[ConversationRef]:
        return self._refs(_BY_SUBJECT, key=key[:500], limit=limit)

    def is_staff(self, address: str) -> bool:
        return address.lower() in staff.active_addresses(self.session, self.tenant_id)

    def has_written(self, conversation_id: int, address: str) -> bool:
        """A deactivated staff member's past messages were trusted as staff's: they vouch for nothing now."""
        if address.lower() in staff.inactive_addresses(self.session, self.tenant_id):
            return False
        rows = core(self.session, _WRITTEN, {"id": conversation_id, "address": address.lower()})
        return any(trust.vouched(flags or ()) for (flags,) in rows)

    def is_blocked(self, address: str) -> bool:
        return bool(contacts.normalize_address(address)) and self._address(address)[1]

    def sent_message(self, outbound_id: int) -> SentMessage | None:
        row = core(self.session, _SENT, {"id": outbound_id, "tenant_id": self.tenant_id}).first()
        return SentMessage(row.id, row.conversation_id, row.message_id) if row is not None else None
