"""Small pure helpers for outbound headers: display names, subject tags, References."""

from __future__ import annotations

import re
from email.headerregistry import Address

MAX_REFERENCES = 20
_RE_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|réf|ref|fwd?|tr|wg)\s*(\[\d+\])?\s*:\s*)+", re.I)


def format_address(name: str, address: str) -> str:
    """'"Zoë via Acme" <reply+x@acme.mail.test>': quoting is left to the email package."""
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name or "", username=local, domain=domain))


def tag(reference: str) -> str:
    return f"[#{reference}]"


def tag_subject(subject: str, reference: str) -> str:
    """Append the reference tag unless it is already there; collapse duplicate 'Re:' prefixes."""
    subject = " ".join(subject.split())
    head = _RE_PREFIX.match(subject)
    if head and head.group(0).lower().startswith("re"):
        subject = "Re: " + _RE_PREFIX.sub("", subject, count=1)
    if reference and tag(reference).lower() not in subject.lower():
        subject = f"{subject} {tag(reference)}"
    return subject.strip()


def references_chain(references: tuple[str, ...], in_reply_to: str | None) -> tuple[str, ...]:
    """References for a reply: the parent's chain plus the parent, without duplicates, bounded.

    The first id (thread root) is always kept, as RFC 5322 suggests when trimming.
    """
    chain: list[str] = []
    for mid in (*references, *( (in_reply_to,) if in_reply_to else ())):
        if mid and mid not in chain:
            chain.append(mid)
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return tuple(chain)
