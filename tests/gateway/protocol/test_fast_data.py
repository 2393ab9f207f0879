"""The chunked DATA reader against aiosmtpd's own line-by-line DATA path, byte for byte.

Two real servers on 127.0.0.1 (aiosmtpd's ``SMTP`` and postroom's
``FastDataSMTP``) receive the same wire bytes from a raw socket client that
sends them in awkward pieces (CR and LF in different segments, a chunk ending
in the middle of the end marker); every reply and every stored body must be
identical. The reader is also fed directly with every two-piece split of
small bodies, since TCP may merge what the client sends.
"""

from __future__ import annotations

import asyncio
import random
import smtplib
import socket
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.gateway.protocol.data import DataState, read_data
from postroom.gateway.protocol.smtp import FastDataSMTP
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import inbound
from postroom.testing import LoopbackSMTP

LIMIT = 6000
LINE_LIMIT = SMTP.line_length_limit
CODES = {DataState.NOMINAL: b"250", DataState.TOO_LONG: b"500", DataState.TOO_MUCH: b"552"}


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.bodies.append(envelope.original_content or b"")
        return "250 OK"


def _server(smtp_class: type[SMTP], handler: Recorder) -> LoopbackSMTP:
    return LoopbackSMTP(lambda loop: smtp_class(handler, data_size_limit=LIMIT, decode_data=False,
                                                enable_SMTPUTF8=True, loop=loop), handler)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, tuple[int, Recorder]]]:
    started = {name: _server(cls, Recorder()) for name, cls in (("standard", SMTP), ("fast", FastDataSMTP))}
    yield {name: (server.port, server.handler) for name, server in started.items()}
    for server in started.values():
        server.stop()


