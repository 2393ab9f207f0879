"""Poison rows end visible: raw 8-bit header values are stored, a dying worker stops at the attempts limit, and a
worker that outlived its lease writes nothing (real pipeline, SQLite or PostgreSQL, real worker processes)."""

from __future__ import annotations

import os
import re
import signal
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from postroom import flow
from postroom.app import App
from postroom.budget import Budget
from postroom.cli import cli
from postroom.gateway.ingest import ingest
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import inbound
from postroom.storage.inbound import InboundRecord
from postroom.storage.tables import InboundMessage, Message
from postroom.testing import make_eml, wait_until

RAW_8BIT = (b"From: Jean <jean@example.com>\r\nTo: inbox@acme.mail.test\r\nSubject: caf\xe9\r\n"
            b"Message-ID: <caf\xe9\xff\x00@example.com>\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n\r\nbody\r\n")


def _row(app: App, inbound_id: int) -> InboundRecord:
    with app.session() as session:
        return inbound.get_inbound(session, inbound_id)


def _rows(app: App) -> list[InboundRecord]:
    with app.session() as session:
        return inbound.list_inbound(session, limit=100)


def _store(app: App, tenant_id: int, tmp_path, raw: bytes) -> int:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "1.eml").write_bytes(raw)
    [inbound_id] = ingest(app.sessions, app.blobs, tenant_id=tenant_id, inbox_address="inbox@acme.mail.test",
                          path=folder).ids
    return inbound_id


