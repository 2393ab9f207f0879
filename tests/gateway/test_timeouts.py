"""SMTP timeouts through a real socket: an idle limit per read, and a separate bound on the whole DATA body."""

from __future__ import annotations

import select
import time
from collections.abc import Iterable, Iterator

import pytest
from sqlalchemy import select as sql_select

from postroom.service import Service
from postroom.settings import Settings
from postroom.storage.tables import InboundMessage
from postroom.testing import RawSMTP, make_eml

IDLE = 1
DATA_TOTAL = 3
GAP = 0.3  # well under IDLE, so only the DATA total can end a trickle
RCPT = "inbox@acme.mail.test"


@pytest.fixture
def server(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    svc = Service(settings.replace(smtp_timeout=IDLE, smtp_data_timeout=DATA_TOTAL)).start()
    yield svc
    svc.stop()


def _stored(server: Service) -> list[bytes]:
    with server.app.session() as session:
        shas = session.scalars(sql_select(InboundMessage.sha256).order_by(InboundMessage.id)).all()
    return [server.app.blobs.get(sha) for sha in shas]


def _in_data(server: Service) -> RawSMTP:
    client = RawSMTP(server.smtp_port)
    assert client.cmd("EHLO slow.example")[0] == 250
    assert client.cmd("MAIL FROM:<slow@example.com>")[0] == 250
    assert client.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
    assert client.cmd("DATA")[0] == 354
    return client


def _trickle(client: RawSMTP, pieces: Iterable[bytes], give_up: float) -> float:
    """Send ``pieces`` GAP seconds apart, stopping as soon as the server says something; seconds spent."""
    started = time.monotonic()
    for piece in pieces:
        client.send(piece)
        readable, _, _ = select.select([client.sock], [], [], GAP)
        if readable or time.monotonic() - started > give_up:
            break
    return time.monotonic() - started


def _wait_reply(client: RawSMTP) -> tuple[tuple[int, str], float]:
    started = time.monotonic()
    return client.reply(), time.monotonic() - started


def test_slow_steady_body_longer_than_the_idle_timeout_is_accepted(server: Service) -> None:
    body = make_eml(subject="Slow link", body="line\n" * 40, message_id="<slow@example.com>")
    step = len(body) // 6 + 1
    client = _in_data(server)
    spent = _trickle(client, [body[i:i + step] for i in range(0, len(body), step)], give_up=DATA_TOTAL)
    assert IDLE < spent < DATA_TOTAL, spent
    code, text = client.cmd(b".")
    assert code == 250, text
    assert client.cmd("QUIT")[0] == 221
    client.close()
    assert _stored(server) == [body]


def test_silent_client_is_cut_with_421_between_commands_and_inside_data(server: Service) -> None:
    between = RawSMTP(server.smtp_port)
    assert between.cmd("EHLO quiet.example")[0] == 250
    inside = _in_data(server)
    inside.send(b"Subject: half a message\r\n")
    for client in (between, inside):
        (code, text), waited = _wait_reply(client)
        assert code == 421 and "4.4.2" in text and "timeout" in text, text
        assert waited < IDLE + 2, waited
        assert client.reply() == (0, ""), "421 closes the connection"
        client.close()
    assert _stored(server) == []


def test_body_dripping_past_the_data_total_is_cut_with_421(server: Service) -> None:
    client = _in_data(server)
    spent = _trickle(client, iter(lambda: b"drip drip\r\n", None), give_up=DATA_TOTAL + 3)
    (code, text), _ = _wait_reply(client)
    assert code == 421 and "4.4.2" in text and "too long" in text, text
    assert DATA_TOTAL - GAP < spent < DATA_TOTAL + 2, spent
    client.close()
    assert _stored(server) == []
    fine = _in_data(server)
    fine.send(make_eml(message_id="<after@example.com>") + b".\r\n")
    assert fine.reply()[0] == 250, "the gateway still serves"
    fine.close()
