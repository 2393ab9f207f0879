"""Ingress verbs: IMAP mailboxes (configuration, cursor, lease, state) and per-tenant webhook secrets.

Every write that moves a mailbox's cursor is fenced by its lease owner, so a
fetcher that lost its lease (paused, then another process took over) cannot
move the cursor back or forward under the new owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage.tables import Mailbox, Tenant, WebhookSecret
from postroom.storage.tenants import get_tenant

AUTH_KINDS = ("password", "xoauth2")
PROVIDERS = ("mailgun", "postmark", "sendgrid")
ERROR_LIMIT = 500


@dataclass(frozen=True)
class MailboxRecord:
    id: int
    tenant_id: int
    tenant: str
    url: str
    auth: str
    after: str
    uidvalidity: int | None
    last_uid: int
    backlog: int
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failures: int
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    secret: str = field(default="", repr=False)


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _record(row: Mailbox, slug: str) -> MailboxRecord:
    return MailboxRecord(
        id=row.id, tenant_id=row.tenant_id, tenant=slug, url=row.url, auth=row.auth, after=row.after,
        uidvalidity=row.uidvalidity, last_uid=row.last_uid, backlog=row.backlog,
        last_success_at=_aware(row.last_success_at), last_error=row.last_error,
        last_error_at=_aware(row.last_error_at), failures=row.failures, lease_owner=row.lease_owner,
        lease_until=_aware(row.lease_until), created_at=_aware(row.created_at),  # type: ignore[arg-type]
        secret=row.secret)


def validate_after(after: str) -> str:
    """``seen``, ``none`` or ``move:Folder``: what to do with a message on the server once it is stored."""
    if after in ("seen", "none") or (after.startswith("move:") and after[5:].strip()):
        return after
    raise PostroomError(f"--after {after!r}: use seen, none or move:FOLDER")


def add_mailbox(session: Session, slug: str, url: str, *, auth: str, secret: str, after: str) -> MailboxRecord:
    tenant = get_tenant(session, slug)
    if auth not in AUTH_KINDS:
        raise PostroomError(f"auth {auth!r}: use one of {', '.join(AUTH_KINDS)}")
    if session.scalar(select(Mailbox.id).where(Mailbox.tenant_id == tenant.id, Mailbox.url == url)) is not None:
        raise PostroomError(f"tenant {slug} already fetches {url}")
    row = Mailbox(tenant_id=tenant.id, url=url, auth=auth, secret=secret, after=validate_after(after),
                  last_uid=0, backlog=0, failures=0, created_at=datetime.now(UTC))
    session.add(row)
    session.flush()
    return _record(row, slug)


def list_mailboxes(session: Session, tenant: str | None = None) -> list[MailboxRecord]:
    query = select(Mailbox, Tenant.slug).join(Tenant, Tenant.id == Mailbox.tenant_id).order_by(Mailbox.id)
    if tenant is not None:
        query = query.where(Tenant.slug == tenant)
    return [_record(row, slug) for row, slug in session.execute(query)]


def get_mailbox(session: Session, mailbox_id: int) -> MailboxRecord:
    found = session.execute(select(Mailbox, Tenant.slug).join(Tenant, Tenant.id == Mailbox.tenant_id)
                            .where(Mailbox.id == mailbox_id)).first()
    if found is None:
        raise NotFound(f"no mailbox {mailbox_id} (see: postroom mailbox list)")
    return _record(*found)


def remove_mailbox(session: Session, mailbox_id: int) -> MailboxRecord:
    record = get_mailbox(session, mailbox_id)
    session.delete(session.get_one(Mailbox, mailbox_id))
    return record


def take_lease(session: Session, mailbox_id: int, owner: str, seconds: float,
               now: datetime | None = None) -> bool:
    """Take or extend the mailbox's lease; False while another live owner holds it (or the mailbox is gone)."""
    now = now or datetime.now(UTC)
    result = session.execute(
        update(Mailbox).where(Mailbox.id == mailbox_id,
                              or_(Mailbox.lease_owner.is_(None), Mailbox.lease_owner == owner,
                                  Mailbox.lease_until < now))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds)))
    return result.rowcount == 1


def release_lease(session: Session, mailbox_id: int, owner: str) -> None:
    session.execute(update(Mailbox).where(Mailbox.id == mailbox_id, Mailbox.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None))


def _fenced(session: Session, mailbox_id: int, owner: str, **values: object) -> bool:
    result = session.execute(update(Mailbox).where(Mailbox.id == mailbox_id, Mailbox.lease_owner == owner)
                             .values(**values))
    return result.rowcount == 1


def save_cursor(session: Session, mailbox_id: int, owner: str, *, uidvalidity: int, last_uid: int,
                backlog: int) -> bool:
    """Move the cursor after the rows up to ``last_uid`` are committed; False if the lease was lost."""
    return _fenced(session, mailbox_id, owner, uidvalidity=uidvalidity, last_uid=last_uid, backlog=backlog)


def record_success(session: Session, mailbox_id: int, owner: str, *, backlog: int) -> bool:
    return _fenced(session, mailbox_id, owner, last_success_at=datetime.now(UTC), failures=0, last_error=None,
                   backlog=backlog)


def record_failure(session: Session, mailbox_id: int, error: str) -> int:
    """Keep the error for operators (one line, bounded); return the count of consecutive failures."""
    row = session.get(Mailbox, mailbox_id)
    if row is None:
        return 0
    row.failures += 1
    row.last_error = " ".join(error.split())[:ERROR_LIMIT]
    row.last_error_at = datetime.now(UTC)
    return row.failures


def set_webhook_secret(session: Session, slug: str, provider: str, secret: str) -> None:
    if provider not in PROVIDERS:
        raise PostroomError(f"provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    if not secret:
        raise PostroomError("the secret is empty")
    tenant = get_tenant(session, slug)
    row = session.scalar(select(WebhookSecret).where(WebhookSecret.tenant_id == tenant.id,
                                                     WebhookSecret.provider == provider))
    if row is None:
        session.add(WebhookSecret(tenant_id=tenant.id, provider=provider, secret=secret,
                                  updated_at=datetime.now(UTC)))
    else:
        row.secret = secret


def remove_webhook_secret(session: Session, slug: str, provider: str) -> bool:
    tenant = get_tenant(session, slug)
    row = session.scalar(select(WebhookSecret).where(WebhookSecret.tenant_id == tenant.id,
                                                     WebhookSecret.provider == provider))
    if row is None:
        return False
    session.delete(row)
    return True


def webhook_providers(session: Session, slug: str) -> list[tuple[str, datetime]]:
    tenant = get_tenant(session, slug)
    return [(p, _aware(u)) for p, u in session.execute(  # type: ignore[misc]
        select(WebhookSecret.provider, WebhookSecret.updated_at)
        .where(WebhookSecret.tenant_id == tenant.id).order_by(WebhookSecret.provider))]


def webhook_secret(session: Session, slug: str, provider: str) -> tuple[int, str] | None:
    """(tenant id, secret) of a tenant's webhook for ``provider``; None when the tenant or secret is missing."""
    found = session.execute(select(Tenant.id, WebhookSecret.secret)
                            .join(WebhookSecret, WebhookSecret.tenant_id == Tenant.id)
                            .where(Tenant.slug == slug, WebhookSecret.provider == provider)).first()
    return None if found is None else (found[0], found[1])
