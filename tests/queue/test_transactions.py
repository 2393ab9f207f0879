"""The pipeline's transactions: durability levels on SQLite, writer turns, and a worker killed mid-transaction."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select, text

from postroom import flow
from postroom.app import App
from postroom.model import Envelope
from postroom.settings import Settings
from postroom.storage import inbound
from postroom.storage.db import claim_connection, pipeline_scope, read_scope
from postroom.storage.intake import IntakeItem, store_batch
from postroom.storage.tables import Message
from postroom.testing import make_eml

INBOX = "inbox@acme.mail.test"


def _store(app: App, tenant_id: int, message_id: str) -> int:
    item = IntakeItem(make_eml(message_id=message_id), Envelope("x@y", (INBOX,)), {tenant_id: (INBOX,)})
    [[row]] = store_batch(app.sessions, app.blobs, [item])
    return row


def _sqlite(app: App) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")


def test_only_pipeline_transactions_skip_the_commit_fsync(app: App) -> None:
    _sqlite(app)
    for _ in range(3):  # the same pooled connection serves both kinds in turn
        with pipeline_scope(app.sessions) as session:
            assert session.scalar(text("PRAGMA synchronous")) == 1  # NORMAL
        with app.session() as session:
            assert session.scalar(text("PRAGMA synchronous")) == 2  # FULL: intake, delivery, staff actions


def test_only_pipeline_transactions_skip_the_commit_flush_on_postgresql(app: App) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    default = "SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'"
    for _ in range(3):  # the same pooled connections serve every kind in turn
        with pipeline_scope(app.sessions) as session:
            assert session.scalar(text("SHOW synchronous_commit")) == "off"
        with claim_connection(app.engine) as conn:
            assert conn.scalar(text("SHOW synchronous_commit")) == "off"
        with app.session() as session:  # intake, delivery, staff actions: the server's setting
            assert session.scalar(text("SHOW synchronous_commit")) == session.scalar(text(default))


def test_a_failed_transaction_gives_the_writer_turn_back(app: App) -> None:
    _sqlite(app)
    with pytest.raises(RuntimeError), app.session() as session:
        session.execute(text("SELECT 1"))
        raise RuntimeError("boom")
    done = threading.Event()

    def other_writer() -> None:
        with app.session() as session:
            session.execute(text("SELECT 1"))
        done.set()

    threading.Thread(target=other_writer, daemon=True).start()
    assert done.wait(5), "the next writer waited for a turn nobody holds"


def test_reads_do_not_wait_for_the_writer(app: App) -> None:
    _sqlite(app)
    with app.session() as writer:
        writer.execute(text("SELECT 1"))
        started = time.monotonic()
        with read_scope(app.sessions) as reader:
            assert reader.scalar(text("SELECT 1")) == 1
        assert time.monotonic() - started < 2


KILL_MID_TRANSACTION = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from postroom import flow
    from postroom.app import App
    from postroom.settings import Settings
    from postroom.storage import conversations

    real = conversations.record

    def record_then_die(*args, **kwargs):
        real(*args, **kwargs)  # the message row is written, the transaction is open, the write lock held
        os.kill(os.getpid(), signal.SIGKILL)

    conversations.record = record_then_die
    settings = Settings(data_dir=Path(sys.argv[1]), database_url=sys.argv[2], mail_domain="mail.test",
                        rules_dir=sys.argv[3], processing_lease_seconds=1)
    flow.process_inbound(App.open(settings, migrate=False), int(sys.argv[4]))
""")


def test_a_worker_killed_mid_transaction_leaves_exactly_one_message(app: App, settings: Settings,
                                                                    tenant_ids: dict[str, int]) -> None:
    mid = make_msgid(domain="killed.example")
    row = _store(app, tenant_ids["acme"], mid)
    child = subprocess.run([sys.executable, "-c", KILL_MID_TRANSACTION, str(settings.data_dir),
                            settings.resolved_database_url, settings.resolved_rules_dir, str(row)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -9, child.stderr
    with app.session() as session:
        claimed = inbound.get_inbound(session, row)
        assert (claimed.status, claimed.attempts) == ("processing", 1)
        assert session.scalar(select(func.count()).select_from(Message).where(Message.inbound_id == row)) == 0
    started = time.monotonic()
    assert flow.process_inbound(app, row) is None  # still leased by the dead worker
    time.sleep(1.1)  # the child's 1 s lease runs out; this process leases for the default 300 s
    assert flow.process_inbound(app, row) == "done"
    assert time.monotonic() - started < 10, "the dead worker's write lock held the next one up"
    assert flow.process_inbound(app, row) is None
    with app.session() as session:
        done = inbound.get_inbound(session, row)
        assert (done.status, done.attempts) == ("done", 2)
        assert session.scalar(select(func.count()).select_from(Message).where(Message.inbound_id == row)) == 1
