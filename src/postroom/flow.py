"""The inbound pipeline as plain Python: claim -> parse -> threading -> rules -> storage, per inbound row.

The broker only calls ``process_inbound(app, inbound_id)``; tests call it
directly. Every step is idempotent: a row that is not runnable is skipped,
and the final state is written in the same transaction as the results.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from postroom import logs, parsing
from postroom.app import App
from postroom.budget import ATTEMPTS_EXHAUSTED, ERROR, Budget, OverBudget
from postroom.errors import ParseFailed
from postroom.gateway import auth
from postroom.metrics import message_failed, rule_action_skipped
from postroom.model import ConversationUpdate, Envelope, ParsedMessage, to_jsonable
from postroom.outbound import bounces, rule_mail
from postroom.outbound.compose import Dispatch
from postroom.rules import RoutingDecision, RuleInput, Ruleset, directory, evaluate, guard_auto_reply, routing
from postroom.staff_directory import StaffDirectory
from postroom.statuses import InboundStatus
from postroom.storage import advisory, conversations, inbound, staff, threading_lookup
from postroom.storage import routing as routing_store
from postroom.storage.contacts import KnownContact
from postroom.storage.db import claim_connection, once_more_if_disconnected, pipeline_scope
from postroom.storage.inbound import InboundRecord, LeaseLost
from postroom.storage.text import storable_fields
from postroom.threading import keys, lifecycle, strategies
from postroom.threading_model import ThreadMatch

log = logging.getLogger(__name__)

AUTO_REPLY_PERIOD = timedelta(hours=24)
AUTH_HEADERS = (b"dkim-signature", b"authentication-results")
HEADER_SCAN = 1_000_000  # bytes searched for the end of the header block
_HEADER_END = re.compile(rb"\n\r?\n")


class RetryLater(Exception):
    """Raised to the broker so it retries the row with backoff; the cause is chained."""


class Watch(Protocol):
    """Told which row this thread runs and with what budget, so a supervisor can stop it (``queue.processes``)."""

    def started(self, record: InboundRecord, budget: Budget) -> None: ...

    def finished(self) -> None: ...


@dataclass(frozen=True)
class Routed:
    """The rules stage's answer plus what produced it (the input and the rule set version)."""

    decision: RoutingDecision
    ruleset: Ruleset
    input: RuleInput


def vet_staff_forward(session: Session, record: InboundRecord, parsed: ParsedMessage, verdicts: dict,
                      match: ThreadMatch) -> tuple[ThreadMatch, dict]:
    """A forward to inbox@ is trusted only from a staff address with passing, aligned authentication.

    Anything else still lands in the unsorted inbox (nothing is lost) but is
    flagged ``quarantine`` so staff review it before trusting the recovered
    original; the verdict and its reason are kept with the auth results.
    """
    if match.via != "forward":
        return match, verdicts
    verdict = auth.assess_staff_forward(parsed.sender.address if parsed.sender else None,
                                        staff.active_addresses(session, record.tenant_id),
                                        auth.AuthResults.from_jsonable(verdicts))
    verdicts = {**verdicts, "staff_forward": {"verdict": verdict.verdict, "reason": verdict.reason}}
    if verdict.verdict == "trusted":
        return match, verdicts
    return replace(match, flags=(*match.flags, "quarantine")), verdicts


