"""Outbound verbs: queue a rendered message, claim it for an attempt, record the outcome.

Status: ``queued`` -> ``sending`` -> ``sent`` | ``deferred`` (-> ``sending`` ...)
| ``failed``; later ``bounced``. ``unknown`` means a worker died after the
transport may have taken the message; it is never re-sent automatically
(at most once), an operator decides with ``postroom outbound retry``.
Claiming is one conditional UPDATE, so two workers never both send a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from postroom.errors import NotFound, PostroomError
from postroom.rendered import AttachmentRef, Rendered
from postroom.storage.db import aware
from postroom.storage.tables import (
    Conversation,
    Message,
    NotificationEvent,
    OutboundAttempt,
    OutboundMessage,
    OutboundRecipient,
    StaffUser,
    Tenant,
)

STATUSES = ("queued", "sending", "sent", "deferred", "failed", "bounced", "unknown")
RETRYABLE = ("failed", "unknown", "deferred", "bounced")


@dataclass(frozen=True)
class RecipientRecord:
    address: str
    name: str
    status: str
    response: str | None


@dataclass(frozen=True)
class AttemptRecord:
    started_at: datetime
    finished_at: datetime | None
    transport: str
    outcome: str
    code: int | None
    response: str | None


@dataclass(frozen=True)
class OutboundRecord:
    id: int
    tenant_id: int
    tenant: str
    conversation_id: int | None
    kind: str
    channel: str
    status: str
    phase: str | None
    message_id: str
    staff_email: str | None
    mail_from: str
    subject: str
    text: str
    html: str
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[AttachmentRef, ...]
    payload: dict
    recipients: tuple[RecipientRecord, ...]
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    expires_at: datetime
    sent_at: datetime | None
    transport: str | None
    provider_id: str | None
    last_error: str | None

    def rendered(self) -> Rendered:
        """The stored message as rendered at queue time: re-sends are byte-for-byte the same content."""
        return Rendered(kind=self.kind, subject=self.subject, text=self.text, html=self.html,
                        message_id=self.message_id, headers=self.headers, mail_from=self.mail_from,
                        recipients=tuple(r.address for r in self.recipients), attachments=self.attachments)


@dataclass(frozen=True)
class Claim:
    """A row taken for one attempt; ``resumed_phase`` is set when taken over from a dead worker."""

    record: OutboundRecord
    resumed_phase: str | None


def _record(row: OutboundMessage, slug: str) -> OutboundRecord:
    return OutboundRecord(
        id=row.id, tenant_id=row.tenant_id, tenant=slug, conversation_id=row.conversation_id, kind=row.kind,
        channel=row.channel, status=row.status, phase=row.phase, message_id=row.message_id,
        staff_email=row.staff_email, mail_from=row.mail_from, subject=row.subject, text=row.text, html=row.html,
        headers=tuple((str(k), str(v)) for k, v in row.headers or ()),
        attachments=tuple(AttachmentRef(**a) for a in row.attachments or ()), payload=dict(row.payload or {}),
        recipients=tuple(RecipientRecord(r.address, r.name, r.status, r.response) for r in row.recipients),
        attempts=row.attempts, created_at=aware(row.created_at), updated_at=aware(row.updated_at),  # type: ignore[arg-type]
        next_attempt_at=aware(row.next_attempt_at), expires_at=aware(row.expires_at),  # type: ignore[arg-type]
        sent_at=aware(row.sent_at), transport=row.transport, provider_id=row.provider_id,
        last_error=row.last_error,
    )


def _load(session: Session, outbound_id: int) -> tuple[OutboundMessage, str]:
    found = session.execute(
        select(OutboundMessage, Tenant.slug).join(Tenant).options(selectinload(OutboundMessage.recipients))
        .where(OutboundMessage.id == outbound_id)
        .execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise NotFound(f"no outbound message {outbound_id}; list them with: postroom outbound list")
    return found[0], found[1]


def get_outbound(session: Session, outbound_id: int) -> OutboundRecord:
    return _record(*_load(session, outbound_id))


def queue_outbound(session: Session, *, tenant_id: int, rendered: Rendered, channel: str = "email",
                   conversation_id: int | None = None, staff_email: str | None = None,
                   recipient_names: dict[str, str] | None = None, payload: dict | None = None,
                   lifetime: timedelta = timedelta(days=5), now: datetime | None = None) -> OutboundRecord:
    """Store a rendered message as ``queued``; the caller commits before any attempt is made."""
    now = now or datetime.now(UTC)
    names = recipient_names or {}
    row = OutboundMessage(
        tenant_id=tenant_id, conversation_id=conversation_id, kind=rendered.kind, channel=channel, status="queued",
        message_id=rendered.message_id, staff_email=staff_email, mail_from=rendered.mail_from,
        subject=rendered.subject, text=rendered.text, html=rendered.html,
        headers=[list(h) for h in rendered.headers],
        attachments=[{"filename": a.filename, "content_type": a.content_type, "sha256": a.sha256, "size": a.size}
                     for a in rendered.attachments],
        payload=payload or {}, created_at=now, updated_at=now, expires_at=now + lifetime,
        recipients=[OutboundRecipient(address=a, name=names.get(a, ""), status="queued")
                    for a in rendered.recipients],
    )
    session.add(row)
    session.flush()
    return get_outbound(session, row.id)


def claim(session: Session, outbound_id: int, *, lease: timedelta, now: datetime | None = None) -> Claim | None:
    """Take a due row for one attempt, or a ``sending`` row whose worker's lease ran out; else None."""
    now = now or datetime.now(UTC)
    values = {"status": "sending", "phase": "started", "lease_until": now + lease,
              "attempts": OutboundMessage.attempts + 1, "updated_at": now}
    due = session.execute(
        update(OutboundMessage).where(OutboundMessage.id == outbound_id)
        .where(OutboundMessage.status.in_(("queued", "deferred")))
        .where(or_(OutboundMessage.next_attempt_at.is_(None), OutboundMessage.next_attempt_at <= now))
        .values(**values)
    )
    if due.rowcount == 1:
        return Claim(get_outbound(session, outbound_id), None)
    stale = session.execute(
        select(OutboundMessage.phase).where(OutboundMessage.id == outbound_id)
        .where(OutboundMessage.status == "sending").where(OutboundMessage.lease_until < now)
    ).first()
    if stale is None:
        return None
    taken = session.execute(
        update(OutboundMessage).where(OutboundMessage.id == outbound_id)
        .where(OutboundMessage.status == "sending").where(OutboundMessage.lease_until < now)
        .values(**values)
    )
    if taken.rowcount != 1:
        return None
    return Claim(get_outbound(session, outbound_id), stale[0] or "started")


