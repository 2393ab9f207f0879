"""The inbound pipeline as plain Python: claim -> parse -> threading -> rules -> storage, per inbound row.

The broker only calls ``process_inbound(app, inbound_id)``; tests call it
directly. Every step is idempotent: a row that is not runnable is skipped,
and the final state is written in the same transaction as the results.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from postroom import parsing
from postroom.app import App
from postroom.errors import ParseFailed
from postroom.gateway import auth
from postroom.model import ParsedMessage, to_jsonable
from postroom.outbound import bounces
from postroom.storage import conversations, inbound
from postroom.storage.inbound import InboundRecord
from postroom.threading import ThreadMatch

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class RetryLater(Exception):
    """Raised to the broker so it retries the row with backoff; the cause is chained."""


def _db_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and header values are whatever the sender wrote."""
    return value.replace("\x00", "\ufffd")


def parsed_summary(parsed: ParsedMessage) -> dict:
    """The parsed headers and bodies kept on the inbound row (attachment bytes go to blobs)."""
    return to_jsonable(parsed)


def rules_stage(app: App, record: InboundRecord, parsed: ParsedMessage, match: ThreadMatch) -> Any:
    """Hook for the routing rules (between matching and recording); None means no decision.

    The rules engineer evaluates the tenant's rule set here and returns a
    ``RoutingDecision``; ``conversations.record`` applies its category, tags,
    unit, status and responsible to a new conversation.
    """
    return None


def process_inbound(app: App, inbound_id: int) -> str | None:
    """Run one inbound row through the pipeline; return its new status, or None if skipped."""
    with app.session() as session:
        record = inbound.claim(session, inbound_id, lease=timedelta(seconds=app.settings.processing_lease_seconds))
    if record is None:
        return None
    stage = "parsing"
    try:
        raw = app.blobs.get(record.sha256)
        verdicts = auth.authenticate(raw, trusted_authserv_ids=app.settings.trusted_authserv_id_list,
                                     dnsfunc=auth.system_dns if app.settings.dkim_verify else None).to_jsonable()
        try:
            parsed = parsing.parse(raw, record.received_at)
        except (ParseFailed, parsing.ParseFailed) as exc:
            with app.session() as session:
                inbound.advance(session, inbound_id, stage="parsing", status="parse_failed",
                                last_error=_db_text(str(exc)), auth_results=verdicts)
            log.warning("inbound %s could not be parsed: %s", inbound_id, exc)
            return "parse_failed"
        forwarded = parsed.forward.attachments if parsed.forward else ()
        for attachment in (*parsed.attachments, *forwarded):
            if attachment.data:
                app.blobs.put(attachment.data)
        stage = "threading"
        with app.session() as session:
            conversations.set_inbound_stage(
                session, inbound_id, stage,
                message_id=_db_text((parsed.message_id or "")[:998]) or None, subject=_db_text(parsed.subject),
                sender=_db_text(parsed.sender.address) if parsed.sender else None, parsed=parsed_summary(parsed),
                auth_results=verdicts,
            )
        # threading -> rules -> storage -> done: one transaction, so a retry finds all of it or none of it
        with app.session() as session:
            conversations.lock_tenant(session, record.tenant_id)
            match = conversations.match_inbound(session, record, parsed, mail_domain=app.settings.mail_domain)
            stage = "rules"
            decision = rules_stage(app, record, parsed, match)
            stage = "storage"
            conversations.record(session, record, parsed, match, decision)
            if parsed.bounce is not None:
                bounces.handle_bounces(session, record.tenant_id)
            inbound.advance(session, inbound_id, stage="done", status="done")
        return "done"
    except Exception as exc:
        final = record.attempts >= MAX_ATTEMPTS
        with app.session() as session:
            inbound.record_error(session, inbound_id, f"{type(exc).__name__}: {exc}", final=final)
            conversations.set_inbound_stage(session, inbound_id, stage)
        if final:
            log.error("inbound %s failed after %s attempts: %s", inbound_id, record.attempts, exc)
            return "failed"
        raise RetryLater(f"inbound {inbound_id}: {exc}") from exc