def rules_stage(app: App, session: Session, record: InboundRecord, parsed: ParsedMessage,
                match: ThreadMatch) -> Routed | None:
    """Evaluate the tenant's rules (between matching and recording); None when the tenant has none.

    Runs in the pipeline's transaction: contact attributes and the
    once-a-day auto-reply limit are read from the same snapshot.
    """
    ruleset = routing.rulebook(app.settings.resolved_rules_dir).for_tenant(record.tenant)
    if not ruleset.rules:
        return None
    inp = RuleInput.from_parsed(
        parsed, Envelope(record.mail_from, record.rcpt_tos), is_reply=match.is_reply,
        new_conversation=match.destination == "new",
        contact=routing_store.contact_attributes(session, match.contact_id),
        trusted_authserv_ids=app.settings.trusted_authserv_id_list,
    )
    since = datetime.now(UTC) - AUTO_REPLY_PERIOD
    decided = evaluate(inp, ruleset)
    vetted = directory.vet(decided, StaffDirectory(app, session, record.tenant))
    for action in decided.actions:
        if action not in vetted.actions:
            rule_action_skipped(action.kind)
    for warning in vetted.warnings[len(decided.warnings):]:
        log.warning("inbound %s: %s", record.id, warning)
    decision = guard_auto_reply(vetted, inp, lambda address: routing_store.auto_replied_since(
        session, record.tenant_id, address, since))
    return Routed(decision, ruleset, inp)


def _refuse(app: App, session: Session, record: InboundRecord, parsed: ParsedMessage, routed: Routed,
            row: dict) -> tuple[str, list[int]]:
    """Discard (kept for operators, copies still forwarded) or reject afterwards (never a bounce: the
    sender may be forged). ``row`` holds the parsed columns written with the final status."""
    decision = routed.decision
    if decision.disposition == "discard":
        ids, why_not = rule_mail.forward_copies(app, session, record, parsed, decision, conversation_id=None)
        inbound.advance(session, record.id, stage="rules", status=InboundStatus.DISCARDED, token=record.lease_token,
                        routing=routing.summary(decision, routed.ruleset, outbound=ids,
                                                forward_suppressed=why_not), **row)
        return "discarded", ids
    reason = f"rejected by rule {decision.fired[-1] if decision.fired else '?'}: {decision.reject}"
    inbound.advance(session, record.id, stage="rules", status=InboundStatus.REJECTED, last_error=reason,
                    token=record.lease_token,
                    routing=routing.summary(decision, routed.ruleset, decided="after DATA; no bounce sent"), **row)
    return "rejected", []


def _act(app: App, session: Session, record: InboundRecord, parsed: ParsedMessage, match: ThreadMatch,
         recorded: conversations.Recorded, routed: Routed) -> tuple[dict, list[int]]:
    """Apply an accepted message's decision beyond the new conversation: replies, auto-reply, copies."""
    decision = routed.decision
    conversation_id = recorded.conversation_id
    if conversation_id is not None and not (recorded.created_conversation or recorded.duplicate or recorded.foreign):
        routing_store.update_conversation(session, conversation_id,
                                          routing.conversation_update(decision, routed.ruleset))
    suppressed = None
    if recorded.duplicate:
        suppressed = "message was already recorded"
    elif recorded.foreign:
        suppressed = "sender is not a participant of the conversation; nothing of it is sent to them"
    elif recorded.suppress_auto_reply:
        suppressed = "message is automatic or part of a mail loop"
    elif match.via == "forward":
        suppressed = "message forwards another one; its sender is not the customer"
    reply_id, reply_suppressed = rule_mail.auto_reply(app, session, record, parsed, decision,
                                                    conversation_id=conversation_id, sender=routed.input.from_address,
                                                    suppressed=suppressed)
    forward_ids, forward_suppressed = ([], "message was already recorded") if recorded.duplicate else (
        rule_mail.forward_copies(app, session, record, parsed, decision, conversation_id=conversation_id))
    ids = [i for i in (reply_id, *forward_ids) if i is not None]
    summary = routing.summary(decision, routed.ruleset, outbound=ids, forward_suppressed=forward_suppressed,
                              auto_reply_suppressed=reply_suppressed or decision.auto_reply_suppressed)
    if reply_suppressed:
        summary.pop("auto_reply", None)
    return summary, ids


