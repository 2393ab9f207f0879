"""Tenant verbs: create tenants, their aliases and custom domains; build the directory."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.gateway.addresses import TenantDirectory, split_address
from postroom.storage.tables import Tenant, TenantAlias, TenantDomain

SLUG_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
RESERVED_LOCAL_PARTS = frozenset({"inbox", "postmaster", "abuse"})


@dataclass(frozen=True)
class TenantInfo:
    id: int
    slug: str
    name: str
    domains: tuple[str, ...]
    aliases: tuple[str, ...]
    settings: dict


def _info(tenant: Tenant) -> TenantInfo:
    return TenantInfo(
        id=tenant.id, slug=tenant.slug, name=tenant.name,
        domains=tuple(sorted(d.domain for d in tenant.domains)),
        aliases=tuple(sorted(a.local_part for a in tenant.aliases)),
        settings=dict(tenant.settings or {}),
    )


def _get(session: Session, slug: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}; create it with: postroom tenant add {slug}")
    return tenant


def add_tenant(session: Session, slug: str, name: str = "") -> TenantInfo:
    slug = slug.lower()
    if not SLUG_RE.match(slug):
        raise PostroomError(f"tenant slug {slug!r} must be lower-case letters, digits and hyphens (a DNS label)")
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise PostroomError(f"tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name or slug, secret=secrets.token_hex(32), settings={})
    session.add(tenant)
    session.flush()
    return _info(tenant)


def get_tenant(session: Session, slug: str) -> TenantInfo:
    return _info(_get(session, slug))


def tenant_secret(session: Session, tenant_id: int) -> bytes:
    """The per-tenant HMAC key (reply tokens); never leaves the storage layer as text."""
    return bytes.fromhex(session.get_one(Tenant, tenant_id).secret)


def list_tenants(session: Session) -> list[TenantInfo]:
    return [_info(t) for t in session.scalars(select(Tenant).order_by(Tenant.slug))]


def add_alias(session: Session, slug: str, local_part: str) -> TenantInfo:
    tenant = _get(session, slug)
    local_part = local_part.lower()
    if split_address(f"{local_part}@x.example") is None or local_part in RESERVED_LOCAL_PARTS \
            or local_part.startswith("reply+"):
        raise PostroomError(f"alias {local_part!r} is not a usable local part")
    tenant.aliases.append(TenantAlias(local_part=local_part))
    try:
        session.flush()
    except IntegrityError as exc:
        raise PostroomError(f"alias {local_part!r} already exists for {slug}") from exc
    return _info(tenant)


def add_domain(session: Session, slug: str, domain: str) -> TenantInfo:
    tenant = _get(session, slug)
    parts = split_address(f"x@{domain}")
    if parts is None:
        raise PostroomError(f"{domain!r} is not a domain name")
    tenant.domains.append(TenantDomain(domain=parts[1]))
    try:
        session.flush()
    except IntegrityError as exc:
        raise PostroomError(f"domain {domain!r} already belongs to a tenant") from exc
    return _info(tenant)


def load_directory(session: Session, mail_domain: str) -> TenantDirectory:
    slugs = dict(session.execute(select(Tenant.slug, Tenant.id)).all())
    domains = dict(session.execute(select(TenantDomain.domain, TenantDomain.tenant_id)).all())
    aliases = frozenset(session.execute(select(TenantAlias.tenant_id, TenantAlias.local_part)).tuples())
    return TenantDirectory(mail_domain=mail_domain.lower(), slugs=slugs, domains=domains, aliases=aliases)
