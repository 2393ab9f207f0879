"""Contact verbs: find or create the contact of an address, add addresses, merge contacts.

An address belongs to at most one contact of a tenant (unique index), so
"two contacts turn out to share an address" happens when an address of one
is added to another: the two are merged into the one being edited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage.db import core
from postroom.storage.tables import Contact, ContactAddress, Conversation, Message


@dataclass(frozen=True)
class ContactInfo:
    id: int
    tenant_id: int
    name: str
    addresses: tuple[str, ...]
    unit_ref: str | None
    merged_into_id: int | None

    @property
    def email(self) -> str | None:
        return self.addresses[0] if self.addresses else None


def normalize_address(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def get_contact(session: Session, contact_id: int) -> ContactInfo:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    addresses = session.scalars(select(ContactAddress.address).where(ContactAddress.contact_id == contact_id)
                                .order_by(ContactAddress.primary.desc(), ContactAddress.id))
    return ContactInfo(contact.id, contact.tenant_id, contact.name, tuple(addresses), contact.unit_ref,
                       contact.merged_into_id)


_addresses = ContactAddress.__table__.c
_CONTACT_FOR_ADDRESS = select(_addresses.contact_id).where(_addresses.tenant_id == bindparam("tenant_id"),
                                                           _addresses.address == bindparam("address"))


def contact_for_address(session: Session, tenant_id: int, address: str) -> int | None:
    """A prebuilt Core statement: every message asks this at least once."""
    return core(session, _CONTACT_FOR_ADDRESS, {"tenant_id": tenant_id, "address": normalize_address(address)}).scalar()


_contacts = Contact.__table__.c
_CONTACT_AND_NAME = (select(_addresses.contact_id, _contacts.name)
                     .join_from(ContactAddress.__table__, Contact.__table__, _contacts.id == _addresses.contact_id)
                     .where(_addresses.tenant_id == bindparam("tenant_id"), _addresses.address == bindparam("address")))


def ensure_contact(session: Session, tenant_id: int, address: str, name: str = "") -> int:
    """The contact owning ``address``, created (with that address as primary) when unknown."""
    address = normalize_address(address)
    if not address:
        raise PostroomError("a contact needs an e-mail address")
    found = core(session, _CONTACT_AND_NAME, {"tenant_id": tenant_id, "address": address}).first()
    if found is not None:
        if name and not found.name:
            _fill_name(session, found.contact_id, name[:200])
        return found.contact_id
    contact = Contact(tenant_id=tenant_id, name=(name or "")[:200])
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
            session.add(ContactAddress(tenant_id=tenant_id, contact_id=contact.id, address=address, primary=True))
            session.flush()
    except IntegrityError:
        # another worker created it between our read and write: use theirs
        found = contact_for_address(session, tenant_id, address)
        if found is None:
            raise
        return found
    return contact.id


_FILL_NAME = (update(Contact.__table__).where(_contacts.id == bindparam("contact_id"),
                                              or_(_contacts.name == "", _contacts.name.is_(None)))
              .values(name=bindparam("new_name")))


def _fill_name(session: Session, contact_id: int, name: str) -> None:
    """Name a nameless contact with one Core UPDATE instead of loading it; a copy already loaded in the session
    is refreshed."""
    if core(session, _FILL_NAME, {"contact_id": contact_id, "new_name": name}).rowcount:
        loaded = session.identity_map.get(session.identity_key(Contact, contact_id))
        if loaded is not None:
            session.expire(loaded, ["name"])


def add_contact_address(session: Session, contact_id: int, address: str) -> ContactInfo:
    """Give a contact another address; if a second contact owns it, merge that one into this one."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    address = normalize_address(address)
    owner = contact_for_address(session, contact.tenant_id, address)
    if owner == contact_id:
        return get_contact(session, contact_id)
    if owner is not None:
        merge_contacts(session, keep_id=contact_id, drop_id=owner)
    else:
        session.add(ContactAddress(tenant_id=contact.tenant_id, contact_id=contact_id, address=address))
        session.flush()
    return get_contact(session, contact_id)


def merge_contacts(session: Session, *, keep_id: int, drop_id: int) -> ContactInfo:
    """Move addresses, conversations and authored messages of ``drop_id`` to ``keep_id``."""
    keep, drop = session.get(Contact, keep_id), session.get(Contact, drop_id)
    if keep is None or drop is None or keep.tenant_id != drop.tenant_id or keep_id == drop_id:
        raise PostroomError(f"contacts {keep_id} and {drop_id} cannot be merged (missing or of other tenants)")
    session.execute(update(ContactAddress).where(ContactAddress.contact_id == drop_id)
                    .values(contact_id=keep_id, primary=False))
    session.execute(update(Conversation).where(Conversation.contact_id == drop_id).values(contact_id=keep_id))
    session.execute(update(Message).where(Message.author_contact_id == drop_id).values(author_contact_id=keep_id))
    session.execute(update(Contact).where(Contact.merged_into_id == drop_id).values(merged_into_id=keep_id))
    keep.name = keep.name or drop.name
    keep.unit_ref = keep.unit_ref or drop.unit_ref
    drop.merged_into_id = keep_id
    session.flush()
    return get_contact(session, keep_id)


def set_contact(session: Session, contact_id: int, *, name: str | None = None, unit_ref: str | None = None) -> None:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    if name is not None:
        contact.name = name[:200]
    if unit_ref is not None:
        contact.unit_ref = unit_ref or None
    session.flush()