def authenticate(app: App, raw: bytes) -> dict:
    """The message's authentication verdicts, as kept on the inbound row.

    Mail whose header block names neither DKIM-Signature nor
    Authentication-Results has nothing to verify or trust (every verdict is
    "none"), so its headers are not parsed a second time.
    """
    end = _HEADER_END.search(raw, 0, HEADER_SCAN)  # no copy of the first MB of a large message
    block = raw[:end.start() if end else HEADER_SCAN].lower()
    if not any(name in block for name in AUTH_HEADERS):
        return auth.AuthResults().to_jsonable()
    return auth.authenticate(raw, trusted_authserv_ids=app.settings.trusted_authserv_id_list,
                             dnsfunc=auth.system_dns if app.settings.dkim_verify else None).to_jsonable()


def _row_values(parsed: ParsedMessage, verdicts: dict) -> dict:
    """The inbound row's parsed columns, written in the same UPDATE as its final (or error) status."""
    return {"message_id": (parsed.message_id or "")[:998] or None, "subject": parsed.subject,
            "sender": parsed.sender.address if parsed.sender else None, "parsed": to_jsonable(parsed),
            "auth_results": verdicts}


def process_inbound(app: App, inbound_id: int, *, dispatch_outbound: Dispatch | None = None,
                   watch: Watch | None = None) -> str | None:
    """Run one inbound row through the pipeline; return its new status, or None if skipped.

    Two write transactions per message: the claim (lease token + attempt
    count, so a poison message stops after ``max_attempts`` claims even if it
    kills the worker), and threading -> rules -> storage -> status in one,
    fenced by the lease token, so a retry finds all of it or none of it and a
    worker that lost its lease writes nothing. Both commit with
    synchronous=NORMAL on SQLite (see ``storage.db.pipeline_scope``), and
    neither pings its pooled connection first: one found dead is replaced
    and the claim or transaction runs once more on a live one
    (``storage.db.once_more_if_disconnected``).
    ``dispatch_outbound`` gets the ids of mail the rules queued (auto-reply,
    forwarded copies) after the commit; without it the sweeper sends them.
    """
    settings = app.settings
    claimed = once_more_if_disconnected(lambda: _claim(app, inbound_id))
    if claimed is None:
        return None
    record, raw = claimed
    if record.status == InboundStatus.FAILED:
        message_failed(ATTEMPTS_EXHAUSTED)
        log.error("inbound %s: %s", inbound_id, record.last_error)
        return "failed"
    budget = Budget(settings.budget_cpu_seconds)
    if watch is not None:
        watch.started(record, budget)
    started, outcome = time.perf_counter(), "retry"
    try:
        with logs.bound(tenant=record.tenant, inbound_id=inbound_id):
            try:
                outcome = _run(app, record, raw, budget, dispatch_outbound) or "skipped"
                return None if outcome == "skipped" else outcome
            finally:
                logs.processed(log, inbound_id, outcome, time.perf_counter() - started)
    finally:
        if watch is not None:
            watch.finished()


def _claim(app: App, inbound_id: int) -> tuple[InboundRecord, bytes | None] | None:
    with claim_connection(app.engine) as connection:
        return inbound.claim_with_raw(connection, inbound_id,
                                      lease=timedelta(seconds=app.settings.processing_lease_seconds),
                                      max_attempts=app.settings.max_attempts)


@dataclass
class _Progress:
    """How far a message got (for the error written on its row) and its parsed columns, once there are some."""

    stage: str = "parsing"
    row: dict = field(default_factory=dict)


def _run(app: App, record: InboundRecord, raw: bytes | None, budget: Budget,
         dispatch_outbound: Dispatch | None) -> str | None:
    """claim (done by the caller, with the raw bytes if inline) -> parse -> authenticate -> match -> decide -> record
    -> act, then dispatch."""
    progress = _Progress()
    try:
        parsed = _parse(app, record, raw, progress)
        if parsed is None:
            return InboundStatus.PARSE_FAILED
        budget.check("parsing")
        _store_attachments(app, parsed)
        status, outbound_ids = once_more_if_disconnected(
            lambda: _decide_and_record(app, record, parsed, budget, progress))
        if outbound_ids and dispatch_outbound is not None:
            dispatch_outbound(outbound_ids)
        return status
    except LeaseLost as exc:
        log.warning("inbound %s: nothing written, %s", record.id, exc)
        return None
    except Exception as exc:
        return _failed(app, record, exc, progress)


