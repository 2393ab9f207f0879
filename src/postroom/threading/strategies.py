"""Where a message belongs: the ordered matching steps over a ``ConversationLookup``.

Each step is a plain function ``step(inp, ctx) -> ThreadMatch | None``; the
first answer wins. A blocked sender goes to the unsorted inbox before any
step looks at what the message claims. Then the issue's order: reply token, Message-ID chain,
reference tag, subject heuristic, then a new conversation (or the tenant's
unsorted inbox for what must never create one). Forwards sent to ``inbox@``
go to the unsorted inbox right after the token step, with suggestions.
Every step that finds an existing conversation hands it to ``_join``, which
applies the one participant policy of ``postroom.trust``.
Nothing here touches a database: tests pass a dict-backed lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from postroom import messageids as refs
from postroom import subjects, tokens
from postroom.addresses import BOUNCE_PREFIX, INBOX, POSTMASTER_PARTS, REPLY_PREFIX
from postroom.model import ParsedMessage
from postroom.threading_model import ConversationRef, Destination, SentMessage, ThreadMatch
from postroom.threading_policy import ThreadingPolicy
from postroom.trust import BLOCKED, FOREIGN

MAX_SUGGESTIONS = 5
SIGNED_PREFIXES = (REPLY_PREFIX, BOUNCE_PREFIX)
MAX_CHAIN_IDS = 60  # In-Reply-To plus the newest References; a 2,000-id header is not read in full


class ConversationLookup(Protocol):
    """Read-only questions about one tenant's conversations (never across tenants)."""

    def conversation(self, conversation_id: int) -> ConversationRef | None: ...

    def by_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """Message-ID -> conversation id, for stored messages (in or out) that are in a conversation."""
        ...

    def by_related_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """Id -> conversation id of stored messages that referenced that id (a shared, unseen ancestor)."""
        ...

    def by_reference(self, reference: str) -> ConversationRef | None: ...

    def contact_by_address(self, address: str) -> int | None: ...

    def live_contact(self, contact_id: int) -> int:
        """The contact a (possibly merged) contact id stands for now."""
        ...

    def recent_by_subject(self, contact_id: int, key: str, since: datetime) -> list[ConversationRef]:
        """The contact's conversations with this subject key, active since ``since``, newest first."""
        ...

    def latest_by_subject(self, contact_id: int, key: str) -> ConversationRef | None:
        """The contact's most recently active conversation with this subject key, however old."""
        ...

    def open_for_contact(self, contact_id: int) -> list[ConversationRef]:
        """The contact's conversations that are not closed, newest activity first."""
        ...

    def by_subject(self, key: str, limit: int) -> list[ConversationRef]:
        """Any conversations with this subject key, newest first (inbox suggestions)."""
        ...

    def conversations_started(self, contact_id: int, since: datetime) -> int:
        """How many conversations the contact started since ``since`` (the loop breaker for new mail)."""
        ...

    def is_staff(self, address: str) -> bool:
        """True for the address of an active staff member of the tenant."""
        ...

    def has_written(self, conversation_id: int, address: str) -> bool:
        """True when ``address`` wrote a message of the conversation that no trust flag marks (``trust.vouched``)."""
        ...

    def is_blocked(self, address: str) -> bool:
        """True when the tenant blocked this address (a conversation of its contact was marked spam)."""
        ...

    def sent_message(self, outbound_id: int) -> SentMessage | None:
        """The tenant's outbound message with this id: its conversation and Message-ID."""
        ...


@dataclass(frozen=True)
class MatchInput:
    """The facts of one inbound message that matching reads."""

    sender: str
    subject: str
    now: datetime
    message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    bounce_tokens: tuple[str, ...] = ()
    to_inbox: bool = True
    is_forward: bool = False
    forward_sender: str | None = None
    forward_subject: str | None = None
    auto_reply: bool = False
    bounce: bool = False
    bounce_original_id: str | None = None
    to_postmaster_only: bool = False
    from_own_address: bool = False

    @classmethod
    def from_parsed(cls, parsed: ParsedMessage, rcpt_tos: Sequence[str], *, now: datetime,
                    tenant_domains: Sequence[str] = ()) -> MatchInput:
        """Reply tokens come from the envelope recipients, then from To/Cc addresses at the tenant's domains;
        bounce tokens only from the envelope (only our envelope sender carries them)."""
        domains = {d.lower() for d in tenant_domains}
        locals_ = {r.strip().strip("<>").rpartition("@")[0].lower() for r in rcpt_tos}
        sender = (parsed.sender.address if parsed.sender else "").lower()
        message_id, in_reply_to, references, bounce_original_id = _message_ids(parsed)
        is_forward, forward_sender, forward_subject = _forward(parsed)
        return cls(
            sender=sender,
            subject=parsed.subject or "",
            now=now,
            message_id=message_id,
            in_reply_to=in_reply_to,
            references=references,
            tokens=_reply_tokens(parsed, rcpt_tos, domains),
            bounce_tokens=tuple(dict.fromkeys(t for r in rcpt_tos if (t := tokens.token_of(r, BOUNCE_PREFIX)))),
            to_inbox=not locals_ or any(not local.startswith(SIGNED_PREFIXES) for local in locals_),
            is_forward=is_forward,
            forward_sender=forward_sender,
            forward_subject=forward_subject,
            auto_reply=parsed.auto_reply is not None,
            bounce=parsed.bounce is not None,
            bounce_original_id=bounce_original_id,
            to_postmaster_only=bool(locals_) and locals_ <= POSTMASTER_PARTS,
            from_own_address=_from_own_address(sender, domains),
        )


