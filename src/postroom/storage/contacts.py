"""Contact verbs: find or create the contact of an address, link addresses, merge contacts, preferences.

An address belongs to at most one contact of a tenant (unique index). Linking
an address another contact owns is refused: staff merge the two instead, which
moves the other's addresses, conversations and messages to the kept one and
leaves it pointing there (``merged_into_id``), so tokens issued to it still
lead to the kept contact. A contact's ``channel`` (email or portal) and
``locale`` decide how and in which language postroom writes to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage.db import core
from postroom.storage.tables import Contact, ContactAddress, Conversation, Message, Tenant

CHANNELS = ("email", "portal")
MAX_SIMILAR = 3


@dataclass(frozen=True)
class ContactInfo:
    id: int
    tenant_id: int
    name: str
    addresses: tuple[str, ...]
    unit_ref: str | None
    merged_into_id: int | None
    channel: str = "email"
    locale: str | None = None
    conversations: int = 0

    @property
    def email(self) -> str | None:
        return self.addresses[0] if self.addresses else None


@dataclass(frozen=True)
class KnownContact:
    """An address's contact (None: it had none) and that contact's name, as read earlier in the transaction.

    The threading lookup reads them for the sender under the sender's lock;
    storage then finds or creates the author without reading them again.
    """

    contact_id: int | None
    name: str | None = None


def normalize_address(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def get_contact(session: Session, contact_id: int) -> ContactInfo:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    return _info(session, contact)


def _info(session: Session, contact: Contact) -> ContactInfo:
    addresses = session.scalars(select(ContactAddress.address).where(ContactAddress.contact_id == contact.id)
                                .order_by(ContactAddress.primary.desc(), ContactAddress.id))
    count = session.scalar(select(func.count()).select_from(Conversation).where(Conversation.contact_id == contact.id))
    return ContactInfo(contact.id, contact.tenant_id, contact.name, tuple(addresses), contact.unit_ref,
                       contact.merged_into_id, contact.channel or "email", contact.locale, count or 0)


def preferences(session: Session, contact_id: int | None) -> tuple[str, str | None]:
    """(channel, locale) postroom writes to the contact with; (email, None) without a contact."""
    if contact_id is None:
        return "email", None
    row = session.execute(select(Contact.channel, Contact.locale).where(Contact.id == contact_id)).first()
    return (row.channel or "email", row.locale) if row else ("email", None)


def list_contacts(session: Session, tenant: str, *, merged: bool = False, limit: int = 500) -> list[ContactInfo]:
    """The tenant's contacts, newest first; merged ones only when asked for."""
    tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == tenant.lower()))
    if tenant_id is None:
        raise NotFound(f"no tenant {tenant!r}; create it with: postroom tenant add {tenant}")
    stmt = select(Contact).where(Contact.tenant_id == tenant_id).order_by(Contact.id.desc()).limit(limit)
    if not merged:
        stmt = stmt.where(Contact.merged_into_id.is_(None))
    return [_info(session, c) for c in session.scalars(stmt)]


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
    return ensure_contact_created(session, tenant_id, address, name)[0]


def ensure_contact_created(session: Session, tenant_id: int, address: str, name: str = "", *,
                           known: KnownContact | None = None) -> tuple[int, bool]:
    """As ``ensure_contact``, and whether this call created it (a new address: look for namesakes).

    ``known``: the address's contact as this transaction already read it, so it is not read again.
    """
    address = normalize_address(address)
    if not address:
        raise PostroomError("a contact needs an e-mail address")
    if known is None:
        row = core(session, _CONTACT_AND_NAME, {"tenant_id": tenant_id, "address": address}).first()
        known = KnownContact(row.contact_id, row.name) if row is not None else KnownContact(None)
    if known.contact_id is not None:
        if name and not known.name:
            _fill_name(session, known.contact_id, name[:200])
        return known.contact_id, False
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
        return found, False
    return contact.id, True


_SAME_NAME = (select(_contacts.id, _contacts.name).where(
    _contacts.tenant_id == bindparam("tenant_id"), func.lower(_contacts.name) == bindparam("name"),
    _contacts.id != bindparam("contact_id"), _contacts.merged_into_id.is_(None))
    .order_by(_contacts.id).limit(MAX_SIMILAR))


