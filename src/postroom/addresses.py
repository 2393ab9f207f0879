"""Tenant mail addresses every layer reads: the local parts postroom owns and the tenant directory.

Kept below the gateway, threading and storage so that each of them can name
``reply+``/``bounce+`` addresses without importing another stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REPLY_PREFIX = "reply+"
BOUNCE_PREFIX = "bounce+"  # the envelope sender of each outbound message: bounce+<signed outbound id>@tenant
INBOX = "inbox"
POSTMASTER_PARTS = frozenset({"postmaster", "abuse"})
_LOCAL_OK = re.compile(r"^[a-z0-9][a-z0-9._+\-]{0,63}$")
_DOMAIN_OK = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^[a-z0-9\-]+$")


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
