"""Message-ID lists as clients really write them, and ids for outbound mail.

RFC 5322 says ``References: <a@x> <b@y>``. In practice Exchange and iOS put
commas between ids, some clients fold inside the list or truncate it, some
drop the angle brackets, and In-Reply-To may carry a comment such as
``<id> (from Jane at 10:00)``. Every id is returned in its canonical form
``<local@domain>``, so stored and looked-up ids compare equal.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from postroom.model import ParsedMessage

MAX_ID_LENGTH = 250
_BRACKETED = re.compile(r"<\s*([^<>]*?)\s*>")
_BARE = re.compile(r"[^\s<>,;()\"]+@[^\s<>,;()\"]+")
_COMMENT = re.compile(r"\([^()]*\)")
_FOLD = re.compile(r"\r?\n[ \t]*")


def canonical(value: str) -> str | None:
    """``<a@b>`` for ``a@b``, `` <a@b> `` or ``<a@b`` (truncated); None when it cannot be an id."""
    value = _FOLD.sub("", value).strip().strip(",;").strip()
    value = value.removeprefix("<").removesuffix(">").strip()
    if not value or len(value) > MAX_ID_LENGTH or any(c in value for c in " \t<>"):
        return None
    return f"<{value}>"


def parse_ids(value: str | None) -> tuple[str, ...]:
    """Every id in a References / In-Reply-To value, in order, without duplicates."""
    if not value:
        return ()
    text = _FOLD.sub(" ", value)
    found: list[tuple[int, str]] = []
    covered: list[tuple[int, int]] = []
    for match in _BRACKETED.finditer(text):
        inner = re.sub(r"\s+", "", match.group(1))
        if inner:
            found.append((match.start(), inner))
        covered.append(match.span())
    masked = list(text)
    for start, end in covered:
        masked[start:end] = " " * (end - start)
    rest = _COMMENT.sub(lambda m: " " * len(m.group(0)), "".join(masked))
    tail = rest.rfind("<")
    if tail != -1 and ">" not in rest[tail:]:
        # a truncated last id: "<abc@exam" (the header was cut); keep what there is
        piece = rest[tail + 1:].split()[0] if rest[tail + 1:].split() else ""
        if "@" in piece:
            found.append((tail, piece))
        rest = rest[:tail]
    for match in _BARE.finditer(rest):
        found.append((match.start(), match.group(0)))
    found.sort()
    return tuple(dict.fromkeys(c for c in (canonical(v) for _, v in found) if c))


def merge_ids(*groups: Iterable[str]) -> tuple[str, ...]:
    """Canonical ids of several sources, first occurrence wins."""
    return tuple(dict.fromkeys(c for group in groups for v in group if (c := canonical(v))))


def replied_to(parsed: ParsedMessage) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """In-Reply-To and References: the raw headers read as clients write them, merged with the parser's own
    reading (which also knows a forward's), so threading and storage see the same ids."""
    return (merge_ids(parse_ids(parsed.header("In-Reply-To")), parsed.in_reply_to),
            merge_ids(parse_ids(parsed.header("References")), parsed.references))


def make_message_id(domain: str) -> str:
    """A fresh ``<random@domain>`` for outbound mail (random, so it reveals nothing)."""
    return f"<{secrets.token_hex(12)}@{domain.lower()}>"


def thread_references(message_ids: Iterable[str], *, keep: int = 20) -> tuple[str, ...]:
    """The References of a reply: the first id (the root) plus the most recent ones (RFC 5322 3.6.4)."""
    ids = list(dict.fromkeys(message_ids))
    if len(ids) <= keep:
        return tuple(ids)
    return (ids[0], *ids[-(keep - 1):])
