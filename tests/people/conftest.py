"""People tests: the real service sending outbound mail to a local aiosmtpd relay, and the real CLI."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from click.testing import CliRunner

from postroom.cli import cli
from postroom.errors import PostroomError
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import conversation_views, inbound, outbound
from postroom.testing import Received, free_port, make_eml, wait_until

INBOX = "inbox@acme.mail.test"


@dataclass
class Relay:
    port: int
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok"


@pytest.fixture
def relay() -> Iterator[Relay]:
    handler = Relay(port=free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port, decode_data=False)
    controller.start()
    yield handler
    controller.stop()


@pytest.fixture
def people_settings(settings: Settings, relay: Relay) -> Settings:
    return settings.replace(outbound_url=f"smtp://127.0.0.1:{relay.port}?timeout=5", outbound_backoff_ms=20,
                            outbound_max_backoff_ms=100)


@pytest.fixture
def service(people_settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    svc = Service(people_settings).start()
    if people_settings.broker_url:
        svc.pipeline.broker.flush_all()
    yield svc
    svc.stop()


@dataclass
class Mailer:
    """Sends mail to the running service over SMTP and waits until the pipeline has processed it."""

    service: Service

    def send(self, raw: bytes, *, sender: str = "jean@example.com", to: str = INBOX) -> int:
        """The processed message's row id (it must have been stored)."""
        with smtplib.SMTP("127.0.0.1", self.service.smtp_port, timeout=10) as client:
            client.sendmail(sender, [to], raw)
        mid = raw.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()

        def stored() -> int | None:
            with self.service.app.session() as session:
                rows = [r for r in inbound.list_inbound(session, limit=100) if r.message_id == mid]
                if not rows or rows[0].status != "done":
                    return None
                return conversation_views.message_row_by_header(session, rows[0].tenant_id, mid)

        return wait_until(stored)

    def mail(self, *, sender: str = "Jean Dupont <jean@example.com>", to: str = INBOX, **eml: object) -> int:
        address = sender.rpartition("<")[2].rstrip(">")
        return self.send(make_eml(sender=sender, to=to, **eml), sender=address, to=to)  # type: ignore[arg-type]

    def message(self, row: int) -> conversation_views.MessageView:
        with self.service.app.session() as session:
            return conversation_views.get_message(session, row)

    def outbound(self) -> list[outbound.OutboundRecord]:
        with self.service.app.session() as session:
            return outbound.list_outbound(session, limit=500)


@pytest.fixture
def mailer(service: Service) -> Mailer:
    return Mailer(service)


@pytest.fixture
def run(people_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """The real ``postroom`` CLI on the test's database; ``code`` is the exit code expected."""
    for name in ("data_dir", "database_url", "mail_domain", "outbound_url", "rules_dir", "broker_url",
                 "broker_namespace"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(people_settings, name)))

    def invoke(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=code != 0)
        if code != 0:
            assert result.exit_code != 0 and isinstance(result.exception, PostroomError | SystemExit), result.output
            return f"error: {result.exception}" if isinstance(result.exception, PostroomError) else result.output
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def as_json(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def write_rules(settings: Settings, slug: str, text: str) -> Path:
    folder = Path(settings.rules_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.yaml"
    path.write_text(text)
    return path
