"""What one staff notification says, per event kind: who may read a message's words, and in which language."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from postroom.outbound.staff_mail import EXCERPT, describe
from postroom.storage.conversation_views import ConversationSummary, EventView
from postroom.storage.staff_mail import MailSetting, MessageGist

NOW = datetime(2026, 1, 5, tzinfo=UTC)
ANN = MailSetting(user_id=7, tenant_id=1, email="ann@acme.example", name="Ann", mode="immediate",
                  every_minutes=0, after_event_id=0, last_mailed_at=None)
SUMMARY = ConversationSummary(id=3, tenant_id=1, reference="AC-3", subject="Boiler", status="open", category=None,
                              contact_id=None, contact_email=None, contact_name="", responsible_user_id=None,
                              responsible_team_id=None, unit_ref=None, tags=(), flags=(), created_at=NOW,
                              last_activity_at=NOW, last_customer_at=NOW, last_staff_at=None, message_count=1)


def event(kind: str, **payload: object) -> EventView:
    return EventView(id=1, kind=kind, recipient_type="user", recipient_id=ANN.user_id, conversation_id=3,
                     message_id=5, payload=dict(payload))


def gist(*, kind: str = "message", direction: str = "in", name: str = "Zoë") -> MessageGist:
    return MessageGist(id=5, kind=kind, direction=direction, author_name=name, author_email="zoe@example.com",
                       text="The boiler\n  is   broken.")


@pytest.mark.parametrize(("kind", "headline"), [
    ("new_conversation", "New conversation AC-3 from Zoë: Boiler"),
    ("customer_message", "Zoë wrote in AC-3: Boiler"),
])
def test_a_customers_message_shows_its_words(kind: str, headline: str) -> None:
    assert describe(event(kind), ANN, SUMMARY, gist(), "en") == (headline, "The boiler is broken.")


def test_a_note_or_outgoing_message_shows_no_words_and_the_author_falls_back_to_the_address() -> None:
    assert describe(event("customer_message"), ANN, SUMMARY, gist(kind="note"), "en") == \
        ("Zoë wrote in AC-3: Boiler", "")
    assert describe(event("customer_message"), ANN, SUMMARY, gist(direction="out", name=""), "en") == \
        ("zoe@example.com wrote in AC-3: Boiler", "")
    assert describe(event("new_conversation", subject="Tap", reference="AC-9"), ANN, None, None, "fr") == \
        ("Nouvelle conversation AC-9 de  : Tap", "")


def test_a_mention_shows_the_notes_excerpt_only_to_the_user_it_mentions() -> None:
    mention = event("mention", by_name="Bob", excerpt="@ann  a secret\ndiscount")
    headline = "Bob mentioned you in AC-3: Boiler"
    assert describe(mention, ANN, SUMMARY, None, "en") == (headline, "@ann a secret discount")
    assert describe(replace(mention, recipient_type="team"), ANN, SUMMARY, None, "en") == (headline, "")
    assert describe(replace(mention, recipient_id=8), ANN, SUMMARY, None, "en")[1] == ""
    assert describe(event("mention"), ANN, None, None, "nl") == (" noemde u in : ", "")


def test_an_assignment_has_a_headline_only() -> None:
    assert describe(event("assigned"), ANN, SUMMARY, gist(), "en") == ("You are now responsible for AC-3: Boiler", "")


def test_a_failed_delivery_names_its_recipients_and_reason() -> None:
    failed = event("delivery_failed", subject="Re: Boiler", recipients=["zoe@example.com", "z@example.org"],
                   reason="550 " + "x" * 2 * EXCERPT)
    headline, body = describe(failed, ANN, SUMMARY, None, "en")
    assert headline == "Not delivered to zoe@example.com, z@example.org: Re: Boiler"
    assert body == ("550 " + "x" * 2 * EXCERPT)[:EXCERPT]
    assert describe(event("delivery_failed"), ANN, SUMMARY, None, "en") == ("Not delivered to : Boiler", "")


def test_a_long_message_is_cut_to_an_excerpt() -> None:
    long = replace(gist(), text="x" * (EXCERPT + 1))
    assert describe(event("customer_message"), ANN, SUMMARY, long, "en")[1] == "x" * EXCERPT + " …"