def _parse(app: App, record: InboundRecord, raw: bytes | None, progress: _Progress) -> ParsedMessage | None:
    """The parsed message with its row columns (authentication included) in ``progress``; None when unparsable
    (the row is then marked ``parse_failed`` here, with the authentication verdicts). ``raw`` is None when the
    claim did not bring the bytes (a message kept in the file/S3 store)."""
    if raw is None:
        raw = app.blobs.get(record.sha256)
    verdicts = authenticate(app, raw)
    try:
        parsed = parsing.parse(raw, record.received_at)
    except ParseFailed as exc:
        with pipeline_scope(app.sessions) as session:
            inbound.advance(session, record.id, stage="parsing", status=InboundStatus.PARSE_FAILED,
                            token=record.lease_token, last_error=str(exc), auth_results=verdicts)
        log.warning("inbound %s could not be parsed: %s", record.id, exc)
        return None
    parsed = storable_fields(parsed)
    progress.row = _row_values(parsed, verdicts)
    return parsed


def _store_attachments(app: App, parsed: ParsedMessage) -> None:
    forwarded = parsed.forward.attachments if parsed.forward else ()
    attachments = [a.data for a in (*parsed.attachments, *forwarded) if a.data]
    if attachments:
        app.blobs.put_many(attachments)


def match_inbound(session: Session, record: InboundRecord, parsed: ParsedMessage, *, mail_domain: str,
                  now: datetime | None = None, lookup: threading_lookup.SqlLookup | None = None) -> ThreadMatch:
    """The threading stage for one inbound row: tenant secret, policy and domains (cached), then the strategies."""
    tenant = threading_lookup.threading_tenant(session, record.tenant_id)
    domains = [f"{tenant.slug}.{mail_domain}".lower(), *tenant.domains]
    inp = strategies.MatchInput.from_parsed(parsed, record.rcpt_tos, now=now or datetime.now(UTC),
                                            tenant_domains=domains)
    return strategies.match(inp, lookup or threading_lookup.SqlLookup(session, record.tenant_id),
                            secret=tenant.secret, policy=tenant.policy)


def locked_match(session: Session, record: InboundRecord, parsed: ParsedMessage, *,
                 mail_domain: str) -> tuple[ThreadMatch, dict[str, KnownContact]]:
    """The threading stage as the pipeline runs it: under advisory locks on what the message can race on (not
    the tenant: see threading/keys), the match; with the contacts it read, which storage does not read again.

    The conversation a message joins is locked when storage reads it (``FOR UPDATE``).
    """
    advisory.lock(session, record.tenant_id, keys.race_keys(parsed), senders=keys.sender_addresses(parsed))
    lookup = threading_lookup.SqlLookup(session, record.tenant_id)
    return match_inbound(session, record, parsed, mail_domain=mail_domain, lookup=lookup), lookup.contacts_read()


def _match(app: App, session: Session, record: InboundRecord, parsed: ParsedMessage,
           progress: _Progress) -> tuple[ThreadMatch, dict[str, KnownContact]]:
    """``locked_match``, then the vetting of a forward to inbox@ (its verdict kept with the auth results)."""
    match, known = locked_match(session, record, parsed, mail_domain=app.settings.mail_domain)
    match, progress.row["auth_results"] = vet_staff_forward(session, record, parsed, progress.row["auth_results"],
                                                            match)
    return match, known