def _message_ids(parsed: ParsedMessage) -> tuple[str | None, tuple[str, ...], tuple[str, ...], str | None]:
    """Its own Message-ID, In-Reply-To and References (header and parser merged), a bounce's original; canonical."""
    original = parsed.bounce.original_message_id if parsed.bounce else None
    in_reply_to, references = refs.replied_to(parsed)
    return (refs.canonical(parsed.message_id) if parsed.message_id else None, in_reply_to, references,
            refs.canonical(original) if original else None)


def _forward(parsed: ParsedMessage) -> tuple[bool, str | None, str | None]:
    """Whether it forwards a message, and that original's sender (lower case) and subject."""
    forward = parsed.forward
    if forward is None:
        return False, None, None
    return True, forward.sender.address.lower() if forward.sender else None, forward.subject


def _reply_tokens(parsed: ParsedMessage, rcpt_tos: Sequence[str], domains: set[str]) -> tuple[str, ...]:
    """Tokens of the envelope recipients, then of To/Cc addresses at the tenant's domains; no repeats."""
    found = [tokens.token_of(r) for r in rcpt_tos]
    found += [tokens.token_of(a.address) for a in (*parsed.to, *parsed.cc)
              if a.address.rpartition("@")[2].lower() in domains]
    return tuple(dict.fromkeys(t for t in found if t))


def _from_own_address(sender: str, domains: set[str]) -> bool:
    """Sent from one of the tenant's own addresses (its inbox, a reply or bounce address): our mail came back."""
    local, _, domain = sender.rpartition("@")
    return domain in domains and (local == INBOX or local.startswith(SIGNED_PREFIXES))


@dataclass(frozen=True)
class MatchContext:
    lookup: ConversationLookup
    policy: ThreadingPolicy
    secret: bytes
    contact_id: int | None = None


Step = Callable[[MatchInput, MatchContext], ThreadMatch | None]


def _attach(ctx: MatchContext, conversation_id: int, via: str, *, matched: str | None = None,
            flags: tuple[str, ...] = (), token_contact_id: int | None = None) -> ThreadMatch:
    return ThreadMatch("conversation", via, conversation_id, ctx.contact_id, token_contact_id, flags, matched)


def _inbox(inp: MatchInput, ctx: MatchContext, via: str, flags: tuple[str, ...] = ()) -> ThreadMatch:
    return ThreadMatch("inbox", via, None, ctx.contact_id, None, flags, None, suggest(inp, ctx))


def is_participant(inp: MatchInput, ctx: MatchContext, conversation: ConversationRef,
                   token_contact_id: int | None = None) -> bool:
    """The sender is the conversation's contact, the contact its token was issued to, staff, or wrote to it."""
    if not inp.sender:
        return False
    own = ctx.contact_id
    if own is not None:
        for contact in (conversation.contact_id, token_contact_id):
            if contact is not None and (contact == own or ctx.lookup.live_contact(contact) == own):
                return True
    return ctx.lookup.is_staff(inp.sender) or ctx.lookup.has_written(conversation.id, inp.sender)


def _join(inp: MatchInput, ctx: MatchContext, conversation: ConversationRef, via: str, *, matched: str | None,
          token_contact_id: int | None = None, never_attach_foreign: bool = False) -> ThreadMatch:
    """The one gate of every step that found an existing conversation: participants join it, others do not.

    A non-participant goes to the unsorted inbox flagged ``foreign_sender``
    with the conversation as first suggestion (``strict_senders``, the
    default, and always for a subject tag), else it is attached flagged.
    A bounce is let through: it comes from a mail server, never from a
    participant, and is recorded flagged ``bounce`` (it never reopens,
    notifies or is quoted).
    """
    if inp.bounce or is_participant(inp, ctx, conversation, token_contact_id):
        return _attach(ctx, conversation.id, via, matched=matched, token_contact_id=token_contact_id)
    if ctx.policy.strict_senders or never_attach_foreign:
        found = _inbox(inp, ctx, via, (FOREIGN,))
        return replace(found, suggestions=tuple(dict.fromkeys((conversation.id, *found.suggestions)))[:MAX_SUGGESTIONS])
    return _attach(ctx, conversation.id, via, matched=matched, flags=(FOREIGN,), token_contact_id=token_contact_id)


