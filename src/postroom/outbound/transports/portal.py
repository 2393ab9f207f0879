"""Portal notifications: a signed JSON POST to the portal's webhook.

Signature: ``X-Postroom-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` with
``X-Postroom-Timestamp`` (Unix seconds), as Stripe and Slack do, so the portal
can reject replays. ``Idempotency-Key`` is the Message-ID: the portal drops
repeats, which makes re-sending after a crash safe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from postroom.outbound.transports.base import Outgoing, PermanentFailure, SendResult, TemporaryFailure

SIGNATURE_HEADER = "X-Postroom-Signature"
TIMESTAMP_HEADER = "X-Postroom-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TEMPORARY_STATUS = frozenset({408, 409, 425, 429})
TOLERANCE = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           tolerance: int = TOLERANCE) -> bool:
    """What a portal runs on receipt: right key, right body, recent timestamp."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class PortalTransport:
    url: str
    secret: str
    timeout: float = 15.0
    name: str = "portal"
    idempotent: bool = True

    def send(self, message: Outgoing, on_commit: Callable[[], None]) -> SendResult:
        body = json.dumps(dict(message.payload), ensure_ascii=False, separators=(",", ":"), default=str).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            IDEMPOTENCY_HEADER: message.message_id,
            "User-Agent": "postroom",
        }
        on_commit()
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc
        text = response.text[:500]
        if response.is_success:
            provider_id = response.headers.get("X-Request-Id") or _json_id(response)
            return SendResult(provider_id=provider_id, response=text or response.reason_phrase,
                              code=response.status_code)
        if response.status_code >= 500 or response.status_code in TEMPORARY_STATUS:
            raise TemporaryFailure(text or response.reason_phrase, response.status_code)
        raise PermanentFailure(text or response.reason_phrase, response.status_code)


def _json_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return str(data["id"]) if isinstance(data, dict) and data.get("id") is not None else None
