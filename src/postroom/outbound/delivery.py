"""Deliver one outbound row: claim -> build -> send -> record, with at-most-once after success.

Retries: a temporary failure (4xx, timeout, throttling, dropped connection
before the commit point) defers the row with exponential backoff and full
jitter on the upper half (``d/2 + U(0, d/2)``), until its lifetime (default
5 days, as Postfix's ``maximal_queue_lifetime``) runs out; a permanent
failure (5xx) fails it at once.

At most once: before the transport's point of no return (SMTP: just before
the final dot; SES: just before the API call) the row's phase is committed
as ``committing``. A worker that dies before that point leaves ``started``,
and the row is simply sent again once its lease expires. A worker that dies
after it leaves ``committing``: the relay may or may not have the message
and SMTP/SES offer no way to ask by Message-ID, so the row becomes
``unknown`` and is not re-sent (an operator can ``postroom outbound retry``
it after checking the relay's log for the Message-ID). The portal webhook is
idempotent (``Idempotency-Key`` = Message-ID), so it is always re-sent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from postroom import tokens
from postroom.app import App
from postroom.outbound import mime
from postroom.outbound.transports import (
    Outgoing,
    PermanentFailure,
    TemporaryFailure,
    Transport,
    UnknownOutcome,
    mail_transport,
    portal_transport,
)
from postroom.settings import Settings
from postroom.storage import outbound as store
from postroom.storage import tenants
from postroom.storage.outbound import OutboundRecord

log = logging.getLogger(__name__)

TransportFor = Callable[[OutboundRecord], Transport]


@dataclass(frozen=True)
class Outcome:
    """What happened to one row; ``retry_in`` (seconds) is set when the row was deferred."""

    outbound_id: int
    status: str
    retry_in: float | None = None


def backoff(attempt: int, settings: Settings, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped, jittered over its upper half."""
    base = settings.outbound_backoff_ms / 1000
    ceiling = settings.outbound_max_backoff_ms / 1000
    delay = min(ceiling, base * 2 ** max(0, attempt - 1))
    return delay / 2 + rng() * delay / 2


def default_transport(settings: Settings) -> TransportFor:
    """Transports from configuration, built once and shared (they hold no per-message state)."""
    cache: dict[str, Transport] = {}

    def choose(record: OutboundRecord) -> Transport:
        if record.channel not in cache:
            if record.channel == "portal":
                cache["portal"] = portal_transport(settings.portal_webhook_url, settings.portal_webhook_secret)
            else:
                cache["email"] = mail_transport(settings.outbound_url)
        return cache[record.channel]

    return choose


def envelope_sender(app: App, record: OutboundRecord) -> str:
    """The message's own signed bounce address (VERP), so any bounce names it; a null sender stays null."""
    if not record.mail_from:
        return ""
    with app.session() as session:
        secret = tenants.tenant_secret(session, record.tenant_id)
    return tokens.make_bounce_address(secret, record.mail_from.rpartition("@")[2], record.id)


def outgoing(app: App, record: OutboundRecord) -> Outgoing:
    """The wire form: MIME bytes for mail (attachments fetched from the blob store), JSON for the portal."""
    recipients = tuple(r.address for r in record.recipients if r.status not in ("sent", "failed", "bounced"))
    if record.channel == "portal":
        payload = {
            "event": "message", "kind": record.kind, "tenant": record.tenant,
            "conversation_id": record.conversation_id, "message_id": record.message_id,
            "recipients": [{"name": r.name, "email": r.address} for r in record.recipients
                           if r.address in recipients],
            "subject": record.subject, "text": record.text, "html": record.html,
            "attachments": [vars(a) for a in record.attachments], "created_at": record.created_at.isoformat(),
            **record.payload,
        }
        return Outgoing(record.message_id, record.mail_from, recipients, payload=payload)
    raw = mime.to_bytes(mime.build_message(record.rendered(), app.blobs.get))
    return Outgoing(record.message_id, envelope_sender(app, record), recipients, raw=raw)


def deliver(app: App, outbound_id: int, *, transport_for: TransportFor | None = None) -> Outcome:
    """One attempt for one row; safe to call any number of times with the same id."""
    settings = app.settings
    lease = timedelta(seconds=settings.outbound_lease_seconds)
    with app.session() as session:
        claim = store.claim(session, outbound_id, lease=lease)
    if claim is None:
        return Outcome(outbound_id, "skipped")
    record = claim.record
    started = datetime.now(UTC)
    try:
        transport = (transport_for or default_transport(settings))(record)
    except Exception as exc:
        return _defer(app, record, "config", started, f"{type(exc).__name__}: {exc}", None)
    if claim.resumed_phase == "committing" and not transport.idempotent:
        log.warning("outbound %s: worker stopped after handing %s to %s; not re-sending (at most once)",
                    outbound_id, record.message_id, transport.name)
        return _final(app, record, "unknown", transport.name, started,
                      "worker stopped after the transport may have accepted the message; not re-sent "
                      f"(check the relay log for {record.message_id}, then: postroom outbound retry {record.id})",
                      None)

    def commit_point() -> None:
        with app.session() as session:
            store.mark_phase(session, outbound_id, "committing", lease=lease)

    try:
        result = transport.send(outgoing(app, record), commit_point)
    except PermanentFailure as exc:
        return _final(app, record, "failed", transport.name, started, exc.response, exc.code,
                      refused=exc.refused)
    except UnknownOutcome as exc:
        return _final(app, record, "unknown", transport.name, started, exc.response, exc.code)
    except TemporaryFailure as exc:
        return _defer(app, record, transport.name, started, exc.response, exc.code)
    except Exception as exc:
        log.exception("outbound %s: unexpected error", outbound_id)
        return _defer(app, record, transport.name, started, f"{type(exc).__name__}: {exc}", None)
    with app.session() as session:
        done = store.finish(session, outbound_id, outcome="sent", transport=transport.name, started_at=started,
                            response=result.response, code=result.code, provider_id=result.provider_id,
                            refused=dict(result.refused))
        if result.refused:
            store.raise_failure_event(session, done, recipients=tuple(result.refused), reason="; ".join(
                f"{rcpt}: {code} {text}" for rcpt, (code, text) in result.refused.items()))
    return Outcome(outbound_id, "sent")


def _final(app: App, record: OutboundRecord, status: str, transport: str, started: datetime, response: str,
           code: int | None, refused: dict[str, tuple[int, str]] | None = None) -> Outcome:
    """Record a final outcome; a failure also warns staff, in the same transaction."""
    with app.session() as session:
        done = store.finish(session, record.id, outcome=status, transport=transport, started_at=started,
                            response=response, code=code, refused=refused)
        if status == "failed":
            store.raise_failure_event(session, done, reason=f"{code} {response}" if code else response)
    return Outcome(record.id, status)


def _defer(app: App, record: OutboundRecord, transport: str, started: datetime, response: str,
           code: int | None) -> Outcome:
    delay = backoff(record.attempts, app.settings)
    retry_at = datetime.now(UTC) + timedelta(seconds=delay)
    if retry_at > record.expires_at:
        return _final(app, record, "failed", transport, started,
                      f"gave up after {record.attempts} attempts (lifetime expired); last: {response}", code)
    with app.session() as session:
        store.finish(session, record.id, outcome="deferred", transport=transport, started_at=started,
                     response=response, code=code, next_attempt_at=retry_at)
    return Outcome(record.id, "deferred", retry_in=delay)