class RawClient:
    """Speaks SMTP over a plain socket so the DATA bytes on the wire are exactly ours."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""
        assert self.reply().startswith(b"220")
        self.command(b"EHLO client.example")

    def reply(self) -> bytes:
        lines = []
        while True:
            while b"\r\n" not in self.pending:
                chunk = self.sock.recv(65536)
                assert chunk, "server closed the connection"
                self.pending += chunk
            line, self.pending = self.pending.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\n".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def send(self, wire: bytes, cuts: list[int]) -> bytes:
        """One transaction; ``wire`` is the DATA payload with its end marker, sent split at ``cuts``."""
        assert self.command(b"MAIL FROM:<a@example.com> BODY=8BITMIME").startswith(b"250")
        assert self.command(b"RCPT TO:<b@example.com>").startswith(b"250")
        assert self.command(b"DATA").startswith(b"354")
        bounds = [0, *sorted(set(cuts)), len(wire)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if hi > lo:
                self.sock.sendall(wire[lo:hi])
                time.sleep(0.0005)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def _line(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.25:
        body = rng.choice([b"Hello there", b"", b"-- ", b"Subject: x", b"From nobody"])
    elif kind < 0.45:
        body = b"." * rng.randint(1, 3) + rng.choice([b"", b"x", b" dotted", b"."])
    elif kind < 0.6:
        body = bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 40)))  # 8-bit
    elif kind < 0.7:
        body = rng.choice([b"bare\nLF", b"bare\rCR", b"\n.\n", b"ends in CR\r", b"\r", b"\n", b"x\r\r"])
    elif kind < 0.72:
        body = b"y" * rng.choice([LINE_LIMIT - 4, LINE_LIMIT - 3, LINE_LIMIT - 2, LINE_LIMIT - 1, LINE_LIMIT,
                                  LINE_LIMIT + 1, LINE_LIMIT + 2, 3000])
    else:
        body = bytes(rng.randrange(0x20, 0x7F) for _ in range(rng.randint(0, 120)))
    return b".." if body == b"." else body


def _wire(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines) + b".\r\n"


def _filler(size: int) -> bytes:
    """``size`` bytes of short CRLF lines."""
    body = b"z" * 98 + b"\r\n"
    body *= size // 100
    return body + b"w" * (size - len(body) - 2) + b"\r\n"


def _cuts(wire: bytes, rng: random.Random) -> list[int]:
    """Split points, favouring the places a chunked reader could get wrong."""
    tricky = [i for i in range(1, len(wire)) if wire[i - 1:i] in (b"\r", b"\n", b".")]
    cuts = rng.sample(tricky, min(len(tricky), rng.randint(0, 4)))
    cuts += [rng.randrange(1, len(wire)) for _ in range(rng.randint(0, 3))]
    cuts += [len(wire) - k for k in (1, 2, 3, 4) if rng.random() < 0.3 and len(wire) > k]
    return cuts


def _generated(count: int, seed: int) -> list[tuple[bytes, list[int]]]:
    rng = random.Random(seed)
    cases = [(_wire([]), []), (_wire([b""]), []), (b"\r\n.\r\n", [1, 2, 3])]
    for size in (LIMIT - 2, LIMIT, LIMIT + 1, LIMIT + 2):  # as sent (stuffed, CRLFs counted), end marker excluded
        body = _filler(size)
        cases.append((body + b".\r\n", [rng.randrange(1, len(body))]))
    for long_len in (LINE_LIMIT - 3, LINE_LIMIT - 2, LINE_LIMIT - 1, LINE_LIMIT, LINE_LIMIT + 1):
        for start in (LIMIT - 5, LIMIT - 500, LIMIT - long_len - 2, LIMIT - long_len - 1, LIMIT + 10):
            body = _filler(start) + b"L" * long_len + b"\r\n" + b"tail\r\n"  # long line around the size limit
            cases.append((body + b".\r\n", [start, start + 1]))
    while len(cases) < count:
        lines = [_line(rng) for _ in range(rng.randint(1, 40))]
        wire = _wire(lines)
        cases.append((wire, _cuts(wire, rng)))
    return cases


def _send_all(port: int, cases: list[tuple[bytes, list[int]]]) -> list[bytes]:
    client = RawClient(port)
    try:
        return [client.send(wire, cuts) for wire, cuts in cases]
    finally:
        client.close()


def test_same_replies_and_bytes_as_aiosmtpd(servers: dict[str, tuple[int, Recorder]]) -> None:
    cases = _generated(400, seed=9)
    results = {}
    for name, (port, recorder) in servers.items():
        recorder.bodies.clear()
        results[name] = (_send_all(port, cases), list(recorder.bodies))
    std_replies, std_bodies = results["standard"]
    fast_replies, fast_bodies = results["fast"]
    assert fast_replies == std_replies
    assert fast_bodies == std_bodies
    kinds = {reply[:3] for reply in std_replies}
    assert kinds == {b"250", b"500", b"552"}, kinds  # the generator does reach every outcome
    assert sum(reply.startswith(b"250") for reply in std_replies) > 200


def test_pipelined_command_after_end_marker_is_kept(servers: dict[str, tuple[int, Recorder]]) -> None:
    replies = {}
    for name, (port, _) in servers.items():
        client = RawClient(port)
        client.command(b"MAIL FROM:<a@example.com>")
        client.command(b"RCPT TO:<b@example.com>")
        client.command(b"DATA")
        client.sock.sendall(b"Subject: x\r\n\r\n..hi\r\n.\r\nNOOP\r\n")
        replies[name] = (client.reply(), client.reply())
        client.close()
    assert replies["fast"] == replies["standard"] == (b"250 OK", b"250 OK")


def test_smtplib_messages_arrive_identical(servers: dict[str, tuple[int, Recorder]]) -> None:
    rng = random.Random(3)
    messages = [b"Subject: t\r\n\r\n" + b"\r\n".join(_line(rng) for _ in range(30)).replace(b"y" * 900, b"y")
                for _ in range(20)]
    stored = {}
    for name, (port, recorder) in servers.items():
        recorder.bodies.clear()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for msg in messages:
                client.sendmail("a@example.com", ["b@example.com"], msg)
        stored[name] = list(recorder.bodies)
    assert stored["fast"] == stored["standard"]
    assert len(stored["fast"]) == len(messages)


async def _feed(pieces: list[bytes], size_limit: int) -> tuple[DataState, bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=LINE_LIMIT)

    async def producer() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)

    task = asyncio.create_task(producer())
    result = await read_data(reader, size_limit=size_limit, line_limit=LINE_LIMIT)
    await task
    return result.state, result.content, bytes(reader._buffer)


def test_help_answers_as_aiosmtpd(servers: dict[str, tuple[int, Recorder]]) -> None:
    """HELP reads each command's syntax from its method: the overridden DATA must still declare its own."""
    answers = {}
    for name, (port, _handler) in servers.items():
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            answers[name] = [client.docmd("HELP", command) for command in ("DATA", "MAIL", "")]
    assert answers["fast"] == answers["standard"]
    assert answers["fast"][0] == (250, b"Syntax: DATA")


