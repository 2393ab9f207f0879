"""SMTP protocol abuse against the real server over raw sockets: right codes, and the server stays up."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from postroom.service import Service
from postroom.settings import Settings
from postroom.storage.tables import InboundMessage
from postroom.testing import RawSMTP, make_eml, wait_until

TIMEOUT = 2
RCPT = "inbox@acme.mail.test"


@pytest.fixture
def server(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    svc = Service(settings.replace(smtp_timeout=TIMEOUT, smtp_data_timeout=TIMEOUT + 1, max_recipients=5,
                                   max_message_size=20_000)).start()
    yield svc
    svc.stop()


@pytest.fixture
def client(server: Service) -> Iterator[RawSMTP]:
    conn = RawSMTP(server.smtp_port)
    yield conn
    conn.close()


def _rows(server: Service) -> int:
    with server.app.session() as session:
        return session.scalar(select(func.count()).select_from(InboundMessage))


def _still_serves(server: Service, tag: str) -> None:
    """A well-formed transaction on a fresh connection still gets its 250."""
    conn = RawSMTP(server.smtp_port)
    try:
        assert conn.cmd("EHLO ok.example")[0] == 250
        assert conn.cmd("MAIL FROM:<ok@example.com>")[0] == 250
        assert conn.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
        assert conn.cmd("DATA")[0] == 354
        conn.send(make_eml(message_id=f"<{tag}@ok.example>") + b".\r\n")
        assert conn.reply()[0] == 250
    finally:
        conn.close()


def _closed_within(conn: RawSMTP, seconds: float) -> float:
    started = time.monotonic()
    conn.sock.settimeout(seconds)
    while conn.file.readline():
        pass
    return time.monotonic() - started


def test_commands_out_of_order(server: Service, client: RawSMTP) -> None:
    assert client.cmd("MAIL FROM:<a@example.com>")[0] == 503  # before EHLO
    assert client.cmd("EHLO abuse.example")[0] == 250
    assert client.cmd(f"RCPT TO:<{RCPT}>")[0] == 503  # before MAIL
    assert client.cmd("DATA")[0] == 503
    assert client.cmd("MAIL FROM:<a@example.com>")[0] == 250
    assert client.cmd("MAIL FROM:<b@example.com>")[0] == 503  # nested MAIL
    assert client.cmd("DATA")[0] == 503  # no recipient yet
    assert client.cmd("BDAT 10 LAST")[0] == 500
    assert client.cmd("STARTTLS")[0] in (454, 502, 503)
    assert client.cmd("VRFY inbox")[0] in (252, 502)
    assert client.cmd("RSET")[0] == 250
    assert _rows(server) == 0
    _still_serves(server, "order")


def test_over_long_command_and_data_lines(server: Service, client: RawSMTP) -> None:
    client.cmd("EHLO abuse.example")
    assert client.cmd("NOOP " + "x" * 5000)[0] == 500
    assert client.cmd("MAIL FROM:<" + "a" * 2000 + "@example.com>")[0] == 500
    assert client.cmd("NOOP")[0] == 250
    client.cmd("MAIL FROM:<a@example.com>")
    client.cmd(f"RCPT TO:<{RCPT}>")
    assert client.cmd("DATA")[0] == 354
    client.send(b"Subject: long\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n")
    assert client.reply()[0] == 500
    assert _rows(server) == 0
    _still_serves(server, "long")


def test_message_over_the_size_limit_is_refused_whole(server: Service, client: RawSMTP) -> None:
    client.cmd("EHLO abuse.example")
    assert client.cmd("MAIL FROM:<a@example.com> SIZE=50000")[0] == 552
    client.cmd("MAIL FROM:<a@example.com>")
    client.cmd(f"RCPT TO:<{RCPT}>")
    client.cmd("DATA")
    client.send(make_eml(body="z" * 70 + "\n") * 0 + make_eml(body=("z" * 70 + "\n") * 400) + b".\r\n")
    assert client.reply()[0] == 552
    assert _rows(server) == 0


def test_pipelining_flood(server: Service, client: RawSMTP) -> None:
    """Thousands of commands in one write, then a whole transaction pipelined in one write."""
    client.cmd("EHLO abuse.example")
    client.send(b"NOOP\r\n" * 3000)
    assert [client.reply()[0] for _ in range(3000)] == [250] * 3000
    body = make_eml(message_id="<pipelined@example.com>")
    client.send(b"MAIL FROM:<p@example.com>\r\nRCPT TO:<" + RCPT.encode() + b">\r\nDATA\r\n" + body + b".\r\n")
    assert [client.reply()[0] for _ in range(4)] == [250, 250, 354, 250]
    assert _rows(server) == 1


def test_too_many_recipients(server: Service, client: RawSMTP) -> None:
    client.cmd("EHLO abuse.example")
    client.cmd("MAIL FROM:<a@example.com>")
    codes = [client.cmd(f"RCPT TO:<reply+t{i}@acme.mail.test>")[0] for i in range(8)]
    assert codes == [250] * 5 + [452] * 3


def test_unknown_command_flood_is_cut_off(server: Service, client: RawSMTP) -> None:
    client.send(b"XYZZY\r\n" * 50)
    codes = []
    while True:
        code, _ = client.reply()
        if code == 0:
            break
        codes.append(code)
    assert codes[-1] == 502 and set(codes[:-1]) == {500}, "502 'too many unrecognized commands', then closed"
    _still_serves(server, "bogus")


def test_idle_client_is_disconnected(server: Service, client: RawSMTP) -> None:
    assert _closed_within(client, TIMEOUT + 5) < TIMEOUT + 3
    _still_serves(server, "idle")


def test_slowloris_partial_command_is_disconnected(server: Service, client: RawSMTP) -> None:
    started = time.monotonic()
    client.cmd("EHLO abuse.example")
    closed = False
    for char in b"NOOP NOOP NOOP NOOP":
        try:
            client.send(bytes([char]))
        except OSError:
            closed = True
            break
        time.sleep(0.3)
        if time.monotonic() - started > TIMEOUT + 4:
            break
    assert closed or _closed_within(client, 3) < 3
    assert time.monotonic() - started < TIMEOUT + 6


def test_slow_data_is_bounded_by_the_timeout(server: Service, client: RawSMTP) -> None:
    """Dripping one byte every 0.3 s keeps the idle timer alive, but the whole body is bounded (DATA timeout)."""
    client.cmd("EHLO abuse.example")
    client.cmd("MAIL FROM:<slow@example.com>")
    client.cmd(f"RCPT TO:<{RCPT}>")
    assert client.cmd("DATA")[0] == 354
    started = time.monotonic()
    try:
        for char in make_eml():
            client.send(bytes([char]))
            time.sleep(0.3)
            if time.monotonic() - started > TIMEOUT + 5:
                break
    except OSError:
        pass
    assert time.monotonic() - started < TIMEOUT + 4
    assert _rows(server) == 0
    _still_serves(server, "slow")


def test_nul_bytes(server: Service, client: RawSMTP) -> None:
    """NUL in the envelope is refused (PostgreSQL text cannot hold it: it would turn into 451 forever)."""
    client.cmd("EHLO abuse\x00.example")
    assert client.cmd(b"MAIL FROM:<a\x00b@example.com>")[0] == 553
    assert client.cmd(b"MAIL FROM:<a\x1bb@example.com>")[0] == 553
    assert client.cmd(b"NO\x00OP")[0] == 500
    client.cmd("MAIL FROM:<nul@example.com>")
    assert client.cmd(f"RCPT TO:<{RCPT}\x00x@example.com>")[0] >= 500
    assert client.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
    client.cmd("DATA")
    raw = make_eml(message_id="<nul@example.com>", body="nul\x00byte\n")
    client.send(raw + b".\r\n")
    assert client.reply()[0] == 250
    wait_until(lambda: _rows(server) == 1)
    with server.app.session() as session:
        key = session.scalar(select(InboundMessage.sha256))
    assert server.app.blobs.get(key) == raw, "stored byte for byte"
    with server.app.session() as session:
        assert session.scalar(select(InboundMessage.helo)) == "abuse.example"


def test_bare_lf_cannot_smuggle_a_second_message(server: Service, client: RawSMTP) -> None:
    """Commands ended by bare LF are understood, but '<LF>.<LF>' never ends DATA (SMTP smuggling)."""
    assert client.cmd(b"EHLO abuse.example\n".rstrip(b"\r\n"))[0] == 250
    client.send(b"MAIL FROM:<lf@example.com>\n")
    assert client.reply()[0] == 250
    client.send(f"RCPT TO:<{RCPT}>\n".encode())
    assert client.reply()[0] == 250
    assert client.cmd("DATA")[0] == 354
    client.send(b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@example.com>\nRCPT TO:<" + RCPT.encode()
                + b">\nDATA\nSubject: smuggled\n\nevil\n.\r\nend\r\n.\r\n")
    assert client.reply()[0] == 250
    assert client.cmd("NOOP")[0] == 250, "nothing smuggled is waiting as commands"
    wait_until(lambda: _rows(server) >= 1)
    time.sleep(0.2)
    assert _rows(server) == 1


def test_nul_in_headers_and_body_is_processed_not_failed(server: Service, client: RawSMTP) -> None:
    """PostgreSQL text and JSON cannot hold NUL: the parsed row must still be written (done, not failed)."""
    client.cmd("EHLO abuse.example")
    client.cmd("MAIL FROM:<nul@example.com>")
    client.cmd(f"RCPT TO:<{RCPT}>")
    client.cmd("DATA")
    client.send(b"From: N\x00ul <nul@example.com>\r\nSubject: a\x00b\r\nMessage-ID: <nul\x002@example.com>\r\n"
                b"References: <r\x00ef@example.com>\r\n\r\n"
                b"body\x00with nul\r\n.\r\n")
    assert client.reply()[0] == 250

    def finished() -> str | None:
        with server.app.session() as session:
            status = session.scalar(select(InboundMessage.status))
        return status if status not in (None, "pending", "processing") else None  # "retrying" is an answer

    assert wait_until(finished, timeout=20) == "done"
