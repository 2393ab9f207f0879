"""Classify an RCPT address: which tenant, which local part, or why not ours.

Pure functions over a ``TenantDirectory`` snapshot (postroom.addresses), so the open-relay rules
can be tested exhaustively without a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from postroom.addresses import BOUNCE_PREFIX, INBOX, POSTMASTER_PARTS, REPLY_PREFIX, TenantDirectory, split_address


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
