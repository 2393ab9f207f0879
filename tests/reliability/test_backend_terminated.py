"""PostgreSQL terminates every backend of the running service between two messages (as a server restart or an
idle-connection reaper leaves its pooled connections): the gateway still answers 250 and the worker process,
whose pool is its own and whose checkouts skip the liveness ping, still ends the next message ``done`` at its
first attempt, no error written. tests/queue/test_disconnects shows the pipeline's retry on a new connection."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from postroom.service import Service
from postroom.settings import Settings
from postroom.storage.tables import InboundMessage
from postroom.testing import make_eml, wait_until

RCPT = ["inbox@acme.mail.test"]
OTHERS = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def _rows(service: Service) -> list[tuple[str, str | None, int]]:
    with service.app.session() as session:
        return [tuple(r) for r in session.execute(select(InboundMessage.status, InboundMessage.last_error,
                                                         InboundMessage.attempts).order_by(InboundMessage.id))]


def _send(service: Service, message_id: str) -> None:
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as client:
        client.sendmail("sender@example.com", RCPT, make_eml(message_id=message_id))


def _terminate_backends(service: Service) -> None:
    admin = create_engine(service.app.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.scalar(text(f"SELECT count(pg_terminate_backend(pid)) {OTHERS}")) >= 1
            wait_until(lambda: conn.scalar(text(f"SELECT count(*) {OTHERS}")) == 0, timeout=10)
    finally:
        admin.dispose()


@pytest.fixture
def service(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    served = Service(settings.replace(worker_processes=1)).start()
    if settings.broker_url:
        served.pipeline.broker.flush_all()
    yield served
    served.stop()


def test_terminated_backends_cost_no_message(service: Service) -> None:
    _send(service, "<before-terminate@example.com>")
    wait_until(lambda: _rows(service) == [("done", None, 1)], timeout=20)
    _terminate_backends(service)
    _send(service, "<after-terminate@example.com>")
    wait_until(lambda: [status for status, _, _ in _rows(service)] == ["done", "done"], timeout=20)
    assert _rows(service) == [("done", None, 1), ("done", None, 1)]
