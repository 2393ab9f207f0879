"""What a rule can look at: one frozen snapshot of a message and its context.

Built from the parsing stage's ParsedMessage plus the SMTP envelope and the
threading stage's answers, so rules can be evaluated (and tested) without a
database or a running gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from postroom import authresults
from postroom.model import Address, Attachment, Envelope, ParsedMessage

_EMPTY: Mapping[str, str] = MappingProxyType({})
_LIST_PRECEDENCE = frozenset({"bulk", "list", "junk"})
_LIST_HEADERS = frozenset({"list-id", "list-unsubscribe", "list-post"})


@dataclass(frozen=True)
class RuleInput:
    """A message as rules see it; addresses lower-cased, None tolerated everywhere."""

    envelope_from: str = ""
    from_address: str = ""
    from_name: str = ""
    reply_to: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    subject: str = ""
    reply_text: str = ""
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    attachment_names: tuple[str, ...] = ()
    attachment_types: tuple[str, ...] = ()
    attachment_count: int = 0
    size: int = 0
    spf: tuple[str, ...] = ()
    dkim: tuple[str, ...] = ()
    dmarc: tuple[str, ...] = ()
    language: str | None = None
    is_forward: bool = False
    is_auto_reply: bool = False
    is_bounce: bool = False
    is_mailing_list: bool = False
    is_reply: bool = False
    new_conversation: bool = True
    contact: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def header_values(self, name: str) -> tuple[str, ...]:
        """All values of a header, case-insensitive name."""
        lname = name.lower()
        return tuple(v for k, v in self.headers if k.lower() == lname)

    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedMessage,
        envelope: Envelope,
        *,
        is_reply: bool = False,
        new_conversation: bool = True,
        contact: Mapping[str, str] | None = None,
        language: str | None = None,
        trusted_authserv_ids: Iterable[str] | None = None,
    ) -> RuleInput:
        """Snapshot a parsed message.

        ``trusted_authserv_ids``: when given (Settings.trusted_authserv_id_list),
        only Authentication-Results stamped by those servers count, so a sender
        cannot forge a ``dmarc=pass`` header; an empty collection trusts none.
        """
        headers = tuple((str(k), str(v)) for k, v in (parsed.headers or ()))
        auth = _auth_results(parsed.authentication_results or _values(headers, "authentication-results"),
                             trusted_authserv_ids)
        attachments = parsed.attachments or ()
        from_address, from_name = _sender(parsed.sender)
        return cls(
            envelope_from=_addr(envelope.mail_from),
            from_address=from_address,
            from_name=from_name,
            reply_to=_addrs(parsed.reply_to),
            to=_addrs(parsed.to),
            cc=_addrs(parsed.cc),
            recipients=_recipients(envelope),
            subject=parsed.subject or "",
            reply_text=parsed.reply_text or "",
            body=parsed.text or "",
            headers=headers,
            attachment_names=tuple(a.filename for a in attachments if a.filename),
            attachment_types=_attachment_types(attachments),
            attachment_count=len(attachments),
            size=parsed.size or 0,
            spf=auth.get("spf", ()),
            dkim=auth.get("dkim", ()),
            dmarc=auth.get("dmarc", ()),
            language=language or None,
            is_forward=parsed.forward is not None,
            is_auto_reply=parsed.auto_reply is not None,
            is_bounce=parsed.bounce is not None,
            is_mailing_list=_is_mailing_list(parsed, headers),
            is_reply=is_reply,
            new_conversation=new_conversation,
            contact=MappingProxyType({str(k): str(v) for k, v in (contact or {}).items()}),
        )


def _sender(sender: Address | None) -> tuple[str, str]:
    """(address, display name) of the From, both empty without one."""
    if sender is None:
        return "", ""
    return _addr(sender.address), sender.name or ""


def _recipients(envelope: Envelope) -> tuple[str, ...]:
    return tuple(_addr(r) for r in envelope.rcpt_tos or () if r)


def _attachment_types(attachments: Iterable[Attachment]) -> tuple[str, ...]:
    """Declared and detected types, lower-cased, each once in first-seen order."""
    return tuple(dict.fromkeys(
        t.lower() for a in attachments for t in (a.content_type, a.detected_type) if t
    ))


def _addr(value: str | None) -> str:
    return (value or "").strip().strip("<>").lower()


def _addrs(addresses: Iterable[Address] | None) -> tuple[str, ...]:
    return tuple(_addr(a.address) for a in addresses or () if a.address)


def _is_mailing_list(parsed: ParsedMessage, headers: tuple[tuple[str, str], ...]) -> bool:
    """A List-Id, any other List-* header RFC 2369 names, or a bulk/list/junk Precedence."""
    if parsed.list_id or not {k.lower() for k, _ in headers}.isdisjoint(_LIST_HEADERS):
        return True
    return any(v.strip().lower() in _LIST_PRECEDENCE for v in _values(headers, "precedence"))


def _values(headers: tuple[tuple[str, str], ...], lname: str) -> tuple[str, ...]:
    return tuple(v for k, v in headers if k.lower() == lname)


def _auth_results(values: tuple[str, ...], trusted: Iterable[str] | None) -> dict[str, tuple[str, ...]]:
    """Method -> results (lower-cased) from Authentication-Results values; unparsable ones are skipped."""
    found: dict[str, list[str]] = {}
    allowed = None if trusted is None else {t.lower() for t in trusted}
    for value in values:
        try:
            stamp = authresults.parse(value)
        except Exception:  # authres raises several unrelated types on malformed input
            continue
        if allowed is not None and stamp.authserv_id not in allowed:
            continue
        for verdict in stamp.verdicts:
            found.setdefault(verdict.method, []).append(verdict.result)
    return {method: tuple(results) for method, results in found.items()}