def _decide_and_record(app: App, record: InboundRecord, parsed: ParsedMessage, budget: Budget,
                       progress: _Progress) -> tuple[str, list[int]]:
    """Threading, rules, storage and the inbound row's final status in one transaction; the outbound ids to send."""
    progress.stage = "threading"
    with pipeline_scope(app.sessions) as session:
        match, known = _match(app, session, record, parsed, progress)
        budget.check("threading")
        progress.stage = "rules"
        routed = rules_stage(app, session, record, parsed, match)
        budget.check("rules")
        if routed is not None and routed.decision.disposition != "accept":
            return _refuse(app, session, record, parsed, routed, progress.row)
        progress.stage = "storage"
        summary, outbound_ids = _record_and_act(app, session, record, parsed, match, routed, known)
        budget.check("storage")
        inbound.advance(session, record.id, stage="done", status=InboundStatus.DONE, token=record.lease_token,
                        routing=summary, **progress.row)
        return InboundStatus.DONE, outbound_ids


def record_message(session: Session, record: InboundRecord, parsed: ParsedMessage, match: ThreadMatch,
                   change: ConversationUpdate | None = None, *,
                   known: Mapping[str, KnownContact] | None = None) -> conversations.Recorded:
    """The storage stage around the pure lifecycle step: place the message, step its conversation, record both.

    ``known``: the contacts threading read in this transaction (``locked_match``).
    """
    recorded = conversations.already_recorded(session, record, parsed)
    if recorded is not None:
        return recorded
    placed = conversations.place(session, record, parsed, match, change, known=known)
    outcome = lifecycle.step(placed.thread, tenant_id=record.tenant_id, flags=placed.flags, automatic=placed.automatic,
                             loop=placed.loop, created=placed.created, sender=placed.sender, via=match.via,
                             now=placed.now)
    return conversations.record(session, placed, outcome)


def _record_and_act(app: App, session: Session, record: InboundRecord, parsed: ParsedMessage, match: ThreadMatch,
                    routed: Routed | None, known: Mapping[str, KnownContact]) -> tuple[dict | None, list[int]]:
    """Record the message (storage stage), then act on the decision and on bounces; the routing summary and ids."""
    recorded = record_message(session, record, parsed, match,
                              routing.new_conversation_update(routed.decision) if routed else None, known=known)
    logs.note(conversation_id=recorded.conversation_id)
    summary, outbound_ids = (None, []) if routed is None else _act(app, session, record, parsed, match, recorded,
                                                                   routed)
    if match.returned is not None and "bounce" in match.flags and not recorded.duplicate:
        bounces.handle_returned(session, record.tenant_id, match.returned.outbound_id, parsed.bounce)
    if parsed.bounce is not None:
        bounces.handle_bounces(session, record.tenant_id)
    return summary, outbound_ids


def _failed(app: App, record: InboundRecord, exc: Exception, progress: _Progress) -> str | None:
    """Write the error; ``failed`` when it was the last attempt or over budget, else raise for a retry."""
    over = isinstance(exc, OverBudget)
    final = over or record.attempts >= app.settings.max_attempts
    error = exc.reason if isinstance(exc, OverBudget) else f"{type(exc).__name__}: {exc}"
    if not _record_error(app, record, error, final=final, stage=progress.stage, row=progress.row):
        return None
    if final:
        message_failed(exc.kind if isinstance(exc, OverBudget) else ERROR)
        log.error("inbound %s failed after %s attempt(s): %s", record.id, record.attempts, error)
        return InboundStatus.FAILED
    raise RetryLater(f"inbound {record.id}: {exc}") from exc


def _record_error(app: App, record: InboundRecord, error: str, *, final: bool, stage: str, row: dict) -> bool:
    """Write the error with the stage reached and the parsed columns, or, if those are what fails, the error alone.

    False when the row is no longer this claim's (nothing written). Should
    even the bare error fail to write (the database is down), the row keeps
    its lease and the claim after the last attempt fails it.
    """
    for values in ({"stage": stage, **row}, {}):
        try:
            with pipeline_scope(app.sessions) as session:
                inbound.record_error(session, record.id, error, final=final, token=record.lease_token, **values)
            return True
        except LeaseLost as exc:
            log.warning("inbound %s: error not written, %s", record.id, exc)
            return False
        except Exception as exc:
            log.error("inbound %s: could not record its error%s: %s", record.id,
                      " with its parsed columns" if values else "", exc)
    return True
