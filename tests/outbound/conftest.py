"""Real parts for outbound tests: a scripted aiosmtpd relay, a webhook receiver, fast retry settings."""

from __future__ import annotations

import asyncio
import http.server
import os
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.app import App
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import staff
from postroom.testing import Received, free_port


@dataclass
class Relay:
    """An aiosmtpd relay whose answers are scripted per stage: a reply line, 'drop' or 'hang'.

    ``script["DATA"] = ["451 4.3.0 busy", "451 4.3.0 busy"]`` answers the first two
    transactions with 451 and then accepts; 'hang' waits until ``release`` is set (at DATA after
    queuing the message, like a relay that read the final dot but has not answered yet).
    """

    port: int
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[str]] = field(default_factory=dict)
    reached: dict[str, threading.Event] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    transactions: int = 0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=5"

    def event(self, stage: str) -> threading.Event:
        return self.reached.setdefault(stage, threading.Event())

    async def _act(self, stage: str, server: SMTP) -> str | None:
        self.event(stage).set()
        steps = self.script.get(stage)
        action = steps.pop(0) if steps else None
        if action == "drop":
            server.transport.close()
            return "421 4.4.2 dropped"
        if action == "hang":
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            return None
        return action

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        self.transactions += 1
        reply = await self._act("MAIL", server)
        if reply:
            return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = await self._act("RCPT", server)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        if (self.script.get("DATA") or [None])[0] == "hang":
            self.received.append(message)  # a real relay has queued it once it read the final dot
            await self._act("DATA", server)
            return f"250 2.0.0 Ok: queued as Q{len(self.received):04d}"
        reply = await self._act("DATA", server)
        if reply:
            return reply
        self.received.append(message)
        return f"250 2.0.0 Ok: queued as Q{len(self.received):04d}"


@pytest.fixture
def start_relay() -> Iterator[Callable[..., Relay]]:
    """Start relays with extra aiosmtpd options (TLS, AUTH); all are stopped after the test."""
    running: list[tuple[Relay, Controller]] = []

    def start(**options: object) -> Relay:
        handler = Relay(port=free_port())
        controller = Controller(handler, hostname="127.0.0.1", port=handler.port, decode_data=False, **options)
        controller.start()
        running.append((handler, controller))
        return handler

    yield start
    for handler, controller in running:
        handler.release.set()
        controller.stop()


@pytest.fixture
def relay(start_relay: Callable[..., Relay]) -> Relay:
    return start_relay()


def private_broker(url: str) -> str:
    """A Redis database of this test process's own: other runs sharing the server cannot take our messages."""
    if not url.startswith("redis://"):
        return url
    parsed = urlsplit(url)
    return urlunsplit(parsed._replace(path=f"/{1 + os.getpid() % 15}"))


@pytest.fixture
def fast(settings: Settings, relay: Relay) -> Settings:
    """Settings sending to the relay, with millisecond backoffs and a short lease."""
    return settings.replace(outbound_url=relay.url, outbound_backoff_ms=20, outbound_max_backoff_ms=100,
                            outbound_lease_seconds=2, broker_url=private_broker(settings.broker_url))


@pytest.fixture
def outbound_app(fast: Settings, tenant_ids: dict[str, int]) -> Iterator[App]:
    application = App.open(fast)
    with application.session() as session:
        staff.add_user(session, "acme", email="elodie@acme.example", name="Élodie Martin",
                       signature_text="Élodie Martin\nAfter-sales, Acme Builders",
                       signature_html="<p><b>Élodie Martin</b><br>After-sales</p>")
    yield application
    application.close()


@dataclass
class Hook:
    """A local HTTP server standing in for the portal: records requests, answers from a script."""

    port: int
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/postroom/events"


@pytest.fixture
def webhook() -> Iterator[Hook]:
    hook = Hook(port=free_port())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.requests.append(({k: v for k, v in self.headers.items()}, body))
            status = hook.answers.pop(0) if hook.answers else 200
            payload = b'{"id": "evt-%d"}' % len(hook.requests)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", hook.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def attachment_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan étage.pdf"
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    return path


@pytest.fixture
def make_context(outbound_app: App):
    """An OutboundContext for tenant acme from Élodie to a customer (the threading-free input contract)."""
    from dataclasses import replace

    from postroom.outbound.compose import brand
    from postroom.outbound.model import OutboundContext, Person, Staff
    from postroom.storage import tenants

    with outbound_app.session() as session:
        acme = brand(outbound_app, tenants.get_tenant(session, "acme"))
        user = staff.user_by_email(session, "acme", "elodie@acme.example")
    assert user is not None
    elodie = Staff(user.name, user.email, user.signature_text, user.signature_html or "")

    def make(**changes: object) -> OutboundContext:
        base = OutboundContext(kind="reply", tenant=acme, recipient=Person("Zoë Müller", "zoe@example.com"),
                               subject="Leak in the bathroom", reference="7K3M9Q",
                               text="Hello Zoë,\n\nThe plumber comes on Tuesday.\n", staff=elodie,
                               reply_address="reply+tok@acme.mail.test", in_reply_to="<c1@example.com>")
        return replace(base, **changes)

    return make


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 (the client trusts it through ``cafile``)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    paths = Tls(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


@pytest.fixture
def running(fast: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    svc = Service(fast).start()
    if fast.broker_url:
        svc.pipeline.broker.flush_all()
    with svc.app.session() as session:
        staff.add_user(session, "acme", email="elodie@acme.example", name="Élodie Martin",
                       signature_text="Élodie Martin\nAfter-sales, Acme Builders",
                       signature_html="<p><b>Élodie Martin</b><br>After-sales</p>")
    yield svc
    svc.stop()


@pytest.fixture
def customer(running: Service) -> Iterator[smtplib.SMTP]:
    """An SMTP client of *this* service (the shared ``smtp`` fixture would start a second one)."""
    client = smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=10)
    yield client
    client.quit()
