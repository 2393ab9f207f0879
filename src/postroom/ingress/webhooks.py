"""Inbound webhooks of Mailgun, Postmark and SendGrid: who may post, and the raw message in each payload.

Postmark and SendGrid authenticate with basic auth (the URL the provider is
given carries ``user:password``; SendGrid may instead carry ``?key=PASSWORD``),
so they are checked from the headers before any of the body is read. Mailgun
signs the payload itself (HMAC-SHA256 of timestamp + token with the webhook
signing key), so its signature can only be checked once the body, bounded by
the size limit, is read. Secrets are per tenant and provider and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from email.utils import getaddresses

from postroom.app import App
from postroom.storage import ingress
from postroom.storage.ingress import PROVIDERS

MAX_SKEW_SECONDS = 15 * 60  # Mailgun timestamps older or newer than this are refused (replays)


class WebhookRefused(Exception):
    """The request is not from the tenant's provider (or is unusable); ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    tenant_id: int
    provider: str
    secret: str


@dataclass(frozen=True)
class Payload:
    raw: bytes
    recipients: tuple[str, ...]
    sender: str | None


def _basic(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authenticate(app: App, provider: str, tenant: str, authorization: str, key: str | None) -> Caller:
    """Check what can be checked before the body: the provider, the tenant's secret, basic auth or ?key=."""
    if provider not in PROVIDERS:
        raise WebhookRefused(404, f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    with app.session() as session:
        found = ingress.webhook_secret(session, tenant, provider)
    if found is None:  # same answer for an unknown tenant: the URL reveals nothing
        raise WebhookRefused(401, f"no {provider} webhook is configured here")
    caller = Caller(found[0], provider, found[1])
    if provider == "mailgun":
        return caller
    given = _basic(authorization)
    if given is not None and _same(given, caller.secret):
        return caller
    if provider == "sendgrid" and key is not None and _same(key, caller.secret.partition(":")[2]):
        return caller
    raise WebhookRefused(401, f"{provider} webhook: wrong or missing credentials")


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def verify_mailgun(caller: Caller, timestamp: str, token: str, signature: str, now: float | None = None) -> None:
    if not (timestamp.isdigit() and token and signature):
        raise WebhookRefused(401, "mailgun webhook: timestamp, token and signature are required")
    if abs((now or time.time()) - int(timestamp)) > MAX_SKEW_SECONDS:
        raise WebhookRefused(401, "mailgun webhook: timestamp too old or in the future")
    if not _same(mailgun_signature(caller.secret, timestamp, token), signature.lower()):
        raise WebhookRefused(401, "mailgun webhook: bad signature")


def _addresses(*values: object) -> tuple[str, ...]:
    found = [addr for _, addr in getaddresses([v for v in values if isinstance(v, str) and v]) if addr]
    return tuple(dict.fromkeys(found))


def _raw(value: object, field: str) -> bytes:
    if isinstance(value, bytes) and value.strip():
        return value
    if isinstance(value, str) and value.strip():
        return value.encode("utf-8")
    raise WebhookRefused(400, f"the payload has no raw message in {field!r} (turn on the provider's raw MIME option)")


def mailgun_payload(form: dict[str, object]) -> Payload:
    """A Mailgun "store and notify" / forward to a URL ending in ``mime``: the message in ``body-mime``."""
    return Payload(_raw(form.get("body-mime"), "body-mime"), _addresses(form.get("recipient")),
                   form.get("sender") if isinstance(form.get("sender"), str) else None)  # type: ignore[arg-type]


def sendgrid_payload(form: dict[str, object]) -> Payload:
    """SendGrid Inbound Parse with "POST the raw, full MIME message": ``email``, and the SMTP ``envelope``."""
    envelope: dict = {}
    if isinstance(form.get("envelope"), str):
        try:
            loaded = json.loads(form["envelope"])  # type: ignore[arg-type]
            envelope = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            envelope = {}
    to = envelope.get("to") if isinstance(envelope.get("to"), list) else []
    return Payload(_raw(form.get("email"), "email"), _addresses(*to, form.get("to")),
                   envelope.get("from") if isinstance(envelope.get("from"), str) else None)


def postmark_payload(body: object) -> Payload:
    """Postmark's inbound JSON with "Include raw email content": ``RawEmail``."""
    if not isinstance(body, dict):
        raise WebhookRefused(400, "postmark webhook: the body is not a JSON object")
    return Payload(_raw(body.get("RawEmail"), "RawEmail"),
                   _addresses(body.get("OriginalRecipient"), body.get("To"), body.get("Cc")),
                   None)