def test_every_split_point_gives_the_same_result(servers: dict[str, tuple[int, Recorder]]) -> None:
    rng = random.Random(5)
    cases = [_wire([b"a", b".b", b"..", b"\r", b"c\n", b""]), _wire([b"y" * (LINE_LIMIT - 1), b".x"]),
             _wire([b"\x80\xff", b"." + b"q" * 20]), b".\r\n"]
    cases += [_wire([_line(rng) for _ in range(6)]) for _ in range(6)]
    straddling = [_filler(start) + b"L" * long_len + b"\r\n" + b"tail\r\n.\r\n"
                  for long_len, start in ((LINE_LIMIT - 1, LIMIT - 5), (LINE_LIMIT + 1, LIMIT - 5),
                                          (LINE_LIMIT, LIMIT - 5), (LINE_LIMIT - 2, LIMIT - 500),
                                          (LINE_LIMIT, LIMIT + 3))]
    cases += straddling
    port, recorder = servers["standard"]
    recorder.bodies.clear()
    expected_replies = _send_all(port, [(wire, []) for wire in cases])
    expected = iter(recorder.bodies)
    trailer = b"QUIT\r\n"
    for wire, reply in zip(cases, expected_replies, strict=True):
        want = next(expected) if reply.startswith(b"250") else None
        stream = wire + trailer
        cuts = range(1, len(stream)) if len(stream) < 3000 else [
            *range(LIMIT - 1100, LIMIT + 1100, 7), *range(LIMIT + LINE_LIMIT - 15, LIMIT + LINE_LIMIT + 10)]
        for cut in cuts:
            state, content, rest = asyncio.run(_feed([stream[:cut], stream[cut:]], LIMIT))
            assert CODES[state] == reply[:3], (wire, cut)
            assert content == want, (wire, cut)
            assert rest == trailer


def test_oversize_is_drained_and_connection_stays_usable(servers: dict[str, tuple[int, Recorder]]) -> None:
    big = (b"x" * 78 + b"\r\n") * 2000 + b".\r\n"  # 160 KB against a 6 KB limit
    for port, _ in servers.values():
        client = RawClient(port)
        assert client.send(big, [70_000]) == b"552 Error: Too much mail data"
        assert client.send(b"ok\r\n.\r\n", []) == b"250 OK"
        client.close()


class TextRecorder(Recorder):
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.bodies.append(envelope.content)
        return "250 OK"


@pytest.mark.parametrize("smtputf8", [True, False])
def test_decoded_content_is_aiosmtpd_s(smtputf8: bool) -> None:
    """With ``decode_data`` the handler gets text: UTF-8 with surrogate escapes, or strict ASCII (500 if not)."""
    bodies = [_wire([b"Subject: x", b"", b"caf\xc3\xa9 \xff", b"..dot"]), _wire([b"plain", b"..ascii"])]
    seen = {}
    for smtp_class in (SMTP, FastDataSMTP):
        handler = TextRecorder()
        server = LoopbackSMTP(lambda loop, cls=smtp_class, handler=handler: cls(
            handler, decode_data=True, enable_SMTPUTF8=smtputf8, loop=loop), handler)
        try:
            client = RawClient(server.port)
            replies = []
            for wire in bodies:
                replies += [client.command(b"MAIL FROM:<a@example.com>"), client.command(b"RCPT TO:<b@example.com>"),
                            client.command(b"DATA")]
                client.sock.sendall(wire)
                replies.append(client.reply())
                replies.append(client.command(b"RSET"))
            client.close()
        finally:
            server.stop()
        seen[smtp_class] = replies, handler.bodies
    assert seen[FastDataSMTP] == seen[SMTP]
    assert len(seen[SMTP][1]) == (2 if smtputf8 else 1)


@pytest.fixture
def small_limit_service(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    svc = Service(settings.replace(max_message_size=LIMIT), run_workers=False, run_http=False).start()
    yield svc
    svc.stop()


def test_gateway_size_limit_exactly_at_and_over(small_limit_service: Service) -> None:
    """Through the gateway: a body of exactly the limit is stored byte for byte; one byte more is 552 5.3.4."""
    head = b"From: a@example.com\r\nTo: inbox@acme.mail.test\r\nSubject: limit\r\n\r\n"
    at_limit = head + b"." * 10 + b"\r\n"
    while LIMIT - len(at_limit) > 100:
        at_limit += b"b" * 78 + b"\r\n"
    at_limit += b"b" * (LIMIT - len(at_limit) - 2) + b"\r\n"
    assert len(at_limit) == LIMIT
    client = RawClient(small_limit_service.smtp_port)
    client.command(b"MAIL FROM:<a@example.com>")
    client.command(b"RCPT TO:<inbox@acme.mail.test>")
    client.command(b"DATA")
    client.sock.sendall(at_limit + b".\r\n")
    assert client.reply().startswith(b"250 2.0.0")
    client.command(b"MAIL FROM:<a@example.com>")
    client.command(b"RCPT TO:<inbox@acme.mail.test>")
    client.command(b"DATA")
    client.sock.sendall(at_limit[:-2] + b"b\r\n.\r\n")
    assert client.reply() == b"552 5.3.4 Message too big for this system"
    client.close()
    app = small_limit_service.app
    with app.session() as session:
        rows = inbound.list_inbound(session)
    assert len(rows) == 1
    assert app.blobs.get(rows[0].sha256) == head + b"." * 9 + b"\r\n" + at_limit[len(head) + 12:]
