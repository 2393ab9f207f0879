"""Tenant verbs: create tenants, their aliases and custom domains; build the directory; per-tenant caches.

A tenant's mail is addressed by domain, so a domain decides who gets it: a
custom domain may not be, contain or lie under the mail domain (where the
tenants' ``<slug>.<mail domain>`` names live), nor equal, contain or lie
under another tenant's custom domain; a new tenant's slug domain may not meet
an existing custom domain either.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postroom.addresses import TenantDirectory, split_address
from postroom.errors import NotFound, PostroomError
from postroom.storage.tables import Tenant, TenantAlias, TenantDomain

SLUG_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LABEL_RE = SLUG_RE  # a DNS label: letters, digits and inner hyphens, 1 to 63 characters
RESERVED_LOCAL_PARTS = frozenset({"inbox", "postmaster", "abuse"})
CACHE_TTL_SECONDS = 2.0
DOMAIN_LOCK_KEY = 0x706F7374646F6D  # pg_advisory_xact_lock key of domain changes
T = TypeVar("T")
_caches: list[TenantCache] = []


class TenantCache(Generic[T]):
    """Per-database, per-tenant values the pipeline reads for every message but that rarely change.

    A change made in this process drops the entry at once (and again after its
    commit, see ``tenant_changed``); a change made by another process (the CLI
    while ``serve`` runs) is seen within ``ttl`` seconds. Keyed by engine, so a
    new database (tests) never sees another one's rows.
    """

    def __init__(self, load: Callable[[Session, int], T], *, ttl: float = CACHE_TTL_SECONDS) -> None:
        self._load = load
        self._ttl = ttl
        self._entries: weakref.WeakKeyDictionary[Engine, dict[int, tuple[float, T]]] = weakref.WeakKeyDictionary()
        self._generation = 0
        self._lock = threading.Lock()
        _caches.append(self)

    def get(self, session: Session, tenant_id: int) -> T:
        engine = session.get_bind()
        entries = self._entries.get(engine)  # type: ignore[arg-type]
        hit = entries.get(tenant_id) if entries is not None else None
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        value = self._load(session, tenant_id)
        with self._lock:
            if generation == self._generation:  # nothing changed while we read: the value is current
                self._entries.setdefault(engine, {})[tenant_id] = (now + self._ttl, value)  # type: ignore[index]
        return value

    def invalidate(self, tenant_id: int) -> None:
        with self._lock:
            self._generation += 1
            for entries in self._entries.values():
                entries.pop(tenant_id, None)


def tenant_changed(session: Session, tenant_id: int) -> None:
    """Drop every cached value of the tenant now and once the change commits (readers in between saw the old)."""

    def drop(*_: object) -> None:
        for cache in _caches:
            cache.invalidate(tenant_id)

    drop()
    event.listen(session, "after_commit", drop, once=True)


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


def add_tenant(session: Session, slug: str, name: str = "", *, mail_domain: str | None = None) -> TenantInfo:
    """Create a tenant; given the mail domain (the CLI gives it), a slug domain meeting a custom domain is refused."""
    slug = slug.lower()
    if not SLUG_RE.match(slug):
        raise PostroomError(f"tenant slug {slug!r} must be lower-case letters, digits and hyphens (a DNS label)")
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise PostroomError(f"tenant {slug!r} already exists")
    if mail_domain:
        _one_domain_change_at_a_time(session)
        slug_domain = f"{slug}.{mail_domain.lower()}"
        clash = next(iter(_custom_domains_meeting(session, slug_domain, parents=False)), None)
        if clash is not None:
            raise PostroomError(f"tenant {slug!r} would receive at {slug_domain}, but {clash[0]} is a custom domain "
                                f"of tenant {clash[1]!r}")
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


def normalize_domain(text: str) -> str:
    """The stored form of a custom domain (IDNA, lower-case ASCII, no trailing dot), or PostroomError saying why not.

    It must also be exactly what ``split_address`` makes of an RCPT to it, or
    mail to the domain would never match the row.
    """
    name = text.strip()
    if not name or name.endswith("."):
        raise PostroomError(f"domain {text!r} must be a name like support.example.com, without a trailing dot")
    try:
        ascii_name = name.lower().encode("idna").decode("ascii").lower()
        for label in ascii_name.split("."):
            if label.startswith("xn--"):
                label.encode("ascii").decode("idna")  # punycode that decodes to nothing valid is refused
    except UnicodeError as exc:
        raise PostroomError(f"domain {text!r} is not a valid IDNA name: {exc}") from exc
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253:
        raise PostroomError(f"domain {text!r} must have at least two labels and at most 253 characters")
    bad = next((label for label in labels if not LABEL_RE.match(label)), None)
    if bad is not None:
        raise PostroomError(f"domain {text!r}: label {bad!r} is not letters, digits and inner hyphens (1-63)")
    if labels[-1].isdigit():
        raise PostroomError(f"domain {text!r} looks like an IP address, not a domain name")
    parts = split_address(f"inbox@{name}")
    if parts is None or parts[1] != ascii_name:
        raise PostroomError(f"domain {text!r} is not a name mail can be addressed to unambiguously")
    return ascii_name


def _one_domain_change_at_a_time(session: Session) -> None:
    """The overlap checks read, then write: two tenants adding nested domains at once must not both pass.

    SQLite transactions here begin IMMEDIATE, which serialises them already; on
    PostgreSQL a transaction-scoped advisory lock does.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DOMAIN_LOCK_KEY})


