"""The lean command path (gateway/protocol/commands.py) against aiosmtpd's own, reply for reply.

Two real servers on 127.0.0.1, aiosmtpd's ``SMTP`` and ``LeanSMTP``, get the
same command scripts from a raw socket client; every reply and every
envelope that reaches DATA must be identical. The plain-path parser is also
compared with the ``email`` tokenizer it short-cuts, over generated paths.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.gateway.protocol.commands import LeanSMTP, plain_path
from postroom.testing import LoopbackSMTP

LOCAL_PART_LIMIT = 64


class Recorder:
    """No MAIL/RCPT hooks, so aiosmtpd's own parsing decides every reply; DATA records the envelope."""

    def __init__(self) -> None:
        self.envelopes: list[tuple] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append((envelope.mail_from, envelope.mail_options, envelope.rcpt_tos, envelope.rcpt_options,
                               envelope.smtp_utf8, envelope.original_content))
        return "250 OK"


class HookedRecorder(Recorder):
    """MAIL/RCPT hooks that record what they are given, as postroom's handler has them."""

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(options)
        return "250 2.1.5 Recipient OK"


def _server(smtp_class: type[SMTP], handler: Recorder, **kwargs: object) -> LoopbackSMTP:
    def make(loop: asyncio.AbstractEventLoop) -> SMTP:
        server = smtp_class(handler, hostname="commands.test", data_size_limit=10_000, decode_data=False,
                            enable_SMTPUTF8=True, loop=loop, **kwargs)
        server.local_part_limit = LOCAL_PART_LIMIT
        return server

    return LoopbackSMTP(make, handler)


@pytest.fixture(scope="module", params=[Recorder, HookedRecorder])
def servers(request: pytest.FixtureRequest) -> Iterator[dict[str, LoopbackSMTP]]:
    started = {"standard": _server(SMTP, request.param()), "lean": _server(LeanSMTP, request.param())}
    yield started
    for server in started.values():
        server.stop()


BODY = b"Subject: x\r\n\r\nbody\r\n."  # sent after a DATA only if the server said 354