def similar_contacts(session: Session, tenant_id: int, contact_id: int, name: str) -> list[dict]:
    """Other live contacts of the tenant with this display name: ``[{contact_id, address}]``.

    A display name is the sender's claim, so this is only a hint for staff
    (who may merge), never a reason to thread a message anywhere.
    """
    name = " ".join((name or "").split()).lower()
    if not name:
        return []
    rows = core(session, _SAME_NAME, {"tenant_id": tenant_id, "name": name[:200], "contact_id": contact_id}).all()
    emails = {cid: address for cid, address in session.execute(
        select(ContactAddress.contact_id, ContactAddress.address)
        .where(ContactAddress.contact_id.in_([r.id for r in rows]))
        .order_by(ContactAddress.primary, ContactAddress.id.desc()))} if rows else {}
    return [{"contact_id": r.id, "address": emails.get(r.id, "")} for r in rows]


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
    """Give a contact another address; refused when another contact owns it (merge them instead)."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    if contact.merged_into_id is not None:
        raise PostroomError(f"contact {contact_id} was merged into contact {contact.merged_into_id}; link to that one")
    address = normalize_address(address)
    if "@" not in address or " " in address or len(address) > 320:
        raise PostroomError(f"{address!r} is not an e-mail address")
    owner = contact_for_address(session, contact.tenant_id, address)
    if owner == contact_id:
        return get_contact(session, contact_id)
    if owner is not None:
        raise PostroomError(f"{address} belongs to contact {owner}; to make them one, merge them with: "
                            f"postroom contact merge {contact_id} {owner}")
    session.add(ContactAddress(tenant_id=contact.tenant_id, contact_id=contact_id, address=address))
    session.flush()
    return get_contact(session, contact_id)


def merge_contacts(session: Session, *, keep_id: int, drop_id: int) -> ContactInfo:
    """Move addresses, conversations and authored messages of ``drop_id`` to ``keep_id``.

    Contacts merged into ``drop_id`` earlier now point at ``keep_id`` too, so
    ``live_contact`` needs one step for any of them.
    """
    keep, drop = session.get(Contact, keep_id), session.get(Contact, drop_id)
    if keep is None or drop is None or keep.tenant_id != drop.tenant_id:
        missing = keep_id if keep is None or (drop is not None and keep.tenant_id != drop.tenant_id) else drop_id
        raise NotFound(f"no contact {missing} in this tenant")
    if keep_id == drop_id:
        raise PostroomError(f"contact {keep_id} cannot be merged into itself")
    for contact in (keep, drop):
        if contact.merged_into_id is not None:
            raise PostroomError(f"contact {contact.id} was already merged into contact {contact.merged_into_id}")
    session.execute(update(ContactAddress).where(ContactAddress.contact_id == drop_id)
                    .values(contact_id=keep_id, primary=False))
    session.execute(update(Conversation).where(Conversation.contact_id == drop_id).values(contact_id=keep_id))
    session.execute(update(Message).where(Message.author_contact_id == drop_id).values(author_contact_id=keep_id))
    session.execute(update(Contact).where(Contact.merged_into_id == drop_id).values(merged_into_id=keep_id))
    keep.name = keep.name or drop.name
    keep.unit_ref = keep.unit_ref or drop.unit_ref
    keep.locale = keep.locale or drop.locale
    drop.merged_into_id = keep_id
    session.flush()
    session.expire_all()  # Core updates above changed rows the session may hold
    return get_contact(session, keep_id)


def set_contact(session: Session, contact_id: int, *, name: str | None = None, unit_ref: str | None = None,
                channel: str | None = None, locale: str | None = None) -> ContactInfo:
    """Change what is given; ``locale=""`` falls back to the tenant's language."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    if channel is not None:
        if channel not in CHANNELS:
            raise PostroomError(f"channel {channel!r}: use one of {', '.join(CHANNELS)}")
        contact.channel = channel
    if locale is not None:
        locale = locale.strip()
        if len(locale) > 16 or (locale and not locale.replace("-", "").replace("_", "").isalpha()):
            raise PostroomError(f"locale {locale!r}: use a language tag such as fr or nl-BE")
        contact.locale = locale or None
    if name is not None:
        contact.name = name[:200]
    if unit_ref is not None:
        contact.unit_ref = unit_ref or None
    session.flush()
    return get_contact(session, contact_id)
