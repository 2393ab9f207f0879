"""Two workers process one tenant's mail at the same time: nothing split, nothing stored twice, unrelated mail
in parallel.

PostgreSQL only: SQLite's BEGIN IMMEDIATE lets one writer in at a time, so nothing can race there. A trigger
makes every message insert sleep, which holds each worker inside its threading transaction long enough for the
other to make its own decision meanwhile; without locks on what the two messages share, the second worker would
not see the first one's conversation and would open another.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from postroom import flow
from postroom.app import App
from postroom.model import Envelope
from postroom.storage import contacts
from postroom.storage.intake import IntakeItem, store_batch
from postroom.testing import make_eml

SLEEP = 1.0  # seconds each message insert takes in these tests

pytestmark = pytest.mark.skipif(not os.environ.get("POSTROOM_DATABASE_URL"),
                                reason="PostgreSQL only: SQLite serialises writers, so nothing can race there")


@pytest.fixture
def slow_inserts(app: App) -> Iterator[None]:
    """Every INSERT into messages sleeps ``SLEEP`` s inside the worker's transaction."""
    with app.engine.begin() as conn:
        conn.execute(text("CREATE OR REPLACE FUNCTION postroom_test_slow() RETURNS trigger AS $$ "
                          f"BEGIN PERFORM pg_sleep({SLEEP}); RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER postroom_test_slow BEFORE INSERT ON messages "
                          "FOR EACH ROW EXECUTE FUNCTION postroom_test_slow()"))
    yield
    with app.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS postroom_test_slow ON messages"))
        conn.execute(text("DROP FUNCTION IF EXISTS postroom_test_slow()"))


def _store(app: App, tenant_id: int, **eml: object) -> int:
    rcpt = "inbox@acme.mail.test"
    item = IntakeItem(raw=make_eml(to=rcpt, **eml), tenant_rcpts={tenant_id: (rcpt,)},  # type: ignore[arg-type]
                      envelope=Envelope(mail_from="x@example.com", rcpt_tos=(rcpt,), peer="127.0.0.1",
                                        received_at=datetime.now(UTC)))
    return store_batch(app.sessions, app.blobs, [item])[0][0]


def _race(app: App, *inbound_ids: int) -> float:
    """Process the rows in one thread each, all started together; return the seconds until all are done."""
    results: dict[int, str | None] = {}
    start = threading.Barrier(len(inbound_ids))

    def work(inbound_id: int) -> None:
        start.wait()
        results[inbound_id] = flow.process_inbound(app, inbound_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in inbound_ids]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {i: "done" for i in inbound_ids}
    return time.monotonic() - started


def _conversations(app: App, *inbound_ids: int) -> list[int | None]:
    with app.engine.connect() as conn:
        return [conn.execute(text("SELECT conversation_id FROM messages WHERE inbound_id = :i"), {"i": i}).scalar_one()
                for i in inbound_ids]


def test_reply_racing_its_original_joins_it(app: App, tenant_ids: dict[str, int], slow_inserts: None) -> None:
    original = _store(app, tenant_ids["acme"], message_id="<first@example.com>", subject="Heating broken")
    reply = _store(app, tenant_ids["acme"], message_id="<second@example.com>", subject="Re: Heating broken",
                   headers={"In-Reply-To": "<first@example.com>", "References": "<first@example.com>"})
    _race(app, original, reply)
    first, second = _conversations(app, original, reply)
    assert first is not None and first == second


def test_same_sender_and_subject_race_into_one_conversation(app: App, tenant_ids: dict[str, int],
                                                            slow_inserts: None) -> None:
    """No references at all (a client that drops them): the contact + subject match must still see the other."""
    ids = [_store(app, tenant_ids["acme"], subject="Parking permit", body=f"Message {n}\n") for n in range(2)]
    _race(app, *ids)
    first, second = _conversations(app, *ids)
    assert first is not None and first == second


def test_two_addresses_merged_into_one_contact_race_into_one_conversation(app: App, tenant_ids: dict[str, int],
                                                                         slow_inserts: None) -> None:
    """Different addresses, one contact: they share its key, so the contact + subject match sees the other."""
    with app.session() as session:
        kept = contacts.ensure_contact(session, tenant_ids["acme"], "jean@example.com", "Jean Dupont")
        dropped = contacts.ensure_contact(session, tenant_ids["acme"], "jean.work@example.org", "Jean Dupont")
        contacts.merge_contacts(session, keep_id=kept, drop_id=dropped)
    ids = [_store(app, tenant_ids["acme"], sender=f"Jean Dupont <{address}>", subject="Parking permit")
           for address in ("jean@example.com", "jean.work@example.org")]
    _race(app, *ids)
    first, second = _conversations(app, *ids)
    assert first is not None and first == second


def test_same_message_id_twice_is_stored_once(app: App, tenant_ids: dict[str, int], slow_inserts: None) -> None:
    """The same mail delivered twice with different bytes (another Received line): two rows, one message."""
    ids = [_store(app, tenant_ids["acme"], message_id="<twice@example.com>", headers={"X-Copy": str(n)})
           for n in range(2)]
    _race(app, *ids)
    with app.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM messages WHERE message_id = '<twice@example.com>'")).scalar()
    assert stored == 1


def test_unrelated_mail_of_one_tenant_runs_in_parallel(app: App, tenant_ids: dict[str, int],
                                                       slow_inserts: None) -> None:
    """Different senders, subjects and ids: nothing shared, so neither waits for the other (a tenant lock did)."""
    ids = [_store(app, tenant_ids["acme"], sender=f"Person {n} <person{n}@example.com>", subject=f"Topic {n}")
           for n in range(2)]
    took = _race(app, *ids)
    assert took < 1.7 * SLEEP  # serialised, the two sleeps alone take 2 * SLEEP
    first, second = _conversations(app, *ids)
    assert first is not None and second is not None and first != second
