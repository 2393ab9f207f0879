"""Who may join a conversation: the one participant policy, step by step, over the dict-backed lookup."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.threads.test_strategies import SECRET, ctx, inp, lookup

from postroom import subjects, trust
from postroom.threading import strategies as s
from postroom.tokens import make_token

STRANGER = "mallory@evil.example"


@pytest.mark.parametrize("step_input", [
    {"in_reply_to": ("<m2@y>",)},
    {"references": ("<m1@x>", "<m2@y>")},
    {"references": ("<ghost@x>",)},
    {"tokens": (make_token(SECRET, 2, 20),)},
    {"subject": "Re: Keys [#A1B2C3]"},
])
def test_a_stranger_finding_a_conversation_goes_to_the_inbox_with_it_suggested(step_input: dict) -> None:
    found = s.match(inp(sender=STRANGER, **step_input), lookup(), secret=SECRET)
    assert (found.destination, found.flags, found.suggestions[:1]) == ("inbox", (trust.FOREIGN,), (2,))


@pytest.mark.parametrize("address", ["anna@example.com", "sophie@acme.example", "marie@example.org"])
def test_participants_join(address: str) -> None:
    """The contact, a staff member, and an address that already wrote to the conversation unflagged."""
    fake = lookup()
    fake.staff.add("sophie@acme.example")
    fake.written[2] = {"marie@example.org"}
    found = s.match(inp(sender=address, in_reply_to=("<m2@y>",)), fake, secret=SECRET)
    assert (found.destination, found.conversation_id, found.flags) == ("conversation", 2, ())


def test_the_contact_a_token_was_issued_to_joins() -> None:
    """A token handed to Jean for Anna's conversation (Jean was written to in it) lets Jean answer."""
    found = s.by_token(inp(tokens=(make_token(SECRET, 2, 10),)), ctx())
    assert (found.destination, found.conversation_id, found.flags) == ("conversation", 2, ())


def test_a_merged_contact_is_still_the_conversations_contact() -> None:
    fake = lookup()
    fake.merged[20] = 10  # Anna's contact was merged into Jean's
    found = s.by_message_ids(inp(in_reply_to=("<m2@y>",)), ctx(fake))
    assert (found.conversation_id, found.flags) == (2, ())


def test_bounces_are_let_through_to_be_recorded_flagged() -> None:
    found = s.by_message_ids(inp(sender="mailer-daemon@mx.example", bounce=True, bounce_original_id="<m2@y>"),
                             ctx(contact=None))
    assert (found.destination, found.conversation_id, found.via) == ("conversation", 2, "bounce")


def test_not_strict_attaches_flagged_except_by_tag() -> None:
    chain = s.by_message_ids(inp(sender=STRANGER, in_reply_to=("<m2@y>",)), ctx(contact=None, strict_senders=False))
    assert (chain.destination, chain.conversation_id, chain.flags) == ("conversation", 2, (trust.FOREIGN,))
    tag = s.by_reference_tag(inp(sender=STRANGER, subject="[#A1B2C3]"), ctx(contact=None, strict_senders=False))
    assert (tag.destination, tag.flags) == ("inbox", (trust.FOREIGN,))


def test_join_open_and_subject_steps_only_ever_find_the_senders_own_conversations() -> None:
    assert s.by_subject(inp(sender=STRANGER, subject="Re: Keys"), ctx(contact=None)) is None
    assert s.new_or_inbox(inp(sender=STRANGER), ctx(contact=None, new_mail="join_open")).destination == "new"


def test_only_the_first_three_tags_are_read() -> None:
    sprayed = " ".join(f"[#{i:06d}]" for i in range(10_000)) + " [#A1B2C3]"
    assert len(subjects.find_references(sprayed)) == subjects.MAX_SUBJECT_TAGS
    asked: list[str] = []
    fake = lookup()
    by_reference = fake.by_reference
    fake.by_reference = lambda reference: asked.append(reference) or by_reference(reference)  # type: ignore
    assert s.by_reference_tag(inp(sender="anna@example.com", subject=sprayed), ctx(fake, contact=20)) is None
    assert len(asked) == subjects.MAX_SUBJECT_TAGS


def test_new_references_are_long_and_legacy_ones_still_found() -> None:
    assert subjects.REFERENCE_LENGTH == 12
    assert subjects.find_references("Re: [#7KQ2M9XR4T3W] and [#A1B2C3]") == ("7KQ2M9XR4T3W", "A1B2C3")
    assert subjects.subject_key("Re: Keys [#7KQ2M9XR4T3W]") == subjects.subject_key("Keys")


def test_untrusted_flags_never_vouch() -> None:
    assert trust.vouched(()) and trust.vouched(("duplicate_of_other",))
    for flag in ("foreign_sender", "auto_reply", "bounce", "quarantine", "forged_token", "loop"):
        assert not trust.vouched((flag,)), flag


def test_the_order_is_unchanged_for_participants() -> None:
    fake = lookup()
    found = s.match(replace(inp(), in_reply_to=("<m1@x>",), subject="Re: Keys [#A1B2C3]"), fake, secret=SECRET)
    assert (found.conversation_id, found.via) == (1, "in-reply-to")