def blocked(inp: MatchInput, ctx: MatchContext) -> ThreadMatch | None:
    """0. A blocked sender never opens or joins a conversation, whatever token or header it shows.

    No suggestions either: staff marked this sender's conversation spam, the
    message waits in the inbox flagged ``blocked`` in case that was a mistake.
    """
    if inp.sender and ctx.lookup.is_blocked(inp.sender):
        return ThreadMatch("inbox", "blocked", None, ctx.contact_id, None, (BLOCKED,))
    return None


def by_bounce_address(inp: MatchInput, ctx: MatchContext) -> ThreadMatch | None:
    """1. Mail to ``bounce+<token>@``, the envelope sender of one outbound message, returns that message.

    A bounce (or anything else there that is not an auto-reply: only mail
    servers write to an envelope sender) is recorded against the message it
    names, whatever it quotes of the original; an auto-reply sent to the
    envelope sender is attached as one. A forged token goes to the inbox.
    """
    if not inp.bounce_tokens:
        return None
    for token in inp.bounce_tokens:
        outbound_id = tokens.verify_bounce_token(ctx.secret, token)
        sent = ctx.lookup.sent_message(outbound_id) if outbound_id is not None else None
        if sent is not None:
            flags = ("bounce",) if inp.bounce or not inp.auto_reply else ()
            destination: Destination = "conversation" if sent.conversation_id is not None else "inbox"
            return ThreadMatch(destination, "bounce-address", sent.conversation_id, ctx.contact_id, None, flags,
                               sent.message_id, returned=sent)
    return _inbox(inp, ctx, "bounce-address", ("forged_token",))


def by_token(inp: MatchInput, ctx: MatchContext) -> ThreadMatch | None:
    """1. An authentic reply token names the conversation; anything else that looks like one is suspect."""
    if not inp.tokens:
        return None
    flag = "forged_token"
    for token in inp.tokens:
        claim = tokens.verify_token(ctx.secret, token)
        if claim is None:
            continue
        conversation = ctx.lookup.conversation(claim.conversation_id)
        if conversation is None:
            flag = "token_unknown_conversation"
            continue
        return _join(inp, ctx, conversation, "token", matched=token, token_contact_id=claim.contact_id)
    return _inbox(inp, ctx, "token", (flag,))


def forward_to_inbox(inp: MatchInput, ctx: MatchContext) -> ThreadMatch | None:
    """A forward to inbox@ goes to the unsorted inbox: staff decide where the original belongs.

    A conversation its Message-ID chain points at is the first suggestion.
    """
    if not (inp.is_forward and inp.to_inbox) or inp.auto_reply or inp.bounce:
        return None
    found = _inbox(inp, ctx, "forward")
    chain = chained(inp, ctx)
    if chain is not None:
        ranked = (chain[0].id, *found.suggestions)
        found = replace(found, suggestions=tuple(dict.fromkeys(ranked))[:MAX_SUGGESTIONS])
    return found


def chain_ids(inp: MatchInput) -> tuple[tuple[str, str], ...]:
    """(id, via) in the order they are tried: bounce original, In-Reply-To, References newest first."""
    out: list[tuple[str, str]] = []
    if inp.bounce_original_id:
        out.append((inp.bounce_original_id, "bounce"))
    out += [(i, "in-reply-to") for i in inp.in_reply_to]
    out += [(i, "references") for i in reversed(inp.references)]
    out = out[:MAX_CHAIN_IDS]
    seen: set[str] = set()
    unique = []
    for mid, via in out:
        if mid not in seen and mid != inp.message_id:
            seen.add(mid)
            unique.append((mid, via))
    return tuple(unique)


def by_message_ids(inp: MatchInput, ctx: MatchContext) -> ThreadMatch | None:
    """2. The Message-ID chain against every stored Message-ID, then against ids other messages referenced."""
    found = chained(inp, ctx)
    if found is None:
        return None
    conversation, via, mid = found
    return _join(inp, ctx, conversation, via, matched=mid)


def chained(inp: MatchInput, ctx: MatchContext) -> tuple[ConversationRef, str, str] | None:
    """(conversation, via, id) the Message-ID chain points at, before anyone asks whether the sender may join."""
    ordered = chain_ids(inp)
    hits = ctx.lookup.by_message_ids([mid for mid, _ in ordered]) if ordered else {}
    found = next(((hits[mid], via, mid) for mid, via in ordered if mid in hits), None)
    if found is None:
        related = [mid for mid, _ in ordered] + ([inp.message_id] if inp.message_id else [])
        hits = ctx.lookup.by_related_ids(related) if related else {}
        found = next(((hits[mid], "related", mid) for mid in related if mid in hits), None)
    conversation = ctx.lookup.conversation(found[0]) if found is not None else None
    return (conversation, found[1], found[2]) if conversation is not None and found is not None else None


