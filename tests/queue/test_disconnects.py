"""The pipeline's pooled PostgreSQL connections are not pinged at checkout: a dead one costs no message.

Its backend is terminated (``pg_terminate_backend``, as a server restart or
an idle-connection reaper would leave it) between two messages, between a
message's claim and its final transaction, and after the connection last ran
a transaction of another durability level (whose first statement is a
session setting); each time the next message ends ``done`` with no error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from postroom import flow
from postroom.app import App
from postroom.budget import Budget
from postroom.model import Envelope
from postroom.storage.inbound import InboundRecord
from postroom.storage.intake import IntakeItem, store_batch
from postroom.storage.tables import InboundMessage
from postroom.testing import make_eml, wait_until

INBOX = "inbox@acme.mail.test"


@pytest.fixture
def terminate(app: App) -> Iterator[Callable[[], None]]:
    """Terminate every backend of the test database but the caller's, and wait until they are gone."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    admin = create_engine(app.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"

    def kill() -> None:
        with admin.connect() as conn:
            assert conn.scalar(text(f"SELECT count(pg_terminate_backend(pid)) {others}")) >= 1
            wait_until(lambda: conn.scalar(text(f"SELECT count(*) {others}")) == 0, timeout=10)

    yield kill
    admin.dispose()


def _store(app: App, tenant_id: int, message_id: str) -> int:
    item = IntakeItem(make_eml(message_id=message_id), Envelope("x@y", (INBOX,)), {tenant_id: (INBOX,)})
    [[row]] = store_batch(app.sessions, app.blobs, [item])
    return row


def _row(app: App, row: int) -> tuple[str, str | None, int]:
    with app.session() as session:
        found = session.execute(select(InboundMessage.status, InboundMessage.last_error, InboundMessage.attempts)
                                .where(InboundMessage.id == row)).one()
    return found.status, found.last_error, found.attempts


class _KillAfterClaim:
    """A ``flow.Watch`` that terminates the backends once the claim is committed, before the final transaction."""

    def __init__(self, kill: Callable[[], None]) -> None:
        self.kill = kill

    def started(self, record: InboundRecord, budget: Budget) -> None:
        self.kill()

    def finished(self) -> None:
        pass


def _lost_and_retried(caplog: pytest.LogCaptureFixture) -> bool:
    return any("database connection lost" in r.getMessage() for r in caplog.records)


def test_backend_terminated_between_two_messages(app: App, tenant_ids: dict[str, int],
                                                 terminate: Callable[[], None],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    first, second = (_store(app, tenant_ids["acme"], f"<between-{i}@example.com>") for i in range(2))
    assert flow.process_inbound(app, first) == "done"
    terminate()
    with caplog.at_level(logging.WARNING, logger="postroom.storage.db"):
        assert flow.process_inbound(app, second) == "done"
    assert _lost_and_retried(caplog), "the claim ran on the dead connection, then on a new one"
    assert _row(app, second) == ("done", None, 1)


def test_backend_terminated_between_claim_and_final_transaction(app: App, tenant_ids: dict[str, int],
                                                                terminate: Callable[[], None],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    first, second = (_store(app, tenant_ids["acme"], f"<claimed-{i}@example.com>") for i in range(2))
    assert flow.process_inbound(app, first) == "done"
    with caplog.at_level(logging.WARNING, logger="postroom.storage.db"):
        assert flow.process_inbound(app, second, watch=_KillAfterClaim(terminate)) == "done"
    assert _lost_and_retried(caplog), "the final transaction ran on the dead connection, then on a new one"
    assert _row(app, second) == ("done", None, 1)


def test_backend_terminated_after_a_durable_transaction(app: App, tenant_ids: dict[str, int],
                                                        terminate: Callable[[], None],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The pipeline's first statement on a connection last used at the server's level is its session setting."""
    first, second = (_store(app, tenant_ids["acme"], f"<level-{i}@example.com>") for i in range(2))
    assert flow.process_inbound(app, first) == "done"
    with app.session() as session:  # the same pooled connection, back to the server's synchronous_commit
        session.execute(text("SELECT 1"))
    terminate()
    with caplog.at_level(logging.WARNING, logger="postroom.storage.db"):
        assert flow.process_inbound(app, second) == "done"
    assert _lost_and_retried(caplog)
    assert _row(app, second) == ("done", None, 1)


def test_other_work_still_pings_its_connection(app: App, tenant_ids: dict[str, int],
                                               terminate: Callable[[], None]) -> None:
    """Intake, delivery and staff actions are not repeated on a disconnect: their checkout replaces a dead
    connection first, as ``pool_pre_ping`` did."""
    assert flow.process_inbound(app, _store(app, tenant_ids["acme"], "<pinged-0@example.com>")) == "done"
    terminate()
    row = _store(app, tenant_ids["acme"], "<pinged-1@example.com>")
    assert _row(app, row) == ("pending", None, 0)