def mark_phase(session: Session, outbound_id: int, phase: str, *, lease: timedelta,
               now: datetime | None = None) -> None:
    """Durably note how far the attempt got (and extend the lease) before the point of no return."""
    now = now or datetime.now(UTC)
    session.execute(update(OutboundMessage).where(OutboundMessage.id == outbound_id)
                    .where(OutboundMessage.status == "sending")
                    .values(phase=phase, lease_until=now + lease, updated_at=now))


def finish(session: Session, outbound_id: int, *, outcome: str, transport: str, started_at: datetime,
           response: str, code: int | None = None, provider_id: str | None = None,
           refused: dict[str, tuple[int, str]] | None = None, next_attempt_at: datetime | None = None,
           now: datetime | None = None) -> OutboundRecord:
    """Record one attempt and the message's new state in one transaction.

    ``outcome`` is the new status: sent, deferred, failed or unknown. Recipients a relay refused
    are marked failed even when the message went to the others.
    """
    if outcome not in ("sent", "deferred", "failed", "unknown"):
        raise ValueError(f"not an attempt outcome: {outcome}")
    now = now or datetime.now(UTC)
    row, slug = _load(session, outbound_id)
    session.add(OutboundAttempt(outbound_id=outbound_id, started_at=started_at, finished_at=now,
                                transport=transport, outcome=outcome, code=code, response=response[:4000]))
    row.status = outcome
    row.phase = None
    row.lease_until = None
    row.transport = transport
    row.updated_at = now
    row.next_attempt_at = next_attempt_at if outcome == "deferred" else None
    if outcome == "sent":
        row.sent_at = now
        row.provider_id = provider_id
        row.last_error = None
    else:
        row.last_error = f"{code} {response}" if code else response
    refused = refused or {}
    for recipient in row.recipients:
        if recipient.address in refused:
            rcode, rtext = refused[recipient.address]
            recipient.status, recipient.response = "failed", f"{rcode} {rtext}"
        elif outcome in ("sent", "failed", "unknown") and recipient.status in ("queued", "deferred"):
            recipient.status = outcome
            recipient.response = response[:1000]
        elif outcome == "deferred" and recipient.status == "queued":
            recipient.status = "deferred"
    session.flush()
    return _record(row, slug)


def attempts_of(session: Session, outbound_id: int) -> list[AttemptRecord]:
    rows = session.scalars(select(OutboundAttempt).where(OutboundAttempt.outbound_id == outbound_id)
                           .order_by(OutboundAttempt.id))
    return [AttemptRecord(aware(a.started_at), aware(a.finished_at), a.transport, a.outcome, a.code,  # type: ignore[arg-type]
                          a.response) for a in rows]


def by_message_id(session: Session, tenant_id: int | None, message_id: str) -> OutboundRecord | None:
    stmt = select(OutboundMessage.id).where(OutboundMessage.message_id == message_id)
    if tenant_id is not None:
        stmt = stmt.where(OutboundMessage.tenant_id == tenant_id)
    found = session.scalar(stmt)
    return None if found is None else get_outbound(session, found)


