"""Rate limits: a flooding IP or sender is slowed with 421/451 while a well-behaved sender gets through."""

from __future__ import annotations

import smtplib
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from postroom.gateway.ratelimit import Rate, TokenBuckets
from postroom.service import Service
from postroom.settings import Settings
from postroom.testing import RawSMTP, make_eml

FLOOD = 60


@pytest.fixture
def limited(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    """The real service with small buckets: 5 messages per sender, 20 per client IP, slow refill."""
    svc = Service(settings.replace(rate_sender_per_minute=6, rate_sender_burst=5,
                                   rate_ip_per_minute=6, rate_ip_burst=20)).start()
    yield svc
    svc.stop()


def _send(port: int, source: str, sender: str, index: int) -> int:
    """One whole SMTP transaction from ``source``; the reply code to MAIL FROM (or 250 if delivered)."""
    client = RawSMTP(port, source=source)
    try:
        client.cmd("EHLO flood.example")
        code, _ = client.cmd(f"MAIL FROM:<{sender}>")
        if code != 250:
            return code
        assert client.cmd("RCPT TO:<inbox@acme.mail.test>")[0] == 250
        assert client.cmd("DATA")[0] == 354
        client.send(make_eml(sender=sender, message_id=f"<{index}.{source}@flood.example>") + b".\r\n")
        return client.reply()[0]
    finally:
        client.close()


def test_one_flooding_sender_cannot_starve_another(limited: Service) -> None:
    """One sender floods from four IPs in parallel (under each IP's limit) while another sender sends."""
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def flood(start: int) -> None:
        for i in range(start, FLOOD, 4):
            code = _send(limited.smtp_port, f"127.0.0.{10 + start}", "flood@spam.example", i)
            with lock:
                codes[code] += 1

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    good = [_send(limited.smtp_port, "127.0.0.3", "tenant.customer@example.com", i) for i in range(3)]
    for thread in threads:
        thread.join(30)
    assert good == [250, 250, 250]
    assert codes[250] == 5, codes  # the sender's burst, then
    assert codes[451] == FLOOD - 5, codes  # temporary refusals, so a real MTA retries later


def test_flooding_ip_gets_421_and_is_disconnected_others_are_not(limited: Service) -> None:
    codes = [_send(limited.smtp_port, "127.0.0.2", f"s{i}@spam.example", i) for i in range(25)]
    assert codes == [250] * 20 + [421] * 5
    client = RawSMTP(limited.smtp_port, source="127.0.0.2")
    client.cmd("EHLO flood.example")
    assert client.cmd("MAIL FROM:<late@spam.example>")[0] == 421
    assert client.reply() == (0, ""), "after 421 the server closes the connection"
    client.close()
    assert _send(limited.smtp_port, "127.0.0.3", "fine@example.com", 0) == 250


def test_flood_through_smtplib_sees_temporary_codes(limited: Service) -> None:
    """What a real MTA sees: SMTPSenderRefused with a 4xx code, i.e. retry later, never a bounce."""
    client = smtplib.SMTP("127.0.0.1", limited.smtp_port, timeout=10, source_address=("127.0.0.4", 0))
    results = []
    for i in range(7):
        try:
            client.sendmail("mta@example.org", ["inbox@acme.mail.test"], make_eml(message_id=f"<m{i}@example.org>"))
            results.append(250)
        except smtplib.SMTPSenderRefused as exc:
            results.append(exc.smtp_code)
            client.rset()
    client.quit()
    assert results == [250] * 5 + [451] * 2


def test_buckets_refill_over_time_and_forget_nobody_early() -> None:
    now = [0.0]
    buckets = TokenBuckets(Rate(per_minute=60, burst=2), clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [True, True, False]
    assert buckets.take("b")
    now[0] += 1.0  # one token per second
    assert buckets.take("a") and not buckets.take("a")
    now[0] += 600
    assert [buckets.take("a") for _ in range(3)] == [True, True, False], "never more than the burst"
    assert TokenBuckets(Rate(0, 0)).take("x"), "per_minute 0 disables the limit"
