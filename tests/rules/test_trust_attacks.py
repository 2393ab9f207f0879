"""A scripted attacker against the real service: a stranger never steers or reads a customer's conversation.

The stranger writes with the customer's display name and tries every way of
finding the customer's conversation (In-Reply-To, References, a subject
sprayed with tags, the real tag, the real reply token) while an auto-reply
rule is in force. Nothing of the stranger's may join the conversation
unflagged, no mail to the stranger may carry the conversation's subject,
reference, token or Message-IDs, and staff replies quote only the customer.
"""

from __future__ import annotations

import json
import os
import random
from email.utils import make_msgid

import pytest
from tests.rules.conftest import finished, write_rules

from postroom import subjects
from postroom.outbound import actions
from postroom.service import Service
from postroom.storage import conversation_actions, conversation_views, threading_lookup
from postroom.storage import outbound as outbound_store
from postroom.testing import make_eml, wait_until

CUSTOMER = "jean.customer@example.com"
STRANGER = "mallory@evil.example"
STAFF = "sophie@acme.example"
ALWAYS_ANSWER = "rules:\n  - name: Answer everything\n    then: { auto_reply: acknowledgement }\n"


def _message(svc: Service, mid: str) -> conversation_views.MessageView:
    with svc.app.session() as session:
        row = conversation_views.message_row_by_header(session, _acme(svc), mid)
        assert row is not None, mid
        return conversation_views.get_message(session, row)


def _acme(svc: Service) -> int:
    with svc.app.session() as session:
        return conversation_views._tenant_id(session, "acme")


def _sprayed_subject(real_tag: str, count: int) -> str:
    alphabet = subjects.REFERENCE_ALPHABET
    guesses = "".join(f"[#{''.join(random.choices(alphabet, k=6))}]" for _ in range(count))
    return f"Re: deposit {guesses} {real_tag}"


class Victim:
    """The customer's conversation, a staff reply in it, and what the stranger may have learnt of it."""

    def __init__(self, svc: Service, send, settings) -> None:  # type: ignore[no-untyped-def]
        self.svc, self.send = svc, send
        write_rules(settings, "acme", ALWAYS_ANSWER)
        actions.add_user(svc.app, "acme", email=STAFF, name="Sophie")
        self.first_mid = make_msgid(domain="example.com")
        self.deliver(make_eml(sender=f"Jean Customer <{CUSTOMER}>", subject="Deposit for unit 12",
                              message_id=self.first_mid, body="When is the deposit for unit 12 due?"), CUSTOMER)
        self.conversation_id = _message(svc, self.first_mid).conversation_id
        assert self.conversation_id is not None
        self.reply = actions.reply(svc.app, self.conversation_id, STAFF, "It is due on the 15th.")
        summary, messages = _conversation(svc, self.conversation_id)
        self.reference, self.subject = summary.reference, summary.subject
        self.secrets = self._secrets(summary, messages)

    def _secrets(self, summary: conversation_views.ConversationSummary,
                 messages: list[conversation_views.MessageView]) -> set[str]:
        reply_to = dict(self.reply.outbound.headers).get("Reply-To", "")
        token = reply_to.partition("reply+")[2].partition("@")[0]
        assert token, reply_to
        self.reply_address = f"reply+{token}@acme.mail.test"
        return {summary.reference, summary.subject, token, *(m.message_id for m in messages if m.message_id)}

    def deliver(self, raw: bytes, mail_from: str, rcpts: tuple[str, ...] = ("inbox@acme.mail.test",)) -> None:
        before = len(finished(self.svc, 0))
        self.send(raw, mail_from=mail_from, rcpts=rcpts)
        wait_until(lambda: finished(self.svc, before + 1))

    def attack(self, **changes: object) -> conversation_views.MessageView:
        mid = make_msgid(domain="evil.example")
        rcpts = changes.pop("rcpts", ("inbox@acme.mail.test",))
        fields = {"sender": f"Jean Customer <{STRANGER}>", "subject": "Re: Deposit for unit 12",
                  "message_id": mid, "body": "Please wire the deposit to IBAN XX00 EVIL 0000 instead.",
                  "to": rcpts[0], **changes}
        self.deliver(make_eml(**fields), STRANGER, rcpts)  # type: ignore[arg-type]
        return _message(self.svc, mid)

    def all_attacks(self) -> dict[str, conversation_views.MessageView]:
        """Each attack by name, and where its message landed."""
        tag = subjects.reference_tag(self.reference)
        return {
            "In-Reply-To names the staff reply": self.attack(headers={"In-Reply-To": self.reply.outbound.message_id}),
            "References name the conversation's messages": self.attack(
                headers={"References": f"{self.first_mid} {self.reply.outbound.message_id}"}),
            "subject carries the real tag": self.attack(subject=f"Re: Deposit for unit 12 {tag}"),
            "subject sprayed with 2 guessed tags, then the real one": self.attack(subject=_sprayed_subject(tag, 2)),
            "subject sprayed with 5,000 guessed tags, then the real one": self.attack(
                subject=_sprayed_subject(tag, 5000)),
            "valid reply token of the customer": self.attack(rcpts=(self.reply_address,)),
        }

    def mail_to_stranger(self) -> list[str]:
        """Everything queued for the stranger: subject, headers, text and HTML of each outbound message."""
        with self.svc.app.session() as session:
            rows = outbound_store.list_outbound(session)
        return ["\n".join([o.subject, o.text, o.html, *(f"{k}: {v}" for k, v in o.headers)])
                for o in rows if any(r.address == STRANGER for r in o.recipients)]

    def quoted_in_next_reply(self) -> str:
        return actions.reply(self.svc.app, self.conversation_id, STAFF, "Anything else?").outbound.text