def by_reference_tag(inp: MatchInput, ctx: MatchContext) -> ThreadMatch | None:
    """3. ``[#…]`` in the subject, as sent in outbound subjects; a tag alone never attaches a non-participant.

    Only the first ``subjects.MAX_SUBJECT_TAGS`` tags are looked up.
    """
    for reference in subjects.find_references(inp.subject):
        conversation = ctx.lookup.by_reference(reference)
        if conversation is not None:
            return _join(inp, ctx, conversation, "reference-tag", matched=reference, never_attach_foreign=True)
    return None


def by_subject(inp: MatchInput, ctx: MatchContext) -> ThreadMatch | None:
    """4. Same contact, same subject once prefixes are gone, active within the tenant's window."""
    if not ctx.policy.heuristic or ctx.contact_id is None:
        return None
    key = subjects.subject_key(inp.subject)
    if not key:
        return None
    found = ctx.lookup.recent_by_subject(ctx.contact_id, key, inp.now - ctx.policy.heuristic_window)
    return _join(inp, ctx, found[0], "subject", matched=key) if found else None


def new_or_inbox(inp: MatchInput, ctx: MatchContext) -> ThreadMatch:
    """5. Automatic mail never creates a conversation; otherwise a new one (or the open one, by policy)."""
    if inp.bounce:
        return _inbox(inp, ctx, "bounce", ("bounce",))
    if inp.auto_reply:
        return _inbox(inp, ctx, "auto-reply", ("auto_reply",))
    if not inp.sender:
        return _inbox(inp, ctx, "no-sender", ("no_sender",))
    if inp.from_own_address:
        return _inbox(inp, ctx, "own-address", ("own_address",))  # our own mail came back: never a conversation
    if inp.to_postmaster_only:
        return _inbox(inp, ctx, "postmaster", ("postmaster",))
    if ctx.contact_id is not None and \
            ctx.lookup.conversations_started(ctx.contact_id, inp.now - ctx.policy.loop_window) >= ctx.policy.loop_max:
        return _inbox(inp, ctx, "loop", ("loop",))  # a responder answering each mail with a new thread
    if ctx.policy.new_mail == "join_open" and ctx.contact_id is not None:
        open_ = ctx.lookup.open_for_contact(ctx.contact_id)
        if open_:
            return _join(inp, ctx, open_[0], "join-open", matched=None)
    return ThreadMatch("new", "new", None, ctx.contact_id, follows=_followed(inp, ctx))


def _followed(inp: MatchInput, ctx: MatchContext) -> int | None:
    """A reply-looking subject ("Re: Keys") of the contact's older conversation, past the subject window.

    The subject step did not attach it (too old, or heuristics off), so it
    starts a new conversation; staff see which one it picks up again.
    """
    if ctx.contact_id is None or not subjects.is_reply_subject(inp.subject):
        return None
    older = ctx.lookup.latest_by_subject(ctx.contact_id, subjects.subject_key(inp.subject))
    return older.id if older is not None else None


def suggest(inp: MatchInput, ctx: MatchContext) -> tuple[int, ...]:
    """Conversations an inbox message may belong to: the (original) sender's open ones, then by subject."""
    sender = inp.forward_sender or inp.sender
    subject = inp.forward_subject if inp.forward_subject is not None else inp.subject
    ranked: list[int] = []
    contact = ctx.lookup.contact_by_address(sender) if sender else None
    if contact is not None:
        ranked += [c.id for c in ctx.lookup.open_for_contact(contact)]
    key = subjects.subject_key(subject)
    if key:
        ranked += [c.id for c in ctx.lookup.by_subject(key, MAX_SUGGESTIONS)]
    return tuple(dict.fromkeys(ranked))[:MAX_SUGGESTIONS]


STEPS: tuple[Step, ...] = (blocked, by_bounce_address, by_token, forward_to_inbox, by_message_ids, by_reference_tag,
                           by_subject)


def match(inp: MatchInput, lookup: ConversationLookup, *, secret: bytes,
          policy: ThreadingPolicy | None = None) -> ThreadMatch:
    """Run the steps in order; the first one that answers decides."""
    contact_id = lookup.contact_by_address(inp.sender) if inp.sender else None
    ctx = MatchContext(lookup=lookup, policy=policy or ThreadingPolicy(), secret=secret, contact_id=contact_id)
    for step in STEPS:
        found = step(inp, ctx)
        if found is not None:
            return found
    return new_or_inbox(inp, ctx)
