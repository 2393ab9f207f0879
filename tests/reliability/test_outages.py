"""Outages: broker down (keep accepting, catch up later), database down (451, never 250), blob store
unwritable or full (451, nothing half-written). All against the real SMTP server and pipeline."""

from __future__ import annotations

import resource
import signal
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from postroom.service import Service
from postroom.settings import Settings
from postroom.storage.blobs import sha256_hex
from postroom.storage.db import make_engine
from postroom.storage.tables import InboundMessage
from postroom.testing import RedisProcess, make_eml, wait_until

RCPT = ["inbox@acme.mail.test"]


def _statuses(service: Service) -> list[str]:
    with service.app.session() as session:
        return list(session.scalars(select(InboundMessage.status).order_by(InboundMessage.id)))


def _rows(service: Service) -> int:
    with service.app.session() as session:
        return session.scalar(select(func.count()).select_from(InboundMessage))


def _send(service: Service, raw: bytes) -> int:
    """Deliver once; the final reply code (250, or the 4xx/5xx that refused it)."""
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as client:
        try:
            client.sendmail("sender@example.com", RCPT, raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code
    return 250


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    yield server
    server.kill()


def test_broker_down_gateway_keeps_accepting_and_work_catches_up(settings: Settings, tenant_ids: dict[str, int],
                                                                 redis: RedisProcess) -> None:
    service = Service(settings.replace(broker_url=redis.url)).start()
    try:
        assert _send(service, make_eml(message_id="<before@example.com>")) == 250
        wait_until(lambda: _statuses(service) == ["done"], timeout=20)
        redis.kill()
        started = time.monotonic()
        codes = [_send(service, make_eml(message_id=f"<outage-{i}@example.com>")) for i in range(5)]
        assert codes == [250] * 5, "the database is the record: no broker needed to acknowledge"
        assert time.monotonic() - started < 10
        assert _statuses(service) == ["done"] + ["pending"] * 5
        redis.start()  # same port: the broker is back
        # What the sweeper does every SWEEP_EVERY seconds, called directly to keep the test short.
        wait_until(lambda: service.pipeline.recover() >= 0 and _statuses(service) == ["done"] * 6, timeout=30,
                   interval=0.5)
    finally:
        service.stop()


class _RefusedDatabase:
    """Simulation, stated plainly: the intake's sessions are pointed at a PostgreSQL port where nothing
    listens, i.e. the database server went away (connection refused). The real gateway code runs."""

    def __init__(self, service: Service) -> None:
        assert service.committer is not None
        self.committer = service.committer
        self.real = self.committer.sessions
        self.engine = make_engine("postgresql+psycopg://postroom@127.0.0.1:9/none?connect_timeout=2")

    def __enter__(self) -> None:
        self.committer.sessions = sessionmaker(self.engine)

    def __exit__(self, *exc: object) -> None:
        self.committer.sessions = self.real
        self.engine.dispose()


def test_database_down_answers_451_never_250(service: Service) -> None:
    with _RefusedDatabase(service):
        codes = [_send(service, make_eml(message_id=f"<dbdown-{i}@example.com>")) for i in range(3)]
    assert codes == [451] * 3
    assert _rows(service) == 0
    assert _send(service, make_eml(message_id="<dbdown-0@example.com>")) == 250, "the retry succeeds"
    wait_until(lambda: _statuses(service) == ["done"], timeout=20)


def _blob_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_blob_store_unwritable_answers_451_and_stores_nothing(service: Service) -> None:
    """The blob's shard directory is blocked by a file, so the real write fails with an OS error.

    The message is too large for the database tier (tiered_blobs), so it goes through the file store."""
    raw = make_eml(message_id="<blocked@example.com>", body="0123456789abcdef\n" * 20_000)
    key = sha256_hex(raw)
    root = service.app.settings.data_dir / "blobs"
    (root / key[:2]).write_bytes(b"not a directory")
    assert _send(service, raw) == 451
    assert _rows(service) == 0, "no row without its blob"
    assert _blob_files(root) == [root / key[:2]]
    (root / key[:2]).unlink()
    assert _send(service, raw) == 250
    wait_until(lambda: _statuses(service) == ["done"], timeout=20)


def test_disk_full_mid_write_answers_451_and_leaves_no_partial_blob(service: Service) -> None:
    """Disk full, for real: RLIMIT_FSIZE makes write() fail with EFBIG past 64 KiB in this process."""
    raw = make_eml(message_id="<big@example.com>", body="0123456789abcdef\n" * 20_000)
    root = service.app.settings.data_dir / "blobs"
    before = _blob_files(root)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        code = _send(service, raw)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert code == 451
    assert _rows(service) == 0
    assert _blob_files(root) == before, "no partial blob and no leftover temp file"
    assert _send(service, raw) == 250
    wait_until(lambda: _statuses(service) == ["done"], timeout=20)
