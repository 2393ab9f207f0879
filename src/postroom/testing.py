"""Builders shared by the tests and the benchmarks: mail, waiting, settings."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from postroom.storage import conversation_views

if TYPE_CHECKING:
    from postroom.app import App

T = TypeVar("T")


def make_eml(*, sender: str = "Jean Dupont <jean@example.com>", to: str = "inbox@acme.mail.test",
             subject: str = "Question about my unit", body: str = "Hello,\n\nWhen is the key handover?\n",
             message_id: str | None = None, headers: dict[str, str] | None = None,
             date: datetime | None = None) -> bytes:
    """A realistic plain-text message as bytes with CRLF line ends."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="example.com")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    """One message a test SMTP relay or sink got: envelope and exact bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


def wait_until(probe: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def conversation_with_subject(app: App, subject: str, tenant: str = "acme") -> int:
    """The id of the tenant's conversation with this subject, once the pipeline has made it."""
    def probe() -> int | None:
        with app.session() as session:
            found = [c.id for c in conversation_views.list_conversations(session, tenant) if c.subject == subject]
        return found[0] if found else None

    return wait_until(probe)


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants (Linux /proc): the processes one ``postroom serve`` runs."""
    found = {pid}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found |= process_tree(int(child))
    return found


class LoopbackSMTP:
    """An SMTP protocol object per connection (``make(loop)``) on an ephemeral 127.0.0.1 port, served from an
    event loop thread of its own: for tests that compare one SMTP class's replies with another's."""

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], asyncio.Protocol], handler: object) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            self.loop.create_server(lambda: make(self.loop), "127.0.0.1", 0), self.loop).result(10)
        self.port: int = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class RawSMTP:
    """A byte-level SMTP client for abuse tests: sends exactly what it is given, reads whole replies."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0,
                 source: str | None = None) -> None:
        import socket

        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.file = self.sock.makefile("rb")
        self.banner = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply; (0, "") when the server closed the connection."""
        lines: list[str] = []
        while True:
            line = self.file.readline()
            if not line:
                return 0, "\n".join(lines)
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]) if line[:3].isdigit() else -1, "\n".join(lines)

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class RedisProcess:
    """A private ``redis-server`` on a free 127.0.0.1 port (never the machine's shared one), killable at will."""

    def __init__(self, password: str | None = None) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        import socket

        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(listening, timeout=10)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