def _replies(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each line, collect each (multi-line) reply; stop when the server hangs up."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        pending = b""

        def reply() -> bytes:
            nonlocal pending
            collected = []
            while True:
                while b"\r\n" not in pending:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return b"<closed>"
                    pending += chunk
                line, pending = pending.split(b"\r\n", 1)
                collected.append(line)
                if line[3:4] != b"-":
                    return b"\n".join(collected)

        replies.append(reply())
        for line in lines:
            if line is BODY and not replies[-1].startswith(b"354"):
                continue
            try:
                sock.sendall(line + b"\r\n")
                replies.append(reply())
            except ConnectionResetError:
                replies.append(b"<closed>")
            if replies[-1] == b"<closed>":
                break
    return replies


PATHS = [
    b"<a@example.com>", b"<A.B-c+d@Example.COM>", b"<>", b"<a@[127.0.0.1]>", b'<"quoted local"@example.com>',
    b"<@relay.example:a@example.com>", b"<a..b@example.com>", b"<.a@example.com>", b"<a.@example.com>",
    b"<a@example..com>", b"<a@-example.com>", b"<a@example.com.>", b"<a>", b"<@example.com>", b"<a@>",
    b"a@example.com", b"a@example.com SIZE=100", b"<a@example.com", b"a@example.com>", b"<a@b@c>",
    b"<a@example.com> (comment) SIZE=100", b"<a@example.com>(comment)", b"<a@example.com>\tSIZE=100",
    b"<=?utf-8?q?caf=C3=A9?=@example.com>", b"<caf\xc3\xa9@example.com>", b"<a@exampl\xc3\xa9.com>",
    b"<" + b"x" * 64 + b"@example.com>", b"<" + b"x" * 65 + b"@example.com>", b"<a\\b@example.com>",
    b"<a b@example.com>", b"<a@example.com>SIZE=100", b"<a@example.com>  SIZE=100  BODY=8BITMIME",
    b"< a@example.com>", b"<a@example.com >", b"<a(x)@example.com>", b"<", b"<>>", b"",
    b"<a@example.com> \x0bSIZE=1", b"<!#$%&'*+/=?^_`{|}~-@example.com>", b"<a@1.2.3.4>",
]
PARAMS = [b"", b" SIZE=100", b" SIZE=100000", b" SIZE=abc", b" SIZE", b" BODY=8BITMIME", b" BODY=BINARYMIME",
          b" SMTPUTF8", b" SMTPUTF8=yes", b" X-UNKNOWN=1", b" =x", b" size=10 body=7bit", b" NOTIFY=NEVER"]


def _path(rng: random.Random) -> bytes:
    return rng.choice(PATHS) if rng.random() < 0.5 else rng.choice([b"<a@example.com>", b"<B.c+d@Example.org>"])


def _params(rng: random.Random) -> bytes:
    return rng.choice(PARAMS) if rng.random() < 0.5 else b""


def _script(rng: random.Random) -> list[bytes]:
    """Transactions mostly well formed, with odd paths, parameters, keywords and commands mixed in."""
    lines = [rng.choice([b"EHLO client.example", b"HELO client.example", b"EHLO client.example"])]
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.2:
            lines.append(rng.choice([b"RSET", b"RSET x", b"NOOP", b"VRFY <a@example.com>", b"VRFY a@b", b"HELP MAIL",
                                     b"EHLO again.example", b"BOGUS", b"", b"DATA", b"DATA x"]))
            continue
        mail = b"MAIL FROM:" if rng.random() < 0.8 else rng.choice([b"MAIL FROM: ", b"mail from:", b"MAIL TO:",
                                                                     b"MAIL", b"MAIL FROM"])
        lines.append(mail + _path(rng) + _params(rng))
        for _ in range(rng.randint(1, 3)):
            rcpt = b"RCPT TO:" if rng.random() < 0.8 else rng.choice([b"RCPT TO: ", b"rcpt to:", b"RCPT FROM:",
                                                                      b"RCPT", b"RCPT TO"])
            lines.append(rcpt + _path(rng) + _params(rng))
        lines += [b"DATA", BODY] if rng.random() < 0.8 else [b"DATA x", b"RSET"]
    return lines


def test_same_replies_and_envelopes_as_aiosmtpd(servers: dict[str, LoopbackSMTP]) -> None:
    rng = random.Random(20240509)
    for n in range(150):
        script = _script(rng)
        standard, lean = (_replies(servers[name].port, script) for name in ("standard", "lean"))
        assert lean == standard, (n, script)
    assert servers["lean"].handler.envelopes == servers["standard"].handler.envelopes
    assert len(servers["lean"].handler.envelopes) > 10  # the scripts did reach DATA with a good envelope


def test_every_listed_path_in_mail_and_rcpt(servers: dict[str, LoopbackSMTP]) -> None:
    for path in PATHS:
        for params in (b"", b" SIZE=100 BODY=8BITMIME"):
            script = [b"EHLO client.example", b"MAIL FROM:" + path + params, b"RCPT TO:" + path + params]
            assert _replies(servers["lean"].port, script) == _replies(servers["standard"].port, script), script


def test_plain_path_is_what_the_tokenizer_returns() -> None:
    from email._header_value_parser import get_angle_addr

    rng = random.Random(7)
    alphabet = "ab.-=?@<>() \t\"\\[]:,;!#$%&'*/^`{|}~\x0b\u00e9\u3000"
    checked = 0
    for _ in range(20_000):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        local = "".join(rng.choice("ab.-=?!") for _ in range(rng.randint(1, 6)))
        domain = "".join(rng.choice("ab.-=?") for _ in range(rng.randint(1, 6)))
        arg = f"<{local}@{domain}>{tail}"
        fast = plain_path(arg)
        if fast is None:
            continue
        token, rest = get_angle_addr(arg)
        assert fast == (token.addr_spec, rest), arg
        checked += 1
    assert checked > 1000


def test_idle_timeout_counts_from_the_last_command() -> None:
    """One re-arming timer per connection: a session that keeps talking stays, an idle one is closed on time."""
    server = _server(LeanSMTP, Recorder(), timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            assert sock.recv(512).startswith(b"220")
            for _ in range(6):  # 1.2 s in all, longer than the timeout, but never 0.5 s idle
                time.sleep(0.2)
                sock.sendall(b"NOOP\r\n")
                assert sock.recv(512).startswith(b"250")
            started = time.monotonic()
            assert sock.recv(512) == b""  # closed for idleness
            assert 0.3 < time.monotonic() - started < 2.0
    finally:
        server.stop()
