"""What every transport offers, and the three ways a send can fail.

``on_commit`` is called at the last moment before the remote side may take
the message (SMTP: before the final dot; SES/webhook: before the request).
Delivery records it durably, so after a crash it knows whether a re-send
could duplicate. Idempotent transports (the portal webhook, keyed by
Message-ID) may always be retried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes = b""
    payload: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    provider_id: str | None
    response: str
    code: int | None = None
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)


class SendFailed(Exception):
    def __init__(self, response: str, code: int | None = None,
                 refused: Mapping[str, tuple[int, str]] | None = None) -> None:
        super().__init__(f"{code} {response}" if code else response)
        self.response = response
        self.code = code
        self.refused = dict(refused or {})


class TemporaryFailure(SendFailed):
    """Try again later: 4xx, timeouts before commit, throttling, dropped connections."""


class PermanentFailure(SendFailed):
    """Never retry: 5xx replies, rejected content, unverified senders."""


class UnknownOutcome(SendFailed):
    """The remote side may or may not have taken the message (lost after the commit point)."""


class Transport(Protocol):
    name: str
    idempotent: bool

    def send(self, message: Outgoing, on_commit: Callable[[], None]) -> SendResult: ...
