"""Every outbound message has its own signed bounce address, so any bounce names the message it returns.

Through the real service: a bare qmail-style bounce (nothing of the
original quoted) marks the staff reply bounced and warns staff; a vacation
reply sent to the envelope sender is only an auto-reply; a forged bounce
address lands in the inbox and changes nothing.
"""

from __future__ import annotations

import smtplib

from postroom.outbound import actions
from postroom.service import Service
from postroom.storage import conversation_views
from postroom.storage import outbound as store
from postroom.testing import make_eml, wait_until

STAFF = "elodie@acme.example"
QMAIL = """\
From: MAILER-DAEMON@mx.example.org
To: {to}
Subject: failure notice
Message-ID: <qmail.{n}@mx.example.org>

Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<zoe@example.com>:
Sorry, no mailbox here by that name. (#5.1.1)
"""


def _start(svc: Service, customer: smtplib.SMTP, relay) -> tuple[int, int, str]:  # type: ignore[no-untyped-def]
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                      make_eml(sender="Zoë <zoe@example.com>", subject="Leak", body="Water from the ceiling."))

    def conversation_id() -> int | None:
        with svc.app.session() as session:
            found = conversation_views.list_conversations(session, "acme")
        return found[0].id if found else None

    conv = wait_until(conversation_id)
    queued = actions.reply(svc.app, conv, STAFF, "The plumber comes on Tuesday.",
                           dispatch=svc.pipeline.dispatch_outbound)
    wait_until(lambda: relay.received)
    return conv, queued.outbound.id, relay.received[-1].mail_from


def _outbound(svc: Service, outbound_id: int) -> store.OutboundRecord:
    with svc.app.session() as session:
        return store.get_outbound(session, outbound_id)


def _messages(svc: Service, conv: int) -> list[conversation_views.MessageView]:
    with svc.app.session() as session:
        return conversation_views.get_conversation(session, conv)[1]


def test_a_bare_bounce_to_the_bounce_address_fails_that_message(running, customer, relay) -> None:
    svc = running
    conv, outbound_id, bounce_address = _start(svc, customer, relay)
    assert bounce_address.startswith("bounce+")
    customer.sendmail("", [bounce_address], QMAIL.format(to=bounce_address, n=1).replace("\n", "\r\n").encode())
    wait_until(lambda: _outbound(svc, outbound_id).status == "bounced")
    assert [r.status for r in _outbound(svc, outbound_id).recipients] == ["bounced"]
    messages = _messages(svc, conv)
    returned = [m for m in messages if m.matched_via == "bounce-address"]
    assert len(returned) == 1 and "bounce" in returned[0].flags
    assert "bounced" in next(m for m in messages if m.direction == "out").flags
    with svc.app.session() as session:
        summary = conversation_views.get_conversation(session, conv)[0]
        events = conversation_views.events(session, summary.tenant_id, conversation_id=conv)
    assert [e.kind for e in events].count("delivery_failed") == 1
    assert "customer_message" not in [e.kind for e in events], "a bounce is not the customer writing"


def test_an_auto_reply_to_the_bounce_address_is_only_an_auto_reply(running, customer, relay) -> None:
    svc = running
    conv, outbound_id, bounce_address = _start(svc, customer, relay)
    vacation = make_eml(sender="Zoë <zoe@example.com>", to=bounce_address, subject="Out of office",
                        body="I am away until Monday.", headers={"Auto-Submitted": "auto-replied"})
    customer.sendmail("zoe@example.com", [bounce_address], vacation)
    wait_until(lambda: any("auto_reply" in m.flags for m in _messages(svc, conv)))
    assert _outbound(svc, outbound_id).status == "sent"


def test_a_forged_bounce_address_changes_nothing(running, customer, relay) -> None:
    svc = running
    conv, outbound_id, bounce_address = _start(svc, customer, relay)
    forged = bounce_address.replace("bounce+", "bounce+x", 1)
    customer.sendmail("", [forged], QMAIL.format(to=forged, n=2).replace("\n", "\r\n").encode())

    def inbox() -> list[conversation_views.MessageView]:
        with svc.app.session() as session:
            return conversation_views.list_inbox(session, "acme")

    [landed] = wait_until(inbox)
    assert "forged_token" in landed.flags
    assert _outbound(svc, outbound_id).status == "sent"
