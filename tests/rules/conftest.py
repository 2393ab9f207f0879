"""Real parts for the rules-in-the-pipeline tests: a relay sink for outbound mail, a service sending to it."""

from __future__ import annotations

import contextlib
import os
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.queue.actors import INBOUND_QUEUE, OUTBOUND_QUEUE
from postroom.service import Service
from postroom.settings import Settings
from postroom.statuses import TERMINAL
from postroom.storage import inbound
from postroom.storage.inbound import InboundRecord
from postroom.testing import Received, free_port


@dataclass
class Sink:
    """The outbound relay: accepts everything and keeps what it got."""

    port: int
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=5"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok"


@pytest.fixture
def sink() -> Iterator[Sink]:
    handler = Sink(port=free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port, decode_data=False)
    controller.start()
    yield handler
    controller.stop()


def write_rules(settings: Settings, slug: str, text: str) -> Path:
    """Write a tenant's rules file, moving its mtime forward so a coarse clock cannot hide the change."""
    folder = Path(settings.rules_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.yaml"
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))
    return path


@pytest.fixture
def routed(settings: Settings, sink: Sink, tenant_ids: dict[str, int]) -> Iterator[Service]:
    """The real service with outbound mail going to the sink."""
    svc = Service(settings.replace(outbound_url=sink.url, outbound_backoff_ms=20, outbound_max_backoff_ms=100))
    svc.start()
    if settings.broker_url:
        svc.pipeline.broker.flush_all()
    yield svc
    svc.stop()


@pytest.fixture
def send(routed: Service) -> Iterator[Callable[..., dict]]:
    """Send one message to the routed service over SMTP; returns smtplib's refused-recipients dict."""
    clients: list[smtplib.SMTP] = []

    def deliver(raw: bytes, *, mail_from: str = "jean@example.com",
                rcpts: tuple[str, ...] = ("inbox@acme.mail.test",)) -> dict:
        client = smtplib.SMTP("127.0.0.1", routed.smtp_port, timeout=10)
        clients.append(client)
        return client.sendmail(mail_from, list(rcpts), raw)

    yield deliver
    for client in clients:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()


def rows(svc: Service, status: str | None = None) -> list[InboundRecord]:
    with svc.app.session() as session:
        return inbound.list_inbound(session, status=status)


def finished(svc: Service, count: int = 1) -> list[InboundRecord]:
    """The inbound rows once ``count`` of them reached a final status (else [] to keep waiting)."""
    found = [r for r in rows(svc) if r.status in TERMINAL]
    return found if len(found) >= count else []


def drain(svc: Service) -> None:
    """Wait until the pipeline has nothing left to do, instead of sleeping before asserting that nothing more came.

    A processed inbound message queues its outbound ids before its broker message is acknowledged, so joining
    the inbound queue, then the outbound one, leaves no mail in flight.
    """
    for queue in (INBOUND_QUEUE, OUTBOUND_QUEUE):
        svc.pipeline.broker.join(queue, timeout=30_000)

