"""Inbound verbs: claim a row for a stage, finish or fail it, and operator views.

Claiming is one conditional UPDATE, so two workers handed the same id (at-least-
once delivery, a recovery sweep) never both process it; a lease lets another
worker take over from one that died (kill -9) mid-stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage.db import core
from postroom.storage.tables import InboundMessage, Tenant

RUNNABLE = ("pending", "retrying")
TERMINAL = ("done", "failed", "parse_failed", "rejected", "discarded", "dropped")
LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class InboundRecord:
    id: int
    tenant_id: int
    tenant: str
    sha256: str
    size: int
    source: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    client_ip: str
    helo: str
    received_at: datetime
    stage: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime
    message_id: str | None
    subject: str | None
    sender: str | None
    routing: dict | None = None


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything postroom stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _record(row: InboundMessage, slug: str) -> InboundRecord:
    return _record_of({name: getattr(row, name) for name in _NAMES}, slug)


def _record_of(v: dict, slug: str) -> InboundRecord:
    return InboundRecord(
        id=v["id"], tenant_id=v["tenant_id"], tenant=slug, sha256=v["sha256"], size=v["size"], source=v["source"],
        mail_from=v["mail_from"], rcpt_tos=tuple(v["rcpt_tos"] or ()), client_ip=v["client_ip"], helo=v["helo"],
        received_at=_aware(v["received_at"]), stage=v["stage"], status=v["status"], attempts=v["attempts"],
        last_error=v["last_error"], updated_at=_aware(v["updated_at"]), message_id=v["message_id"],
        subject=v["subject"], sender=v["sender"], routing=v["routing"],
    )


_NAMES = ("id", "tenant_id", "sha256", "size", "source", "mail_from", "rcpt_tos", "client_ip", "helo", "received_at",
          "stage", "status", "attempts", "last_error", "updated_at", "message_id", "subject", "sender", "routing")
_COLUMNS = tuple(getattr(InboundMessage, name) for name in _NAMES)


def get_inbound(session: Session, inbound_id: int) -> InboundRecord:
    found = session.execute(
        select(InboundMessage, Tenant.slug).join(Tenant).where(InboundMessage.id == inbound_id)
    ).first()
    if found is None:
        raise NotFound(f"no inbound message {inbound_id}; list them with: postroom queue list")
    return _record(*found)


_inbound = InboundMessage.__table__.c
_CLAIM = (
    update(InboundMessage.__table__)
    .where(_inbound.id == bindparam("inbound_id"))
    .where(or_(_inbound.status.in_(RUNNABLE),
               (_inbound.status == "processing") & (_inbound.lease_until < bindparam("now"))))
    .values(status="processing", lease_until=bindparam("lease_until"), attempts=_inbound.attempts + 1,
            updated_at=bindparam("now"))
    .returning(*_COLUMNS, select(Tenant.slug).where(Tenant.id == _inbound.tenant_id).scalar_subquery())
)
# Its SET clause is the parameters an execution passes (compiled once per set of names, then cached).
_UPDATE = update(InboundMessage.__table__).where(_inbound.id == bindparam("row_id"))


def claim(session: Session | Connection, inbound_id: int, now: datetime | None = None,
          lease: timedelta = LEASE) -> InboundRecord | None:
    """Take the row for processing, or None if it is finished or leased by a live worker.

    One prebuilt Core ``UPDATE … RETURNING`` (the tenant's slug from a
    subquery): the claim is on every message's path, so it costs one
    statement and no statement building or ORM step, not an update plus a join.
    """
    now = now or datetime.now(UTC)
    found = core(session, _CLAIM, {"inbound_id": inbound_id, "now": now, "lease_until": now + lease}).first()
    if found is None:
        return None
    *values, slug = found
    return _record_of(dict(zip(_NAMES, values, strict=True)), slug)


def advance(session: Session, inbound_id: int, *, stage: str, status: str, **values: object) -> None:
    """Move the row to ``stage``/``status`` and set any extra columns (message_id, parsed...).

    A prebuilt Core statement, without ORM session synchronisation: no verb keeps inbound rows loaded in the
    session.
    """
    core(session, _UPDATE, {"row_id": inbound_id, "stage": stage, "status": status, "lease_until": None,
                            "updated_at": datetime.now(UTC), **values})


def record_error(session: Session, inbound_id: int, error: str, *, final: bool) -> None:
    """Keep the error on the row: ``failed`` for operators, or ``retrying`` for the broker."""
    core(session, _UPDATE, {"row_id": inbound_id, "status": "failed" if final else "retrying",
                            "last_error": error[:4000], "lease_until": None, "updated_at": datetime.now(UTC)})


def due_for_recovery(session: Session, *, idle: timedelta = timedelta(0),
                     now: datetime | None = None) -> list[int]:
    """Ids that should be (re)enqueued: runnable and idle, or leased by a dead worker."""
    now = now or datetime.now(UTC)
    rows = session.scalars(
        select(InboundMessage.id)
        .where(or_(
            InboundMessage.status.in_(RUNNABLE) & (InboundMessage.updated_at <= now - idle),
            (InboundMessage.status == "processing") & (InboundMessage.lease_until < now),
        ))
        .order_by(InboundMessage.id)
    )
    return list(rows)


@dataclass(frozen=True)
class QueueLine:
    stage: str
    status: str
    count: int
    oldest: datetime | None


def summary(session: Session, tenant: str | None = None) -> list[QueueLine]:
    """Counts per stage and status with the oldest received time (like qshape)."""
    stmt = (select(InboundMessage.stage, InboundMessage.status, func.count(), func.min(InboundMessage.received_at))
            .group_by(InboundMessage.stage, InboundMessage.status)
            .order_by(InboundMessage.stage, InboundMessage.status))
    if tenant:
        stmt = stmt.join(Tenant).where(Tenant.slug == tenant)
    return [QueueLine(stage, status, count, _aware(oldest) if oldest else None)
            for stage, status, count, oldest in session.execute(stmt)]


AGE_BUCKETS = ((timedelta(minutes=5), "<5m"), (timedelta(hours=1), "<1h"), (timedelta(days=1), "<1d"))
OLDER = "older"


def age_buckets(session: Session, tenant: str | None = None,
                now: datetime | None = None) -> dict[tuple[str, str], dict[str, int]]:
    """Counts per (stage, status) split by age as qshape does: <5m, <1h, <1d, older."""
    now = now or datetime.now(UTC)
    bucket = case(*[(InboundMessage.received_at >= now - span, label) for span, label in AGE_BUCKETS], else_=OLDER)
    stmt = (select(InboundMessage.stage, InboundMessage.status, bucket.label("bucket"), func.count())
            .group_by(InboundMessage.stage, InboundMessage.status, bucket))
    if tenant:
        stmt = stmt.join(Tenant).where(Tenant.slug == tenant)
    shape: dict[tuple[str, str], dict[str, int]] = {}
    for stage, status, label, count in session.execute(stmt):
        shape.setdefault((stage, status), dict.fromkeys([lbl for _, lbl in AGE_BUCKETS] + [OLDER], 0))[label] = count
    return shape


def list_inbound(session: Session, *, status: str | None = None, tenant: str | None = None,
                 since: datetime | None = None, limit: int = 100) -> list[InboundRecord]:
    stmt = select(InboundMessage, Tenant.slug).join(Tenant).order_by(InboundMessage.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(InboundMessage.status == status)
    if tenant:
        stmt = stmt.where(Tenant.slug == tenant)
    if since:
        stmt = stmt.where(InboundMessage.received_at >= since)
    return [_record(row, slug) for row, slug in session.execute(stmt)]


def set_status(session: Session, inbound_id: int, status: str, *, allowed_from: tuple[str, ...]) -> InboundRecord:
    """Operator action (retry, drop, hold, release): only from the states where it makes sense."""
    record = get_inbound(session, inbound_id)
    if record.status not in allowed_from:
        raise PostroomError(
            f"inbound {inbound_id} is {record.status}; this action needs one of: {', '.join(allowed_from)}"
        )
    values: dict[str, object] = {"status": status, "lease_until": None, "updated_at": datetime.now(UTC)}
    if status == "pending":
        values["attempts"] = 0
        if record.status == "parse_failed":
            values["stage"] = "parsing"
    session.execute(update(InboundMessage).where(InboundMessage.id == inbound_id).values(**values))
    return get_inbound(session, inbound_id)
