"""Classify an RCPT address: which tenant, which local part, or why not ours.

Pure functions over a ``TenantDirectory`` snapshot, so the open-relay rules
can be tested exhaustively without a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

REPLY_PREFIX = "reply+"
BOUNCE_PREFIX = "bounce+"  # the envelope sender of each outbound message: bounce+<signed outbound id>@tenant
INBOX = "inbox"
POSTMASTER_PARTS = frozenset({"postmaster", "abuse"})
_LOCAL_OK = re.compile(r"^[a-z0-9][a-z0-9._+\-]{0,63}$")
_DOMAIN_OK = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^[a-z0-9\-]+$")


class Refusal(Enum):
    """Why a recipient is refused, with the reply the gateway gives."""

    RELAY_DENIED = "550 5.7.1 Relaying denied: we do not accept mail for that domain"
    UNKNOWN_TENANT = "550 5.1.1 No such mailbox: unknown tenant"
    UNKNOWN_MAILBOX = "550 5.1.1 No such mailbox here"
    BAD_ADDRESS = "553 5.1.3 Recipient address is not a plain user@domain address"


@dataclass(frozen=True)
class Recipient:
    address: str
    tenant_id: int
    tenant_slug: str
    kind: str  # "inbox", "reply", "bounce", "alias" or "postmaster"
    token: str | None = None


@dataclass(frozen=True)
class TenantDirectory:
    """Snapshot of who receives mail where: slug -> id, custom domain -> id, aliases."""

    mail_domain: str
    slugs: dict[str, int] = field(default_factory=dict)
    domains: dict[str, int] = field(default_factory=dict)
    aliases: frozenset[tuple[int, str]] = frozenset()

    def slug_of(self, tenant_id: int) -> str:
        return next(slug for slug, tid in self.slugs.items() if tid == tenant_id)

    def tenant_domain(self, slug: str) -> str:
        return f"{slug}.{self.mail_domain}"


def split_address(address: str) -> tuple[str, str] | None:
    """'Inbox@Acme.Mail.Example' -> ('inbox', 'acme.mail.example'); None for tricks.

    Source routes (@a,@b:u@d), percent hacks (u%x@d), quoted or empty local
    parts, several @, non-hostname domains and IDN names that nameprep would
    rewrite are refused outright: they are the classic ways to turn a
    receiver into an open relay or to reach a tenant under a disguised name.
    """
    address = address.strip().strip("<>").strip()
    if address.count("@") != 1 or any(c in address for c in ':%!"\\ ,;()[]'):
        return None
    local, domain = address.rsplit("@", 1)
    local = local.lower()
    try:
        unicode_domain = domain.rstrip(".").lower()
        domain = unicode_domain.encode("idna").decode("ascii").lower()
        # Nameprep silently drops or maps some characters (zero-width space, full-width letters), so
        # "acme\u200b.mail.example" would land on acme: a name that does not round-trip is a trick.
        if not unicode_domain.isascii() and domain.encode("ascii").decode("idna") != unicode_domain:
            return None
    except UnicodeError:
        return None
    if not local or not _LOCAL_OK.match(local) or not _DOMAIN_OK.match(domain):
        return None
    return local, domain


def classify(address: str, directory: TenantDirectory) -> Recipient | Refusal:
    """Map one RCPT address to a tenant recipient, or the reason it is refused.

    Under the mail domain only tenant slugs count and custom domains only
    elsewhere, so no custom domain row (say one added before such domains were
    refused, or before the mail domain changed) can take another tenant's mail.
    """
    parts = split_address(address)
    if parts is None:
        return Refusal.BAD_ADDRESS
    local, domain = parts
    suffix = "." + directory.mail_domain
    if domain.endswith(suffix):
        tenant_id = directory.slugs.get(domain[: -len(suffix)])
        if tenant_id is None:
            return Refusal.UNKNOWN_TENANT
    else:
        tenant_id = directory.domains.get(domain) if domain != directory.mail_domain else None
        if tenant_id is None:
            return Refusal.RELAY_DENIED
    slug = directory.slug_of(tenant_id)
    normalized = f"{local}@{domain}"
    if local == INBOX:
        return Recipient(normalized, tenant_id, slug, "inbox")
    if local.startswith(REPLY_PREFIX) and len(local) > len(REPLY_PREFIX):
        return Recipient(normalized, tenant_id, slug, "reply", token=local[len(REPLY_PREFIX):])
    if local.startswith(BOUNCE_PREFIX) and len(local) > len(BOUNCE_PREFIX):
        return Recipient(normalized, tenant_id, slug, "bounce", token=local[len(BOUNCE_PREFIX):])
    if local in POSTMASTER_PARTS:
        return Recipient(normalized, tenant_id, slug, "postmaster")
    if (tenant_id, local) in directory.aliases:
        return Recipient(normalized, tenant_id, slug, "alias")
    return Refusal.UNKNOWN_MAILBOX