def _parents(domain: str) -> list[str]:
    """'a.b.example.com' -> ['b.example.com', 'example.com', 'com']."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels))]


def _custom_domains_meeting(session: Session, domain: str, *, parents: bool = True) -> list[tuple[str, str]]:
    """(custom domain, owner slug) of the rows equal to ``domain``, under it, or (``parents``) above it."""
    # A normalized domain holds no LIKE wildcard (% or _), so the pattern matches names ending in ".<domain>" only.
    meets = (TenantDomain.domain == domain) | TenantDomain.domain.like(f"%.{domain}")
    if parents:
        meets = meets | TenantDomain.domain.in_(_parents(domain))
    rows = session.execute(select(TenantDomain.domain, Tenant.slug).join(Tenant).where(meets)
                           .order_by(TenantDomain.domain))
    return [(row[0], row[1]) for row in rows]


def add_domain(session: Session, slug: str, domain: str, *, mail_domain: str) -> TenantInfo:
    """Let tenant ``slug`` receive at ``domain``, unless that would take mail meant for someone else (module doc)."""
    tenant = _get(session, slug)
    name = normalize_domain(domain)
    base = mail_domain.lower()
    _one_domain_change_at_a_time(session)
    if name == base or name.endswith("." + base):
        where = "is" if name == base else "is under"
        raise PostroomError(f"domain {name} {where} the mail domain {base}, where tenants receive at "
                            f"<slug>.{base}; {slug} already has {slug}.{base}")
    if base.endswith("." + name):
        raise PostroomError(f"domain {name} contains the mail domain {base}")
    for taken, owner in _custom_domains_meeting(session, name):
        if taken == name:
            raise PostroomError(f"domain {name} already belongs to tenant {owner!r}")
        if owner != tenant.slug:
            raise PostroomError(f"domain {name} overlaps {taken}, a domain of tenant {owner!r}")
    tenant.domains.append(TenantDomain(domain=name))
    try:
        session.flush()
    except IntegrityError as exc:
        raise PostroomError(f"domain {name} already belongs to a tenant") from exc
    tenant_changed(session, tenant.id)
    return _info(tenant)


def load_directory(session: Session, mail_domain: str) -> TenantDirectory:
    slugs = dict(session.execute(select(Tenant.slug, Tenant.id)).all())
    domains = dict(session.execute(select(TenantDomain.domain, TenantDomain.tenant_id)).all())
    aliases = frozenset(session.execute(select(TenantAlias.tenant_id, TenantAlias.local_part)).tuples())
    return TenantDirectory(mail_domain=mail_domain.lower(), slugs=slugs, domains=domains, aliases=aliases)
