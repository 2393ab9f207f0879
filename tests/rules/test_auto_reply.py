"""The auto-reply guard: RFC 3834 rules, one reply per address per day, no loops."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from postroom.model import Address, AutoReply, Bounce, Envelope, ParsedMessage
from postroom.parsing import parse
from postroom.rules import RuleInput, can_auto_reply, evaluate, guard_auto_reply, parse_ruleset
from postroom.testing import make_eml

HUMAN = RuleInput(envelope_from="jan@customer.test", from_address="jan@customer.test",
                  recipients=("support@acme.test",), to=("support@acme.test",))


def never(_: str) -> bool:
    return False


def test_ordinary_message_gets_a_reply() -> None:
    assert can_auto_reply(HUMAN, never) == (True, "auto-reply to jan@customer.test")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"envelope_from": ""}, "null envelope sender"),
        ({"from_address": ""}, "no sender address"),
        ({"is_bounce": True}, "bounce"),
        ({"is_auto_reply": True}, "automatic reply"),
        ({"is_mailing_list": True}, "mailing list"),
        ({"headers": (("X-Auto-Response-Suppress", "OOF, AutoReply"),)}, "X-Auto-Response-Suppress"),
        ({"from_address": "MAILER-DAEMON@x.test".lower()}, "system address"),
        ({"from_address": "no-reply@shop.test"}, "system address"),
        ({"from_address": "list-request@lists.test"}, "system address"),
        ({"from_address": "support@acme.test"}, "our own addresses"),
    ],
)
def test_guard_refuses(changes: dict[str, object], reason: str) -> None:
    ok, why = can_auto_reply(replace(HUMAN, **changes), never)
    assert not ok and reason in why


def test_at_most_once_per_contact_per_day() -> None:
    sent: set[str] = set()
    asked: list[str] = []

    def already(address: str) -> bool:
        asked.append(address)
        return address in sent

    assert can_auto_reply(HUMAN, already)[0]
    sent.add("jan@customer.test")
    assert can_auto_reply(HUMAN, already) == (False, "already auto-replied to jan@customer.test today")
    assert can_auto_reply(replace(HUMAN, is_bounce=True), already)[0] is False
    assert asked == ["jan@customer.test", "jan@customer.test"], "the store is not asked when headers decide"


def test_guard_auto_reply_on_a_decision() -> None:
    rs = parse_ruleset("rules:\n  - name: ack\n    then: { auto_reply: acknowledgement }\n")
    assert guard_auto_reply(evaluate(HUMAN, rs), HUMAN, never).auto_reply == "acknowledgement"
    auto = replace(HUMAN, is_auto_reply=True)
    d = guard_auto_reply(evaluate(auto, rs), auto, never)
    assert d.auto_reply is None and d.auto_reply_suppressed == "message is an automatic reply"
    rs = parse_ruleset("rules:\n  - name: ack\n    then: { auto_reply: ack, reject: nope }\n")
    d = guard_auto_reply(evaluate(HUMAN, rs), HUMAN, never)
    assert d.auto_reply is None and d.auto_reply_suppressed == "message is rejected"


def test_from_parsed_flags_feed_the_guard() -> None:
    base = ParsedMessage(message_id="<1@x>", in_reply_to=(), references=(), subject="Hi",
                         date=datetime(2024, 4, 16, tzinfo=UTC), sender=Address("Jan", "jan@customer.test"))
    env = Envelope(mail_from="jan@customer.test", rcpt_tos=("support@acme.test",))
    assert can_auto_reply(RuleInput.from_parsed(base, env), never)[0]
    for parsed in (
        replace(base, auto_reply=AutoReply("out of office")),
        replace(base, bounce=Bounce(("x@y",), ())),
        replace(base, list_id="<news.shop.test>"),
        replace(base, headers=(("Precedence", "bulk"),)),
        replace(base, headers=(("List-Unsubscribe", "<mailto:leave@news.test>"),)),
        parse(make_eml(headers={"Auto-Submitted": "auto-generated"})),
        parse(make_eml(headers={"X-Autoreply": "yes"})),
    ):
        assert not can_auto_reply(RuleInput.from_parsed(parsed, env), never)[0], parsed
    assert can_auto_reply(RuleInput.from_parsed(parse(make_eml(headers={"Auto-Submitted": "no"})), env), never)[0]


RESPONDER = "rules:\n  - name: acknowledge\n    when: { new_conversation: true }\n    then: { auto_reply: ack }\n"


def test_two_tenants_auto_replying_to_each_other_do_not_loop() -> None:
    """Tenant A and B both acknowledge every new message; a message from A to B must not ping-pong.

    The reply each tenant would send is modelled as RFC 3834 requires our
    outbound to mark it (Auto-Submitted: auto-replied, null envelope sender);
    the per-day memory alone must also stop a loop with a responder that
    strips those markers.
    """
    rules = parse_ruleset(RESPONDER)
    sent: dict[str, set[str]] = {"a@tenant-a.test": set(), "b@tenant-b.test": set()}

    def deliver(sender: str, recipient: str, marked: bool) -> bool:
        """Recipient tenant processes a message; True when it sends an auto-reply back."""
        inp = RuleInput(
            envelope_from="" if marked else sender, from_address=sender, to=(recipient,),
            recipients=(recipient,), is_auto_reply=marked,
            headers=(("Auto-Submitted", "auto-replied"),) if marked else (),
        )
        d = guard_auto_reply(evaluate(inp, rules), inp, lambda a: a in sent[recipient])
        if d.auto_reply:
            sent[recipient].add(sender)
        return d.auto_reply is not None

    for marked in (True, False):
        for box in sent.values():
            box.clear()
        replies = 0
        sender, recipient, first = "a@tenant-a.test", "b@tenant-b.test", True
        while replies < 10 and deliver(sender, recipient, marked=marked and not first):
            replies += 1
            sender, recipient, first = recipient, sender, False
        assert replies == (1 if marked else 2), marked
