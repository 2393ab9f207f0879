"""Storage finds a message's author in the contacts threading already read in the same transaction.

Threading reads the sender's contact (with its name, for storage) and a
forward's original sender; storage no longer reads them again, and still
names a nameless contact, keeps a contact's name, and gives a forward the
original sender's contact as its author.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, select

from postroom import flow
from postroom.app import App
from postroom.model import Envelope
from postroom.storage.intake import IntakeItem, store_batch
from postroom.storage.tables import Contact, ContactAddress, Message
from postroom.testing import make_eml

INBOX = "inbox@acme.mail.test"


def _process(app: App, tenant_id: int, raw: bytes) -> int:
    item = IntakeItem(raw, Envelope("x@y", (INBOX,)), {tenant_id: (INBOX,)})
    [[row]] = store_batch(app.sessions, app.blobs, [item])
    assert flow.process_inbound(app, row) == "done"
    return row


def _contact(app: App, address: str) -> tuple[int, str] | None:
    with app.session() as session:
        row = session.execute(select(Contact.id, Contact.name)
                              .join(ContactAddress, ContactAddress.contact_id == Contact.id)
                              .where(ContactAddress.address == address)).first()
    return (row.id, row.name) if row else None


def _author(app: App, row: int) -> int | None:
    with app.session() as session:
        return session.scalar(select(Message.author_contact_id).where(Message.inbound_id == row))


@pytest.fixture
def contact_reads(app: App) -> Iterator[list[str]]:
    """The statements that read ``contact_addresses`` (the advisory lock statement aside), as they run."""
    seen: list[str] = []

    def before(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "contact_addresses" in statement and "pg_advisory_xact_lock" not in statement \
                and not statement.lstrip().upper().startswith("INSERT"):
            seen.append(statement)

    event.listen(app.engine, "before_cursor_execute", before)
    yield seen
    event.remove(app.engine, "before_cursor_execute", before)


def test_a_known_sender_is_read_once_per_message(app: App, tenant_ids: dict[str, int],
                                                 contact_reads: list[str]) -> None:
    _process(app, tenant_ids["acme"], make_eml(sender="jean@example.com", subject="Keys"))
    assert _contact(app, "jean@example.com") is not None
    contact_reads.clear()
    _process(app, tenant_ids["acme"], make_eml(sender="Jean Dupont <jean@example.com>", subject="Parking"))
    assert len(contact_reads) == 1, contact_reads


def test_a_nameless_contact_is_named_and_a_named_one_kept(app: App, tenant_ids: dict[str, int]) -> None:
    first = _process(app, tenant_ids["acme"], make_eml(sender="jean@example.com", subject="Keys"))
    contact_id, name = _contact(app, "jean@example.com") or (None, None)
    assert name == "" and _author(app, first) == contact_id
    second = _process(app, tenant_ids["acme"], make_eml(sender="Jean Dupont <jean@example.com>", subject="Parking"))
    assert _contact(app, "jean@example.com") == (contact_id, "Jean Dupont")
    assert _author(app, second) == contact_id
    _process(app, tenant_ids["acme"], make_eml(sender="J. D. <JEAN@example.com>", subject="Meter"))
    assert _contact(app, "jean@example.com") == (contact_id, "Jean Dupont")


def _forward(original_sender: str) -> bytes:
    body = ("FYI, see below.\n\n---------- Forwarded message ---------\n"
            f"From: Marie Curie <{original_sender}>\nDate: Mon, 1 Dec 2025 at 10:00\nSubject: Boiler\n"
            "To: <office@acme.example>\n\nThe boiler is broken again.\n")
    return make_eml(sender="Staff <staff@acme.example>", subject="Fwd: Boiler", body=body)


def test_a_forward_is_authored_by_the_original_senders_contact(app: App, tenant_ids: dict[str, int]) -> None:
    _process(app, tenant_ids["acme"], make_eml(sender="Marie Curie <marie@example.org>", subject="Hello"))
    marie, _ = _contact(app, "marie@example.org") or (None, None)
    assert marie is not None
    row = _process(app, tenant_ids["acme"], _forward("MARIE@example.org"))
    with app.session() as session:
        via, author = session.execute(select(Message.matched_via, Message.author_contact_id)
                                      .where(Message.inbound_id == row)).one()
    assert (via, author) == ("forward", marie)
    unknown = _process(app, tenant_ids["acme"], _forward("nobody@example.org"))
    assert _author(app, unknown) is None
    assert _contact(app, "nobody@example.org") is None, "a forward's original sender gets no contact"
