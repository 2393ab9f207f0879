"""IMAP mailboxes against a real Dovecot: end to end, reconnects, UIDVALIDITY, leases, kill -9 mid-fetch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from postroom.errors import PostroomError
from postroom.ingress.imap import MailboxFetcher, MailboxFetchers
from postroom.storage import ingress
from postroom.storage.tables import InboundMessage, Message
from postroom.testing import make_eml, wait_until

from .conftest import PASSWORD

SENT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _rows(app, status: str | None = None) -> int:
    query = select(func.count()).select_from(InboundMessage).where(InboundMessage.source == "imap")
    if status:
        query = query.where(InboundMessage.status == status)
    with app.session() as session:
        return session.scalar(query)


def _add(app, dovecot, folder: str = "INBOX", after: str = "seen") -> int:
    with app.session() as session:
        return ingress.add_mailbox(session, "acme", dovecot.url(folder), auth="password", secret=PASSWORD,
                                   after=after).id


def _mails(count: int, tag: str) -> list[bytes]:
    """Messages as a provider keeps them: the same bytes however often they are read."""
    return [make_eml(subject=f"{tag} {n}", message_id=f"<{tag}-{n}@example.com>", date=SENT) for n in range(count)]


def test_mailbox_mail_becomes_a_conversation_message_and_is_marked_seen_after_the_commit(
        dovecot, service, run, password_file) -> None:
    dovecot.append(_mails(3, "e2e"))
    added = run("mailbox", "add", "acme", dovecot.url(), "--password-file", str(password_file), "--json")
    assert added.returncode == 0, added.stderr
    assert "3 message(s) to fetch, IDLE" in run("mailbox", "test", "1").stdout
    service.mailboxes.refresh()
    wait_until(lambda: _rows(service.app, "done") == 3, timeout=30)
    with service.app.session() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 3
    assert all("\\Seen" in flags for flags in dovecot.flags().values())
    dovecot.append(_mails(1, "idle"))  # IDLE wakes the fetcher well before the poll interval
    wait_until(lambda: _rows(service.app, "done") == 4, timeout=20)  # IDLE: well inside the 60 s poll interval
    [state] = [json.loads(line) for line in run("mailbox", "list", "--json").stdout.splitlines()]
    assert state["failures"] == 0 and state["last_success_at"] and state["last_uid"] == 4
    shape = run("queue").stdout  # the queue view shows the mailboxes feeding it
    assert "MAILBOX" in shape and state["url"] in shape
    assert PASSWORD not in json.dumps(state)
    scrape = urllib.request.urlopen(service.http_url + "/metrics").read().decode()
    assert 'postroom_ingress_messages_total{source="imap"} 4.0' in scrape
    assert 'postroom_mailbox_failures{mailbox="1",tenant="acme"} 0.0' in scrape


def test_fetcher_reconnects_after_a_kick_and_a_server_restart(app, tenant_ids, dovecot) -> None:
    mailbox_id = _add(app, dovecot)
    fetchers = MailboxFetchers(app, None).start()
    try:
        dovecot.append(_mails(2, "before"))
        wait_until(lambda: _rows(app) == 2, timeout=20)
        dovecot.kick()
        dovecot.append(_mails(2, "kicked"))
        wait_until(lambda: _rows(app) == 4, timeout=20)
        dovecot.stop()

        def failing() -> bool:
            with app.session() as session:
                record = ingress.get_mailbox(session, mailbox_id)
            return record.failures > 0 and bool(record.last_error)

        wait_until(failing, timeout=20)
        dovecot.start()
        dovecot.append(_mails(1, "restarted"))
        wait_until(lambda: _rows(app) == 5, timeout=30)
        wait_until(lambda: not failing(), timeout=10)
    finally:
        fetchers.stop()


def test_a_new_uidvalidity_reads_everything_again_and_dedup_keeps_each_message_once(
        app, tenant_ids, dovecot) -> None:
    with dovecot.client() as imap:
        imap.create('"Support"')
    dovecot.append(_mails(5, "v1"), folder="Support")
    mailbox_id = _add(app, dovecot, "Support", after="none")
    fetcher = MailboxFetcher(app, mailbox_id, None, "test-owner")
    assert fetcher.fetch_now() == 5
    with app.session() as session:
        first = ingress.get_mailbox(session, mailbox_id).uidvalidity
    with dovecot.client() as imap:  # the folder is recreated: same messages, new UIDs, new UIDVALIDITY
        imap.delete('"Support"')
        imap.create('"Support"')
    dovecot.append(_mails(5, "v1") + _mails(1, "v2"), folder="Support")
    assert fetcher.fetch_now() == 6  # six rows handed on; five of them are the rows stored before
    assert _rows(app) == 6
    with app.session() as session:
        record = ingress.get_mailbox(session, mailbox_id)
    assert record.uidvalidity != first and record.last_uid == 6
    assert not any("\\Seen" in flags for flags in dovecot.flags("Support").values())  # --after none


def test_move_after_store_and_the_lease_keeps_a_second_process_out(app, tenant_ids, dovecot) -> None:
    with dovecot.client() as imap:
        imap.create('"Archive"')
    dovecot.append(_mails(3, "move"))
    mailbox_id = _add(app, dovecot, after="move:Archive")
    with app.session() as session:
        assert ingress.take_lease(session, mailbox_id, "other-serve", 60)
    with pytest.raises(PostroomError, match="another process"):
        MailboxFetcher(app, mailbox_id, None, "this-serve").fetch_now()
    with app.session() as session:
        ingress.release_lease(session, mailbox_id, "other-serve")
    assert MailboxFetcher(app, mailbox_id, None, "this-serve").fetch_now() == 3
    assert dovecot.flags() == {} and len(dovecot.flags("Archive")) == 3


def test_kill_9_during_fetches_loses_and_duplicates_nothing(app, tenant_ids, dovecot, run, password_file) -> None:
    count = 120
    dovecot.append(_mails(count, "crash"))
    assert run("mailbox", "add", "acme", dovecot.url(), "--password-file", str(password_file)).returncode == 0
    for _ in range(2):
        before = _rows(app)
        proc = subprocess.Popen([sys.executable, "-m", "postroom", "mailbox", "run"], env=run.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # mid-way: a batch is committed, more to come (or, on a fast run, all of them already)
        wait_until(lambda b=before: _rows(app) > b or _rows(app) >= count, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = _rows(app)
        seen = [mid for mid, flags in dovecot.flags().items() if "\\Seen" in flags]
        assert len(seen) <= stored  # nothing is marked before its row is committed
    proc = subprocess.Popen([sys.executable, "-m", "postroom", "mailbox", "run"], env=run.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _rows(app) >= count, timeout=60)
        wait_until(lambda: all("\\Seen" in f for f in dovecot.flags().values()), timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    with app.session() as session:
        assert session.scalar(select(func.count(func.distinct(InboundMessage.sha256)))) == count
    assert _rows(app) == count
