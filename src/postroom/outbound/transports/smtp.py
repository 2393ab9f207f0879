"""SMTP submission with smtplib: plain, STARTTLS (+ auth) or implicit TLS (smtps).

DATA is driven by hand so that ``on_commit`` runs after the body is on the
wire but before the final ``.``: a relay only takes responsibility for a
message when it answers the dot, so a crash before that point can be retried
safely, and only a crash after it leaves the outcome unknown.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse

from postroom.errors import ConfigError
from postroom.outbound.transports.base import (
    Outgoing,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
    UnknownOutcome,
)

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _failure(code: int, response: str, **extra: object) -> TemporaryFailure | PermanentFailure:
    """4xx (and anything odd below 500) is temporary, 5xx permanent."""
    kind = PermanentFailure if 500 <= code < 600 else TemporaryFailure
    return kind(response, code, **extra)  # type: ignore[arg-type]


def dot_stuff(raw: bytes) -> bytes:
    """CRLF line ends, leading dots doubled, ending with CRLF (RFC 5321 4.5.2)."""
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


@dataclass(frozen=True)
class SmtpTransport:
    host: str
    port: int
    security: str = "none"
    username: str = ""
    password: str = ""
    timeout: float = 60.0
    verify: bool = True
    cafile: str | None = None
    helo: str | None = None
    name: str = "smtp"
    idempotent: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpTransport:
        """Query options: ``timeout`` (s), ``cafile`` (private CA), ``verify=0`` (no certificate check), ``helo``."""
        parsed = urlparse(url)
        if not parsed.hostname:
            raise ConfigError(f"POSTROOM_OUTBOUND_URL {url!r} has no host")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        security = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "tls"}[parsed.scheme]
        return cls(host=parsed.hostname, port=parsed.port or DEFAULT_PORTS[parsed.scheme], security=security,
                   username=unquote(parsed.username or ""), password=unquote(parsed.password or ""),
                   timeout=float(query.get("timeout", 60)), verify=query.get("verify", "1") not in ("0", "false"),
                   cafile=query.get("cafile"), helo=query.get("helo"))

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.helo,
                                                    timeout=self.timeout, context=self._tls())
        else:
            client = smtplib.SMTP(self.host, self.port, local_hostname=self.helo, timeout=self.timeout)
        if client.sock is not None:
            # DATA goes out as body, then (after the commit point) the final dot: without NODELAY, Nagle
            # holds the dot until the relay's delayed ACK (bench/RESULTS.md)
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.ehlo_or_helo_if_needed()
        if self.security == "starttls":
            code, reply = client.starttls(context=self._tls())
            if code != 220:
                raise _failure(code, _text(reply))
            client.ehlo()
        if self.username:
            try:
                client.login(self.username, self.password)
            except smtplib.SMTPAuthenticationError as exc:
                raise _failure(exc.smtp_code, _text(exc.smtp_error)) from exc
        return client

    def send(self, message: Outgoing, on_commit: Callable[[], None]) -> SendResult:
        committed = False
        try:
            client = self._connect()
            try:
                code, reply = client.mail(message.mail_from)
                if code != 250:
                    raise _failure(code, _text(reply))
                refused: dict[str, tuple[int, str]] = {}
                for rcpt in message.recipients:
                    code, reply = client.rcpt(rcpt)
                    if code not in (250, 251):
                        refused[rcpt] = (code, _text(reply))
                if len(refused) == len(message.recipients):
                    codes = [c for c, _ in refused.values()]
                    first = next(iter(refused.values()))
                    worst = first[0] if all(c >= 500 for c in codes) else min(codes)
                    raise _failure(worst, first[1], refused=refused)
                code, reply = client.docmd("DATA")
                if code != 354:
                    raise _failure(code, _text(reply))
                client.send(dot_stuff(message.raw))
                on_commit()
                committed = True
                client.send(b".\r\n")
                code, reply = client.getreply()
                if code != 250:
                    raise _failure(code, _text(reply), refused=refused)
                return SendResult(provider_id=_queue_id(_text(reply)), response=_text(reply), code=code,
                                  refused=refused)
            finally:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()
        except (TemporaryFailure, PermanentFailure):
            raise
        except (smtplib.SMTPException, OSError) as exc:
            if committed:
                raise UnknownOutcome(f"connection lost after the final dot: {type(exc).__name__}: {exc}") from exc
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc


def _queue_id(reply: str) -> str | None:
    """Postfix and most relays name their queue id in the 250 reply ('2.0.0 Ok: queued as 4Xb9...')."""
    marker = "queued as "
    index = reply.find(marker)
    return reply[index + len(marker):].split()[0] if index >= 0 else None
