"""Spoofed senders: MAIL FROM alone never spends a sender's budget; the flooding IP pays, accepted mail is counted."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from postroom.service import Service
from postroom.settings import Settings
from postroom.storage.tables import InboundMessage
from postroom.testing import RawSMTP, make_eml

SENDER_BURST = 5
IP_BURST = 20
FLOOD = 320
VICTIM = "billing@victim.example"
RCPT = "inbox@acme.mail.test"


@pytest.fixture
def limited(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    """Small buckets with a slow refill (one token per 10 s), so nothing refills during a test."""
    svc = Service(settings.replace(rate_sender_per_minute=6, rate_sender_burst=SENDER_BURST,
                                   rate_ip_per_minute=6, rate_ip_burst=IP_BURST)).start()
    yield svc
    svc.stop()


def _replies(client: RawSMTP) -> list[int]:
    """Every reply code until the server closes the connection."""
    codes = []
    try:
        while (code := client.reply()[0]) != 0:
            codes.append(code)
    except ConnectionResetError:  # the server closed with our pipelined commands unread
        pass
    return codes


def _flood(port: int) -> list[int]:
    """One connection pipelining FLOOD × (MAIL FROM:<victim>, RSET) in one write, no message sent."""
    client = RawSMTP(port)
    try:
        assert client.cmd("EHLO spoofer.example")[0] == 250
        client.send(f"MAIL FROM:<{VICTIM}>\r\nRSET\r\n".encode() * FLOOD)
        return _replies(client)
    finally:
        client.close()


def _victim_sends(port: int, count: int, tag: str) -> list[int]:
    """What the victim's real MTA (another client IP) sees for ``count`` messages: 250 or the refusal code."""
    codes = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0)) as client:
        for i in range(count):
            try:
                client.sendmail(VICTIM, [RCPT], make_eml(sender=VICTIM, message_id=f"<{tag}{i}@victim.example>"))
                codes.append(250)
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                codes.append(exc.smtp_code)
                client.rset()
    return codes


def _stored(service: Service) -> int:
    with service.app.session() as session:
        return session.scalar(select(func.count()).select_from(InboundMessage))


def test_spoofed_mail_from_flood_limits_the_flooding_ip_not_the_victim(limited: Service) -> None:
    codes = _flood(limited.smtp_port)
    assert codes == [250, 250] * IP_BURST + [421], "the IP pays per transaction, then 421 and closed"
    assert _flood(limited.smtp_port) == [421], "the flooding IP stays limited on a new connection"
    assert _stored(limited) == 0
    assert _victim_sends(limited.smtp_port, SENDER_BURST, "real") == [250] * SENDER_BURST, \
        "the victim's own budget was never spent by MAIL FROM alone"


def test_accepted_messages_beyond_the_sender_limit_get_451(limited: Service) -> None:
    assert _victim_sends(limited.smtp_port, SENDER_BURST + 2, "m") == [250] * SENDER_BURST + [451, 451]
    assert _stored(limited) == SENDER_BURST


def test_the_sender_is_charged_at_the_end_of_data(limited: Service) -> None:
    """Two transactions pass MAIL FROM on the sender's last token; only the first body to finish gets it."""
    assert _victim_sends(limited.smtp_port, SENDER_BURST - 1, "a") == [250] * (SENDER_BURST - 1)
    first, second = RawSMTP(limited.smtp_port, source="127.0.0.3"), RawSMTP(limited.smtp_port, source="127.0.0.4")
    for client in (first, second):
        assert client.cmd("EHLO mta.victim.example")[0] == 250
        assert client.cmd(f"MAIL FROM:<{VICTIM}>")[0] == 250
        assert client.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
        assert client.cmd("DATA")[0] == 354
    results = []
    for n, client in enumerate((first, second)):
        client.send(make_eml(sender=VICTIM, message_id=f"<last{n}@victim.example>") + b".\r\n")
        results.append(client.reply())
        client.close()
    assert [code for code, _ in results] == [250, 451], results
    assert "4.7.1" in results[1][1]
    assert _stored(limited) == SENDER_BURST
