"""Builders shared by the tests and the benchmarks: mail, waiting, settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TypeVar

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
