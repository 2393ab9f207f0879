"""Inbound verbs: claim a row for a stage, finish or fail it, and operator views.

Claiming is one conditional UPDATE, so two workers handed the same id (at-least-
once delivery, a recovery sweep) never both process it; a lease lets another
worker take over from one that died (kill -9) mid-stage. Each claim draws a new
lease token, and a claimant's writes apply only while the row still carries
it: a worker that outlived its lease finds its final write refused
(``LeaseLost``) and its transaction rolled back, instead of finishing a row
another worker runs. Attempts are counted at the claim, so a row whose worker
dies, or whose error cannot be written, is failed by the claim after the last
attempt rather than run again. Every text written here passes ``storable``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Row, Text, Update, bindparam, case, func, literal_column, null, or_, select, update
from sqlalchemy.orm import Session

from postroom import budget
from postroom.errors import NotFound, PostroomError
from postroom.statuses import RUNNABLE, InboundStatus
from postroom.storage.db import aware, core
from postroom.storage.tables import BlobData, InboundMessage, Tenant
from postroom.storage.text import ERROR_LIMIT, storable, storable_json

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
TEXT_COLUMNS = ("message_id", "subject", "sender")
JSON_COLUMNS = ("auth_results", "routing")  # ``parsed`` is built from a ParsedMessage the flow made storable
_LIMITS = {"message_id": 998, "sender": 512, "last_error": ERROR_LIMIT}


class LeaseLost(Exception):
    """The row is no longer this claimant's (its lease expired and another worker claimed it, or an operator
    or the supervisor finished it): the write was not applied and the transaction must roll back."""


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
    lease_token: int | None = None


def _record(row: InboundMessage, slug: str) -> InboundRecord:
    return _record_of({name: getattr(row, name) for name in _NAMES}, slug)


def _record_of(v: dict, slug: str) -> InboundRecord:
    return InboundRecord(
        id=v["id"], tenant_id=v["tenant_id"], tenant=slug, sha256=v["sha256"], size=v["size"], source=v["source"],
        mail_from=v["mail_from"], rcpt_tos=tuple(v["rcpt_tos"] or ()), client_ip=v["client_ip"], helo=v["helo"],
        received_at=aware(v["received_at"]), stage=v["stage"], status=v["status"], attempts=v["attempts"],
        last_error=v["last_error"], updated_at=aware(v["updated_at"]), message_id=v["message_id"],
        subject=v["subject"], sender=v["sender"], routing=v["routing"], lease_token=v["lease_token"],
    )


_NAMES = ("id", "tenant_id", "sha256", "size", "source", "mail_from", "rcpt_tos", "client_ip", "helo", "received_at",
          "stage", "status", "attempts", "last_error", "updated_at", "message_id", "subject", "sender", "routing",
          "lease_token")
_COLUMNS = tuple(getattr(InboundMessage, name) for name in _NAMES)


def get_inbound(session: Session, inbound_id: int) -> InboundRecord:
    found = session.execute(
        select(InboundMessage, Tenant.slug).join(Tenant).where(InboundMessage.id == inbound_id)
    ).first()
    if found is None:
        raise NotFound(f"no inbound message {inbound_id}; list them with: postroom queue list")
    return _record(*found)


_inbound = InboundMessage.__table__.c
_exhausted = _inbound.attempts >= bindparam("max_attempts")
_CLAIM = (
    update(InboundMessage.__table__)
    .where(_inbound.id == bindparam("inbound_id"))
    .where(or_(_inbound.status.in_(RUNNABLE),
               (_inbound.status == InboundStatus.PROCESSING) & (_inbound.lease_until < bindparam("now"))))
    .values(status=case((_exhausted, "failed"), else_="processing"),
            lease_until=case((_exhausted, null()), else_=bindparam("lease_until", type_=_inbound.lease_until.type)),
            attempts=case((_exhausted, _inbound.attempts), else_=_inbound.attempts + 1),
            last_error=case((_exhausted, bindparam("gave_up", type_=Text())), else_=_inbound.last_error),
            lease_token=bindparam("token"), updated_at=bindparam("now"))
    .returning(*_COLUMNS, select(Tenant.slug).where(Tenant.id == _inbound.tenant_id).scalar_subquery())
)
# Their SET clause is the parameters an execution passes (compiled once per set of names, then cached).
_UPDATE = update(InboundMessage.__table__).where(_inbound.id == bindparam("row_id"))
_FENCED = _UPDATE.where(_inbound.status == InboundStatus.PROCESSING, _inbound.lease_token == bindparam("token"))


# The same claim that also returns the raw message when the intake stored it inline (NULL when it is in the file/S3
# store): the pipeline reads it right after claiming, so one statement instead of a claim and a read transaction.
# The row's column is named with its table: SQLAlchemy renders SQLite's RETURNING unqualified, and a bare
# ``sha256`` inside the subquery would be blob_data's own (any blob's bytes for any row).
_CLAIM_READING = _CLAIM.returning(select(BlobData.data).where(
    BlobData.sha256 == literal_column(f"{InboundMessage.__tablename__}.sha256")).scalar_subquery())


def claim(session: Session | Connection, inbound_id: int, now: datetime | None = None,
          lease: timedelta = LEASE, max_attempts: int = MAX_ATTEMPTS) -> InboundRecord | None:
    """Take the row for processing, or None if it is finished or leased by a live worker.

    A row already claimed ``max_attempts`` times is not run again: the claim
    marks it ``failed`` with the reason and returns it so (its worker died
    each time, or could not write its error). One prebuilt Core ``UPDATE …
    RETURNING`` (the tenant's slug from a subquery): the claim is on every
    message's path, so it costs one statement and no statement building or
    ORM step, not an update plus a join.
    """
    found = _claim(session, _CLAIM, inbound_id, now, lease, max_attempts)
    return None if found is None else _record_of(dict(zip(_NAMES, found[:-1], strict=True)), found[-1])


def claim_with_raw(session: Session | Connection, inbound_id: int, *, lease: timedelta = LEASE,
                   max_attempts: int = MAX_ATTEMPTS) -> tuple[InboundRecord, bytes | None] | None:
    """``claim``, and in the same statement the raw message if it is stored inline (``blob_data``), else None.

    The pipeline's first two reads of a message, its row and its bytes, are
    one round trip and one transaction: on PostgreSQL a transaction costs
    BEGIN, COMMIT and a pooled connection's liveness ping besides its
    statement. Large messages live in the file/S3 store, read by the caller.
    """
    found = _claim(session, _CLAIM_READING, inbound_id, None, lease, max_attempts)
    if found is None:
        return None
    *values, slug, raw = found
    return _record_of(dict(zip(_NAMES, values, strict=True)), slug), None if raw is None else bytes(raw)


def _claim(session: Session | Connection, statement: Update, inbound_id: int, now: datetime | None,
           lease: timedelta, max_attempts: int) -> Row | None:
    now = now or datetime.now(UTC)
    return core(session, statement, {"inbound_id": inbound_id, "now": now, "lease_until": now + lease,
                                     "max_attempts": max_attempts, "token": secrets.randbits(62),
                                     "gave_up": budget.attempts_reason(max_attempts)}).first()


def _storable_values(values: dict[str, object]) -> dict[str, object]:
    for name in TEXT_COLUMNS:
        if isinstance(value := values.get(name), str):
            values[name] = storable(value, _LIMITS.get(name))
    for name in JSON_COLUMNS:
        if values.get(name) is not None:
            values[name] = storable_json(values[name])
    return values


def _write(session: Session, inbound_id: int, token: int | None, values: dict[str, object]) -> None:
    """One UPDATE of the row; with the claimant's ``token``, only while the row is still that claim's."""
    values["updated_at"] = datetime.now(UTC)
    if token is None:
        core(session, _UPDATE, {"row_id": inbound_id, **values})
    elif core(session, _FENCED, {"row_id": inbound_id, "token": token, **values}).rowcount != 1:
        raise LeaseLost(f"inbound {inbound_id} is no longer held by this worker (lease token {token})")


def advance(session: Session, inbound_id: int, *, stage: str, status: str, token: int | None = None,
            **values: object) -> None:
    """Move the row to ``stage``/``status`` and set any extra columns (message_id, parsed...).

    With ``token`` (the claim's lease token) the write is fenced: LeaseLost if the row is no longer this
    claim's. A prebuilt Core statement, without ORM session synchronisation: no verb keeps inbound rows
    loaded in the session. The parsed columns are made storable here, whatever bytes the sender used.
    """
    if isinstance(error := values.get("last_error"), str):
        values["last_error"] = storable(error, ERROR_LIMIT)
    _write(session, inbound_id, token, _storable_values({"stage": stage, "status": status, "lease_until": None,
                                                         **values}))


def record_error(session: Session, inbound_id: int, error: str, *, final: bool, token: int | None = None,
                 **values: object) -> None:
    """Keep the error on the row: ``failed`` for operators, or ``retrying`` for the broker.

    ``values`` (the stage reached, parsed columns) go in the same UPDATE; when
    they are what cannot be written, the caller records the error alone.
    """
    _write(session, inbound_id, token, _storable_values({
        **values, "status": InboundStatus.FAILED if final else InboundStatus.RETRYING,
        "last_error": storable(error, ERROR_LIMIT), "lease_until": None}))


def extend_lease(session: Session | Connection, inbound_id: int, token: int, until: datetime) -> bool:
    """The heartbeat of a long-running claim: push its lease out, only while the row is still that claim's."""
    return core(session, _FENCED, {"row_id": inbound_id, "token": token, "lease_until": until,
                                   "updated_at": datetime.now(UTC)}).rowcount == 1


def due_for_recovery(session: Session, *, idle: timedelta = timedelta(0),
                     now: datetime | None = None) -> list[int]:
    """Ids that should be (re)enqueued: runnable and idle, or leased by a dead worker."""
    now = now or datetime.now(UTC)
    rows = session.scalars(
        select(InboundMessage.id)
        .where(or_(
            InboundMessage.status.in_(RUNNABLE) & (InboundMessage.updated_at <= now - idle),
            (InboundMessage.status == InboundStatus.PROCESSING) & (InboundMessage.lease_until < now),
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
    return [QueueLine(stage, status, count, aware(oldest) if oldest else None)
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
    if status == InboundStatus.PENDING:
        values["attempts"] = 0
        if record.status == InboundStatus.PARSE_FAILED:
            values["stage"] = "parsing"
    session.execute(update(InboundMessage).where(InboundMessage.id == inbound_id).values(**values))
    return get_inbound(session, inbound_id)


def failures_by_reason(session: Session, tenant: str | None = None) -> dict[str, int]:
    """Failed rows per reason class (budget_cpu, budget_memory, attempts_exhausted, error), from their errors."""
    label = case(*[(InboundMessage.last_error.like(f"{prefix}%"), name) for name, prefix in budget.PREFIXES.items()],
                 else_=budget.ERROR)
    stmt = select(label, func.count()).where(InboundMessage.status == InboundStatus.FAILED).group_by(label)
    if tenant:
        stmt = stmt.join(Tenant).where(Tenant.slug == tenant)
    return {name: count for name, count in session.execute(stmt)}
