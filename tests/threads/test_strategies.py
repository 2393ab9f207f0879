"""Every matching step alone, then the order, over a dict-backed ConversationLookup."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from postroom.model import Address, AutoReply, Bounce, Forward, ParsedMessage
from postroom.subjects import subject_key
from postroom.threading import strategies as s
from postroom.threading.strategies import MatchContext, MatchInput
from postroom.threading_model import ConversationRef
from postroom.threading_policy import ThreadingPolicy
from postroom.tokens import make_token

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SECRET = secrets.token_bytes(32)


@dataclass
class FakeLookup:
    """The protocol over plain dicts, as the storage layer answers it."""

    conversations: dict[int, ConversationRef] = field(default_factory=dict)
    message_ids: dict[str, int] = field(default_factory=dict)
    related: dict[str, int] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)
    merged: dict[int, int] = field(default_factory=dict)
    started: dict[int, int] = field(default_factory=dict)
    staff: set[str] = field(default_factory=set)
    written: dict[int, set[str]] = field(default_factory=dict)  # conversation -> addresses with a trusted message
    blocked: set[str] = field(default_factory=set)

    def conversation(self, conversation_id: int) -> ConversationRef | None:
        return self.conversations.get(conversation_id)

    def by_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        return {i: self.message_ids[i] for i in ids if i in self.message_ids}

    def by_related_ids(self, ids: Sequence[str]) -> dict[str, int]:
        return {i: self.related[i] for i in ids if i in self.related}

    def by_reference(self, reference: str) -> ConversationRef | None:
        return next((c for c in self.conversations.values() if c.reference == reference), None)

    def contact_by_address(self, address: str) -> int | None:
        return self.contacts.get(address)

    def live_contact(self, contact_id: int) -> int:
        return self.merged.get(contact_id, contact_id)

    def conversations_started(self, contact_id: int, since: datetime) -> int:
        return self.started.get(contact_id, 0)

    def is_staff(self, address: str) -> bool:
        return address in self.staff

    def has_written(self, conversation_id: int, address: str) -> bool:
        return address in self.written.get(conversation_id, set())

    def is_blocked(self, address: str) -> bool:
        return address in self.blocked

    def _newest(self, convs) -> list[ConversationRef]:
        return sorted(convs, key=lambda c: c.last_activity_at, reverse=True)

    def recent_by_subject(self, contact_id: int, key: str, since: datetime) -> list[ConversationRef]:
        return self._newest(c for c in self.conversations.values()
                            if c.contact_id == contact_id and c.subject_key == key and c.last_activity_at >= since)

    def latest_by_subject(self, contact_id: int, key: str) -> ConversationRef | None:
        found = self._newest(c for c in self.conversations.values()
                             if c.contact_id == contact_id and c.subject_key == key)
        return found[0] if found else None

    def open_for_contact(self, contact_id: int) -> list[ConversationRef]:
        return self._newest(c for c in self.conversations.values()
                            if c.contact_id == contact_id and c.status != "closed")

    def by_subject(self, key: str, limit: int) -> list[ConversationRef]:
        return self._newest(c for c in self.conversations.values() if c.subject_key == key)[:limit]


def conv(id_: int, contact: int, subject: str = "Heating", status: str = "open", days_ago: int = 1,
         reference: str | None = None) -> ConversationRef:
    return ConversationRef(id_, contact, status, subject_key(subject), reference or f"REF{id_:03d}",
                           NOW - timedelta(days=days_ago))


def lookup() -> FakeLookup:
    return FakeLookup(
        conversations={1: conv(1, 10, "Heating"), 2: conv(2, 20, "Keys", reference="A1B2C3"),
                       3: conv(3, 10, "Old question", status="closed", days_ago=40)},
        message_ids={"<m1@x>": 1, "<m2@y>": 2},
        related={"<ghost@x>": 2},
        contacts={"jean@example.com": 10, "anna@example.com": 20},
    )


def inp(**changes) -> MatchInput:
    return replace(MatchInput(sender="jean@example.com", subject="Hello", now=NOW), **changes)


def ctx(fake: FakeLookup | None = None, contact: int | None = 10, **policy) -> MatchContext:
    return MatchContext(lookup=fake or lookup(), policy=ThreadingPolicy(**policy), secret=SECRET, contact_id=contact)


# --- 0. blocked sender ---

def test_blocked_sender_goes_to_inbox_before_its_token_or_chain_is_read() -> None:
    fake = lookup()
    fake.blocked.add("jean@example.com")
    found = s.match(inp(tokens=(make_token(SECRET, 1, 10),), in_reply_to=("<m1@x>",), subject="Re: Heating"), fake,
                    secret=SECRET)
    assert (found.destination, found.via, found.flags, found.conversation_id, found.suggestions) == \
        ("inbox", "blocked", ("blocked",), None, ())
    other = s.match(inp(sender="anna@example.com", in_reply_to=("<m2@y>",)), fake, secret=SECRET)
    assert (other.destination, other.conversation_id) == ("conversation", 2)


# --- 1. reply token ---

def test_token_of_the_contact_attaches() -> None:
    found = s.by_token(inp(tokens=(make_token(SECRET, 1, 10),)), ctx())
    assert (found.destination, found.conversation_id, found.via, found.flags) == ("conversation", 1, "token", ())


def test_token_used_by_another_sender_attaches_flagged_when_not_strict() -> None:
    found = s.by_token(inp(sender="anna@example.com", tokens=(make_token(SECRET, 1, 10),)),
                       ctx(contact=20, strict_senders=False))
    assert (found.destination, found.conversation_id, found.flags) == ("conversation", 1, ("foreign_sender",))
    unknown = s.by_token(inp(sender="new@example.com", tokens=(make_token(SECRET, 1, 10),)),
                         ctx(contact=None, strict_senders=False))
    assert unknown.conversation_id == 1 and unknown.flags == ("foreign_sender",)


def test_token_of_a_contact_merged_since_is_not_foreign() -> None:
    fake = lookup()
    fake.merged[77] = 10
    found = s.by_token(inp(tokens=(make_token(SECRET, 1, 77),)), ctx(fake))
    assert (found.conversation_id, found.flags) == (1, ())


def test_token_used_by_another_sender_goes_to_inbox_by_default() -> None:
    found = s.by_token(inp(tokens=(make_token(SECRET, 1, 10),)), ctx(contact=20))
    assert (found.destination, found.flags, found.suggestions[0]) == ("inbox", ("foreign_sender",), 1)


def test_forged_or_foreign_token_goes_to_inbox_flagged() -> None:
    other_tenant = make_token(secrets.token_bytes(32), 1, 10)
    for token in (other_tenant, make_token(SECRET, 1, 10)[:-3], "aaaaaaaaaaaaaaaaaaaa"):
        found = s.by_token(inp(tokens=(token,), in_reply_to=("<m1@x>",)), ctx())
        assert (found.destination, found.conversation_id, found.flags) == ("inbox", None, ("forged_token",))


def test_token_of_a_deleted_conversation_goes_to_inbox() -> None:
    found = s.by_token(inp(tokens=(make_token(SECRET, 99, 10),)), ctx())
    assert (found.destination, found.flags) == ("inbox", ("token_unknown_conversation",))


def test_no_token_no_answer() -> None:
    assert s.by_token(inp(), ctx()) is None


# --- forwards to inbox@ ---

def test_forward_to_inbox_goes_to_inbox_with_suggestions() -> None:
    fake = lookup()
    found = s.forward_to_inbox(inp(sender="staff@acme.example", is_forward=True, forward_sender="jean@example.com",
                                   forward_subject="Keys"), ctx(fake, contact=None))
    assert found.destination == "inbox" and found.via == "forward"
    assert found.suggestions == (1, 2)  # Jean's open conversation first, then the subject match
    chained = s.forward_to_inbox(inp(sender="staff@acme.example", is_forward=True, forward_sender="jean@example.com",
                                     forward_subject="Keys", references=("<m1@x>",)), ctx(fake, contact=None))
    assert chained.destination == "inbox" and chained.suggestions == (1, 2)
    chained = s.forward_to_inbox(inp(sender="staff@acme.example", is_forward=True, forward_sender="anna@example.com",
                                     forward_subject="Other", in_reply_to=("<m1@x>",)), ctx(fake, contact=None))
    assert chained.suggestions == (1, 2)  # the chain's conversation first, then Anna's open one
    assert s.forward_to_inbox(inp(is_forward=True, to_inbox=False), ctx()) is None
    assert s.forward_to_inbox(inp(), ctx()) is None


# --- 2. Message-ID chain ---

def test_in_reply_to_first() -> None:
    found = s.by_message_ids(inp(in_reply_to=("<m2@y>",), references=("<m1@x>",)), ctx(strict_senders=False))
    assert (found.conversation_id, found.via, found.matched) == (2, "in-reply-to", "<m2@y>")


def test_references_newest_first() -> None:
    found = s.by_message_ids(inp(sender="anna@example.com", references=("<m1@x>", "<unknown@z>", "<m2@y>")),
                             ctx(contact=20))
    assert (found.conversation_id, found.via, found.flags) == (2, "references", ())
    found = s.by_message_ids(inp(references=("<m1@x>", "<unknown@z>")), ctx())
    assert (found.conversation_id, found.via, found.flags) == (1, "references", ())


def test_bounce_original_message_id_first() -> None:
    found = s.by_message_ids(inp(bounce=True, bounce_original_id="<m1@x>", references=("<m2@y>",)), ctx())
    assert (found.conversation_id, found.via) == (1, "bounce")


def test_shared_unseen_ancestor() -> None:
    found = s.by_message_ids(inp(sender="anna@example.com", references=("<ghost@x>",)), ctx(contact=20))
    assert (found.conversation_id, found.via) == (2, "related")


def test_unknown_ids_no_answer() -> None:
    assert s.by_message_ids(inp(in_reply_to=("<nope@x>",)), ctx()) is None
    assert s.by_message_ids(inp(), ctx()) is None


# --- 3. reference tag ---

def test_reference_tag() -> None:
    found = s.by_reference_tag(inp(subject="Re: Keys [#a1b2c3]", sender="anna@example.com"), ctx(contact=20))
    assert (found.conversation_id, found.via, found.flags) == (2, "reference-tag", ())
    stranger = s.by_reference_tag(inp(subject="Keys [#A1B2C3]"), ctx(contact=10))
    assert (stranger.destination, stranger.flags, stranger.suggestions[0]) == ("inbox", ("foreign_sender",), 2)
    never = s.by_reference_tag(inp(subject="Keys [#A1B2C3]"), ctx(contact=10, strict_senders=False))
    assert (never.destination, never.flags) == ("inbox", ("foreign_sender",))  # a tag never attaches a stranger
    assert s.by_reference_tag(inp(subject="Keys [#ZZZZZZ]"), ctx()) is None


# --- 4. subject heuristic ---

def test_subject_heuristic_same_contact_within_window() -> None:
    found = s.by_subject(inp(subject="AW: Heating"), ctx())
    assert (found.conversation_id, found.via) == (1, "subject")


def test_subject_heuristic_limits() -> None:
    assert s.by_subject(inp(subject="Re: Heating"), ctx(contact=20)) is None       # other contact
    assert s.by_subject(inp(subject="Re: Old question"), ctx()) is None            # 40 days old
    assert s.by_subject(inp(subject="Re: Old question"), ctx(heuristic_days=60)).conversation_id == 3
    assert s.by_subject(inp(subject="Re: Heating"), ctx(heuristic=False)) is None  # tenant turned it off
    assert s.by_subject(inp(subject="Re: Heating"), ctx(contact=None)) is None     # unknown sender


# --- 5. new conversation or inbox ---

def test_new_conversation_by_default() -> None:
    found = s.new_or_inbox(inp(), ctx())
    assert (found.destination, found.conversation_id) == ("new", None)


def test_a_reply_to_a_conversation_past_the_window_starts_one_that_follows_it() -> None:
    found = s.match(inp(subject="Re: Old question"), lookup(), secret=SECRET)  # conversation 3: closed, 40 days
    assert (found.destination, found.follows) == ("new", 3)
    assert s.match(inp(subject="Old question"), lookup(), secret=SECRET).follows is None  # not a reply
    assert s.match(inp(sender="x@y.example", subject="Re: Old question"), lookup(), secret=SECRET).follows is None


def test_join_open_policy() -> None:
    found = s.new_or_inbox(inp(), ctx(new_mail="join_open"))
    assert (found.destination, found.conversation_id, found.via) == ("conversation", 1, "join-open")
    assert s.new_or_inbox(inp(), ctx(contact=None, new_mail="join_open")).destination == "new"


def test_automatic_mail_never_creates() -> None:
    assert s.new_or_inbox(inp(auto_reply=True), ctx()).destination == "inbox"
    assert s.new_or_inbox(inp(bounce=True), ctx()).flags == ("bounce",)


def test_a_contact_starting_too_many_conversations_goes_to_the_inbox() -> None:
    fake = lookup()
    fake.started[10] = 10
    found = s.new_or_inbox(inp(), ctx(fake))
    assert (found.destination, found.flags) == ("inbox", ("loop",))
    fake.started[10] = 9
    assert s.new_or_inbox(inp(), ctx(fake)).destination == "new"


def test_own_mail_and_postmaster_mail_never_create() -> None:
    assert s.new_or_inbox(inp(from_own_address=True), ctx()).flags == ("own_address",)
    assert s.new_or_inbox(inp(to_postmaster_only=True), ctx()).flags == ("postmaster",)
    own = ParsedMessage(message_id=None, in_reply_to=(), references=(), subject="x", date=NOW,
                        sender=Address("", "reply+abc@acme.mail.test"))
    assert MatchInput.from_parsed(own, ["postmaster@acme.mail.test"], now=NOW,
                                  tenant_domains=["acme.mail.test"]).from_own_address
    assert MatchInput.from_parsed(own, ["postmaster@acme.mail.test"], now=NOW).to_postmaster_only


def test_huge_references_are_bounded() -> None:
    many = tuple(f"<{i}@x>" for i in range(5000))
    assert len(s.chain_ids(inp(references=many))) == s.MAX_CHAIN_IDS
    assert s.chain_ids(inp(references=many))[0] == ("<4999@x>", "references")


# --- the order ---

def test_order_token_beats_chain_beats_tag_beats_subject() -> None:
    fake = lookup()
    fake.written[2] = {"jean@example.com"}  # Jean wrote to Anna's conversation before: a participant of it
    everything = inp(tokens=(make_token(SECRET, 3, 10),), in_reply_to=("<m2@y>",), subject="Re: Heating [#A1B2C3]")
    assert s.match(everything, fake, secret=SECRET).conversation_id == 3
    assert s.match(replace(everything, tokens=()), fake, secret=SECRET).conversation_id == 2
    no_chain = replace(everything, tokens=(), in_reply_to=())
    assert s.match(no_chain, fake, secret=SECRET).via == "reference-tag"
    assert s.match(replace(no_chain, subject="Re: Heating"), fake, secret=SECRET).via == "subject"
    assert s.match(replace(no_chain, subject="Something else"), fake, secret=SECRET).destination == "new"


def test_forged_token_is_not_rescued_by_the_chain() -> None:
    found = s.match(inp(tokens=("garbage0000000000000",), in_reply_to=("<m1@x>",)), lookup(), secret=SECRET)
    assert found.destination == "inbox" and "forged_token" in found.flags


def test_match_input_from_parsed() -> None:
    parsed = ParsedMessage(
        message_id="<me@x>", in_reply_to=(), references=("<a@x>",), subject="Re: Heating", date=NOW,
        sender=Address("Jean", "Jean@Example.com"),
        to=(Address("", "reply+abc@acme.mail.test"), Address("", "reply+zzz@elsewhere.example")),
        headers=(("References", "<a@x>,<b@x>"), ("In-Reply-To", "b@x")),
        auto_reply=AutoReply("subject"), bounce=Bounce((), (), "<orig@x>"),
        forward=Forward(Address("", "Orig@Example.com"), (), (), None, "Keys", "text"),
    )
    found = MatchInput.from_parsed(parsed, ["inbox@acme.mail.test"], now=NOW, tenant_domains=["acme.mail.test"])
    assert found.sender == "jean@example.com"
    assert found.references == ("<a@x>", "<b@x>") and found.in_reply_to == ("<b@x>",)
    assert found.tokens == ("abc",) and found.to_inbox
    assert found.is_forward and found.forward_sender == "orig@example.com"
    assert found.auto_reply and found.bounce and found.bounce_original_id == "<orig@x>"
    only_reply = MatchInput.from_parsed(parsed, ["reply+def@acme.mail.test"], now=NOW)
    assert only_reply.tokens == ("def",) and not only_reply.to_inbox
