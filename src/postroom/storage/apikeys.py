"""API key verbs: create (the key is shown once), list, revoke, authenticate.

Keys carry 256 bits of randomness, so an unsalted SHA-256 is enough to make a
leaked table useless while still allowing a direct indexed lookup; the final
comparison is constant-time anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage.db import aware
from postroom.storage.tables import ApiKey, Tenant
from postroom.storage.tenants import get_tenant

KEY_PREFIX = "pr_"
PREFIX_LEN = 11


@dataclass(frozen=True)
class ApiKeyInfo:
    id: int
    tenant: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who a valid key speaks for: every API query is scoped to ``tenant_id``."""

    key_id: int
    tenant_id: int
    tenant: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _info(row: ApiKey, slug: str) -> ApiKeyInfo:
    return ApiKeyInfo(id=row.id, tenant=slug, name=row.name, prefix=row.prefix,
                      created_at=aware(row.created_at),  # type: ignore[arg-type]
                      last_used_at=aware(row.last_used_at), revoked_at=aware(row.revoked_at))


def create_key(session: Session, slug: str, name: str = "") -> tuple[ApiKeyInfo, str]:
    """Make a key for the tenant; return its info and the key itself (never stored, never shown again)."""
    tenant = get_tenant(session, slug)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(tenant_id=tenant.id, name=name[:200], prefix=key[:PREFIX_LEN], key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return _info(row, tenant.slug), key


def list_keys(session: Session, slug: str | None = None) -> list[ApiKeyInfo]:
    stmt = select(ApiKey, Tenant.slug).join(Tenant).order_by(Tenant.slug, ApiKey.id)
    if slug:
        stmt = stmt.where(Tenant.slug == slug)
    return [_info(row, tenant) for row, tenant in session.execute(stmt)]


def revoke_key(session: Session, key_id: int) -> ApiKeyInfo:
    found = session.execute(select(ApiKey, Tenant.slug).join(Tenant).where(ApiKey.id == key_id)).first()
    if found is None:
        raise NotFound(f"no API key {key_id}; list them with: postroom apikey list")
    row, slug = found
    if row.revoked_at is not None:
        raise PostroomError(f"API key {key_id} is already revoked")
    row.revoked_at = datetime.now(UTC)
    session.flush()
    return _info(row, slug)


def authenticate(session: Session, key: str, now: datetime | None = None) -> Principal | None:
    """The principal for a live key, or None; records when the key was last used."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    found = session.execute(
        select(ApiKey.id, ApiKey.key_hash, ApiKey.tenant_id, Tenant.slug).join(Tenant)
        .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).first()
    if found is None or not hmac.compare_digest(found.key_hash, digest):
        return None
    session.execute(update(ApiKey).where(ApiKey.id == found.id).values(last_used_at=now or datetime.now(UTC)))
    return Principal(key_id=found.id, tenant_id=found.tenant_id, tenant=found.slug)