def _failed_metric(service: Service, reason: str) -> float:
    text = httpx.get(f"{service.http_url}/metrics").text
    found = re.search(rf'^postroom_messages_failed_total\{{reason="{reason}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_raw_8bit_message_id_is_stored_and_the_message_done(service: Service, smtp, app: App) -> None:
    client = smtp()
    client.sendmail("jean@example.com", ["inbox@acme.mail.test"], RAW_8BIT)
    [row] = wait_until(lambda: [r for r in _rows(app) if r.status not in ("pending", "processing", "retrying")]
                       or None)
    assert (row.status, row.attempts) == ("done", 1), row.last_error
    assert row.message_id == "<caf\ufffd\ufffd\ufffd@example.com>"
    with app.session() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_error_texts_are_stored_whatever_bytes_they_hold(app: App, tenant_ids: dict[str, int], tmp_path) -> None:
    inbound_id = _store(app, tenant_ids["acme"], tmp_path, make_eml())
    with app.engine.begin() as conn:
        record = inbound.claim(conn, inbound_id)
    assert record is not None
    with app.session() as session:
        inbound.record_error(session, inbound_id, "ValueError: \udce9\x00" + "x" * 10_000, final=True,
                             token=record.lease_token, message_id="<\udcff@x>", subject="a\x00b")
    row = _row(app, inbound_id)
    assert row.status == "failed" and row.last_error is not None
    assert row.last_error.startswith("ValueError: \ufffd\ufffd") and len(row.last_error) == 4000
    assert (row.message_id, row.subject) == ("<\ufffd@x>", "a\ufffdb")


def test_a_row_claimed_max_attempts_times_fails_instead_of_running_again(app: App, tenant_ids: dict[str, int],
                                                                          tmp_path) -> None:
    """Each claim stands for a worker that died holding the row (its lease then ran out)."""
    inbound_id = _store(app, tenant_ids["acme"], tmp_path, make_eml())
    for attempt in range(1, app.settings.max_attempts + 1):
        with app.engine.begin() as conn:
            record = inbound.claim(conn, inbound_id, lease=timedelta(seconds=-1))  # expired at once
        assert record is not None and (record.status, record.attempts) == ("processing", attempt)
    assert flow.process_inbound(app, inbound_id) == "failed"
    row = _row(app, inbound_id)
    assert row.status == "failed" and row.attempts == app.settings.max_attempts
    assert row.last_error == (f"gave up after {app.settings.max_attempts} attempts; the worker died or could "
                              "not record the error")
    assert flow.process_inbound(app, inbound_id) is None


class _Overtaken:
    """Between worker A's claim and its work, A's lease runs out and worker B claims and finishes the row."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.second: str | None = None

    def started(self, record: InboundRecord, budget: Budget) -> None:
        with self.app.engine.begin() as conn:
            conn.execute(update(InboundMessage).where(InboundMessage.id == record.id)
                         .values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
        self.second = flow.process_inbound(self.app, record.id)

    def finished(self) -> None:
        pass


def test_two_workers_never_both_finish_the_same_row(app: App, tenant_ids: dict[str, int], tmp_path) -> None:
    inbound_id = _store(app, tenant_ids["acme"], tmp_path, make_eml(subject="once only"))
    overtaken = _Overtaken(app)
    assert flow.process_inbound(app, inbound_id, watch=overtaken) is None, "A's final write must not apply"
    assert overtaken.second == "done"
    row = _row(app, inbound_id)
    assert (row.status, row.attempts, row.subject) == ("done", 2, "once only")
    with app.session() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


@pytest.fixture
def served(settings: Settings, tenant_ids: dict[str, int], monkeypatch) -> Iterator[Service]:
    for name in ("data_dir", "database_url", "mail_domain"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(settings, name)))
    service = Service(settings.replace(worker_processes=2, max_attempts=2, budget_cpu_seconds=600.0)).start()
    if settings.broker_url:
        service.pipeline.broker.flush_all()
    yield service
    service.stop()


def slow_message(subject: str, elements: int = 250_000) -> bytes:
    """HTML of many tiny elements: linear, but a second or two of parsing, long enough to be caught running."""
    head = (f"From: Jean <jean@example.com>\r\nTo: inbox@acme.mail.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n")
    return (head + ("<i>a</i>" * 10 + "\r\n") * (elements // 10)).encode()


def _kill_the_worker_running(served: Service, app: App, inbound_id: int, kills: int) -> int:
    """kill -9 the worker process running the row, then wait until the row was released or claimed again."""
    assert served.workers is not None
    workers = served.workers
    pid = wait_until(lambda: next((pid for pid, ids in workers.running().items() if inbound_id in ids), None),
                     timeout=30, interval=0.01)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pid not in workers.pids or None, timeout=10)
    if served.settings.broker_url:  # the supervisor re-sends only on the in-process broker
        # released by the supervisor, or (RabbitMQ requeues a dead consumer's messages at once) claimed again
        wait_until(lambda: (row := _row(app, inbound_id)).status in ("retrying", "failed")
                   or row.attempts > kills + 1 or None, timeout=10)
        if _row(app, inbound_id).status == "retrying":
            served.pipeline.recover()
    wait_until(lambda: (row := _row(app, inbound_id)).status != "processing" or row.attempts > kills + 1 or None,
               timeout=30)
    return kills + 1


def test_a_row_whose_worker_is_killed_ends_failed_and_listed(served: Service, app: App) -> None:
    assert served.workers is not None
    before = _failed_metric(served, "attempts_exhausted")
    with smtplib.SMTP("127.0.0.1", served.smtp_port, timeout=30) as client:
        client.sendmail("jean@example.com", ["inbox@acme.mail.test"], slow_message("kills its worker"))
    [inbound_id] = wait_until(lambda: [r.id for r in _rows(app)] or None)
    kills = 0
    while _row(app, inbound_id).status != "failed":
        assert kills < 2, "the row must fail after max_attempts (2) claims"
        kills = _kill_the_worker_running(served, app, inbound_id, kills)
    row = _row(app, inbound_id)
    assert kills == 2 and row.attempts == 2
    assert row.last_error is not None and row.last_error.startswith("gave up after 2 attempts")
    assert "died with exit code -9" in row.last_error
    listing = CliRunner().invoke(cli, ["queue", "list", "--status", "failed"])
    assert listing.exit_code == 0 and str(inbound_id) in listing.output and "gave up after 2" in listing.output
    shape = CliRunner().invoke(cli, ["queue"])
    assert "failed by reason: attempts_exhausted 1" in shape.output
    assert _failed_metric(served, "attempts_exhausted") - before == 1