def _nothing_leaked(victim: Victim) -> None:
    for mail in victim.mail_to_stranger():
        leaked = [s for s in victim.secrets if s and s in mail]
        assert not leaked, f"mail to the stranger carries {leaked}"


def _report(mode: str, victim: Victim, attacks: dict[str, conversation_views.MessageView]) -> None:
    """With POSTROOM_TRUST_REPORT set (bench/reliability.py), append each attack's outcome as a JSON line."""
    path = os.environ.get("POSTROOM_TRUST_REPORT")
    if not path:
        return
    with open(path, "a") as out:
        for name, found in attacks.items():
            landed = "victim's conversation" if found.conversation_id == victim.conversation_id else (
                "unsorted inbox" if found.conversation_id is None else "a new conversation of its own")
            leaked = sorted({s for mail in victim.mail_to_stranger() for s in victim.secrets if s and s in mail})
            out.write(json.dumps({"mode": mode, "attack": name, "landed": landed, "flags": list(found.flags),
                                  "leaked": leaked}) + "\n")


def _quotes_only_the_customer(victim: Victim) -> None:
    # the customer writes again under another display name: the quote keeps the contact's stored name
    victim.deliver(make_eml(sender=f"Someone Else <{CUSTOMER}>", subject=f"Re: {victim.subject}",
                            message_id=make_msgid(domain="example.com"), body="Thanks, noted.",
                            headers={"In-Reply-To": victim.reply.outbound.message_id}), CUSTOMER)
    text = victim.quoted_in_next_reply()
    assert "IBAN" not in text and "Thanks, noted." in text
    assert "Jean Customer wrote:" in text and "Someone Else" not in text


def test_a_stranger_lands_in_the_inbox_and_learns_nothing(routed, send, settings, sink) -> None:
    victim = Victim(routed, send, settings)
    attacks = victim.all_attacks()
    for found in attacks.values():
        assert found.conversation_id != victim.conversation_id, found.subject[:80]
        if found.conversation_id is None:
            assert "foreign_sender" in found.flags or found.matched_via == "new", found.flags
    status = _conversation(routed, victim.conversation_id)[0].status
    assert status == "open"
    _nothing_leaked(victim)
    _report("strict_senders on (default)", victim, attacks)
    assert "IBAN" not in victim.quoted_in_next_reply()
    _quotes_only_the_customer(victim)


def test_a_stranger_attached_when_not_strict_is_flagged_silent_and_never_quoted(routed, send, settings,
                                                                                  sink) -> None:
    with routed.app.session() as session:
        threading_lookup.set_threading_settings(session, "acme", strict_senders=False)
    victim = Victim(routed, send, settings)
    with routed.app.session() as session:
        conversation_actions.set_status(session, victim.conversation_id, "closed")
    attacks = victim.all_attacks()
    for found in attacks.values():
        if found.conversation_id == victim.conversation_id:
            assert "foreign_sender" in found.flags, found.matched_via
    by_via = {m.matched_via: m for m in attacks.values()}
    assert by_via["token"].conversation_id == victim.conversation_id      # attached, flagged
    assert by_via["reference-tag"].conversation_id is None                 # a tag never attaches a stranger
    assert _conversation(routed, victim.conversation_id)[0].status == "closed"  # the stranger did not reopen it
    _nothing_leaked(victim)
    _report("strict_senders off", victim, attacks)
    assert "IBAN" not in victim.quoted_in_next_reply()
    _quotes_only_the_customer(victim)


def _conversation(svc: Service, conversation_id: int | None) -> tuple[conversation_views.ConversationSummary,
                                                                      list[conversation_views.MessageView]]:
    assert conversation_id is not None
    with svc.app.session() as session:
        return conversation_views.get_conversation(session, conversation_id)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(13)