def mark_bounced(session: Session, outbound_id: int, addresses: tuple[str, ...], *, permanent: bool,
                 response: str, now: datetime | None = None) -> tuple[OutboundRecord, tuple[str, ...]]:
    """Mark the named recipients bounced (permanent) and the message too once no recipient is left.

    Returns the record and the addresses that matched a recipient of this message.
    """
    now = now or datetime.now(UTC)
    row, slug = _load(session, outbound_id)
    wanted = {a.lower() for a in addresses}
    hits = [r for r in row.recipients if r.address.lower() in wanted]
    if not hits and len(row.recipients) == 1:
        hits = list(row.recipients)  # the DSN names an address our one recipient forwarded to
    matched = []
    for recipient in hits:
        matched.append(recipient.address)
        if permanent:
            recipient.status = "bounced"
        recipient.response = response[:1000]
    if permanent and matched and all(r.status in ("bounced", "failed") for r in row.recipients):
        row.status = "bounced"
        row.last_error = response[:4000]
        row.updated_at = now
    session.flush()
    return _record(row, slug), tuple(matched)


def due_for_recovery(session: Session, *, idle: timedelta = timedelta(0), now: datetime | None = None) -> list[int]:
    """Ids to (re)enqueue: queued and idle, deferred and due, or sending under an expired lease."""
    now = now or datetime.now(UTC)
    rows = session.scalars(
        select(OutboundMessage.id).where(or_(
            (OutboundMessage.status == "queued") & (OutboundMessage.updated_at <= now - idle),
            (OutboundMessage.status == "deferred") & (OutboundMessage.next_attempt_at <= now),
            (OutboundMessage.status == "sending") & (OutboundMessage.lease_until < now),
        )).order_by(OutboundMessage.id)
    )
    return list(rows)


def status_counts(session: Session) -> list[tuple[str, int]]:
    """Rows per status over all tenants, every status present (0 included) so alerts see a steady series."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, count in session.execute(select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)):
        counts[status] = count
    return list(counts.items())


def list_outbound(session: Session, *, status: str | None = None, tenant: str | None = None,
                  conversation_id: int | None = None, limit: int = 100) -> list[OutboundRecord]:
    stmt = (select(OutboundMessage, Tenant.slug).join(Tenant).options(selectinload(OutboundMessage.recipients))
            .order_by(OutboundMessage.id.desc()).limit(limit))
    if status:
        if status not in STATUSES:
            raise PostroomError(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
        stmt = stmt.where(OutboundMessage.status == status)
    if tenant:
        stmt = stmt.where(Tenant.slug == tenant)
    if conversation_id is not None:
        stmt = stmt.where(OutboundMessage.conversation_id == conversation_id)
    return [_record(row, slug) for row, slug in session.execute(stmt)]


def requeue(session: Session, outbound_id: int, *, lifetime: timedelta, now: datetime | None = None) -> OutboundRecord:
    """Operator retry: back to ``queued`` with a fresh lifetime (same Message-ID, same content)."""
    now = now or datetime.now(UTC)
    row, slug = _load(session, outbound_id)
    if row.status not in RETRYABLE:
        raise PostroomError(f"outbound {outbound_id} is {row.status}; retry needs one of: {', '.join(RETRYABLE)}")
    row.status, row.phase, row.lease_until, row.next_attempt_at = "queued", None, None, None
    row.expires_at, row.updated_at = now + lifetime, now
    for recipient in row.recipients:
        if recipient.status != "sent":
            recipient.status = "queued"
    session.flush()
    return _record(row, slug)


def raise_failure_event(session: Session, record: OutboundRecord, *, reason: str, recipients: tuple[str, ...] = (),
                        kind: str = "delivery_failed") -> int:
    """Tell staff a message could not be delivered: the author if known, else whoever owns the conversation.

    Uses the conversation side's ``notification_events`` so the portal shows it with the other warnings.
    """
    target: tuple[str, int | None] = ("tenant", record.tenant_id)
    conversation = session.get(Conversation, record.conversation_id) if record.conversation_id else None
    author = session.scalar(select(StaffUser.id).where(StaffUser.tenant_id == record.tenant_id,
                                                       StaffUser.email == (record.staff_email or "").lower()))
    if author is not None:
        target = ("user", author)
    elif conversation is not None and conversation.responsible_user_id is not None:
        target = ("user", conversation.responsible_user_id)
    elif conversation is not None and conversation.responsible_team_id is not None:
        target = ("team", conversation.responsible_team_id)
    message_row = session.scalar(select(Message.id).where(Message.tenant_id == record.tenant_id,
                                                          Message.message_id == record.message_id))
    event = NotificationEvent(
        tenant_id=record.tenant_id, kind=kind, recipient_type=target[0], recipient_id=target[1],
        conversation_id=conversation.id if conversation else None, message_id=message_row,
        payload={"outbound_id": record.id, "message_id": record.message_id, "subject": record.subject,
                 "recipients": list(recipients or (r.address for r in record.recipients)), "reason": reason[:1000],
                 "reference": conversation.reference if conversation else None},
    )
    session.add(event)
    session.flush()
    return event.id
