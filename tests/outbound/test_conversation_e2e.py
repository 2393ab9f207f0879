"""Through the real service: a customer writes, staff reply, the customer answers that exact mail, a bounce.

The reply token must bring the customer's answer back into the same
conversation; notes and the internal status must not appear in anything sent.
"""

from __future__ import annotations

import pytest

from postroom.outbound import actions, compose, delivery
from postroom.service import Service
from postroom.storage import conversation_actions, conversation_views, staff
from postroom.storage import outbound as store
from postroom.testing import make_eml, wait_until

NOTE = "INTERNAL: customer is difficult, do not offer a discount (NOTE-7731)"
STAFF = "elodie@acme.example"


def conversation_of(svc: Service) -> conversation_views.ConversationSummary:
    with svc.app.session() as session:
        found = conversation_views.list_conversations(session, "acme")
    return found[0] if len(found) == 1 else None  # type: ignore[return-value]


def messages_of(svc: Service, conversation_id: int) -> list[conversation_views.MessageView]:
    with svc.app.session() as session:
        return conversation_views.get_conversation(session, conversation_id)[1]


def test_reply_round_trip_notes_stay_inside_and_bounces_warn_staff(running, customer, relay, fixture_bytes,
                                                                   attachment_file) -> None:
    svc = running
    customer_mid = "<first.question@example.com>"
    client = customer
    client.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                    make_eml(sender="Zoë Müller <zoe@example.com>", subject="Leak in the bathroom",
                             body="Hello,\n\nWater is dripping from the ceiling.\n", message_id=customer_mid))
    conv = wait_until(lambda: conversation_of(svc))
    actions.note(svc.app, conv.id, STAFF, NOTE)
    with svc.app.session() as session:
        conversation_actions.set_status(session, conv.id, "awaiting_feedback")

    queued = actions.reply(svc.app, conv.id, STAFF, "Hello Zoë,\n\nThe plumber comes on Tuesday.",
                           attachments=compose.attach_paths(svc.app, [attachment_file]),
                           dispatch=svc.pipeline.dispatch_outbound)
    [sent] = wait_until(lambda: relay.received)

    raw = sent.data.decode("ascii")
    assert "NOTE-7731" not in raw and "awaiting_feedback" not in raw.lower()
    msg = sent.message
    assert msg["Message-ID"] == queued.outbound.message_id
    assert msg["In-Reply-To"] == customer_mid and customer_mid in msg["References"]
    assert msg["Subject"] == f"Re: Leak in the bathroom [#{conv.reference}]"
    text = msg.get_body(("plain",)).get_content()
    assert text.count("After-sales, Acme Builders") == 1
    assert "> Water is dripping from the ceiling." in text, "the customer's message is quoted, the note is not"
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("reply+") and reply_to.endswith("@acme.mail.test")
    bounce_address = sent.mail_from  # VERP: the message's own signed bounce address, not the reply address
    assert bounce_address.startswith("bounce+") and bounce_address.endswith("@acme.mail.test")
    wait_until(lambda: _status(svc, queued.outbound.id) == "sent")

    # the customer answers that exact message, from a client that drops the References header
    answer = make_eml(sender="Zoë Müller <zoe@example.com>", to=reply_to, subject="Re: Leak",
                      body="Tuesday is fine, thanks!\n", message_id="<answer@example.com>")
    client.sendmail("zoe@example.com", [reply_to], answer)
    wait_until(lambda: len(messages_of(svc, conv.id)) == 4)
    assert conversation_of(svc).id == conv.id, "no second conversation"
    kinds = [(m.direction, m.kind) for m in messages_of(svc, conv.id)]
    assert kinds == [("in", "email"), ("out", "note"), ("out", "email"), ("in", "email")]

    # the relay later bounces it: outbound row and recipient bounced, staff warned
    dsn = (fixture_bytes("emails/outbound_bounce_postfix.eml").decode()
           .replace("{{ENVELOPE_FROM}}", bounce_address).replace("{{RECIPIENT}}", "zoe@example.com")
           .replace("{{MESSAGE_ID}}", queued.outbound.message_id).replace("\n", "\r\n").encode())
    client.sendmail("", [bounce_address], dsn)
    wait_until(lambda: _status(svc, queued.outbound.id) == "bounced")
    with svc.app.session() as session:
        record = store.get_outbound(session, queued.outbound.id)
        events = conversation_views.events(session, conv.tenant_id, conversation_id=conv.id)
        user = staff.user_by_email(session, "acme", STAFF)
    assert [r.status for r in record.recipients] == ["bounced"]
    [warning] = [e for e in events if e.kind == "delivery_failed"]
    assert (warning.recipient_type, warning.recipient_id) == ("user", user.id)
    assert warning.payload["recipients"] == ["zoe@example.com"] and "5.1.1" in warning.payload["reason"]


def _status(svc: Service, outbound_id: int) -> str:
    with svc.app.session() as session:
        return store.get_outbound(session, outbound_id).status


@pytest.mark.parametrize("channel, kind", [("email", "reply"), ("portal", "reply"), ("email", "ack"),
                                           ("email", "auto_reply")])
def test_notes_and_status_never_reach_any_template(running, customer, relay, webhook, channel, kind) -> None:
    """Every built-in kind, on both channels, rendered from a conversation holding a note."""
    svc = running
    svc.app.settings = svc.app.settings.replace(portal_webhook_url=webhook.url, portal_webhook_secret="k")
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                    make_eml(sender="Zoë <zoe@example.com>", subject="Keys", body="When do I get the keys?\n"))
    conv = wait_until(lambda: conversation_of(svc))
    actions.note(svc.app, conv.id, STAFF, NOTE)
    with svc.app.session() as session:
        conversation_actions.set_status(session, conv.id, "in_progress")
    if kind == "reply":
        record = actions.reply(svc.app, conv.id, STAFF, "Next week.", channel=channel).outbound
    else:
        record = actions.automatic(svc.app, conv.id, kind=kind, text="We are closed until Monday.")
    assert record is not None
    with svc.app.session() as session:
        stored = store.get_outbound(session, record.id)
    everything = " ".join([stored.subject, stored.text, stored.html, repr(stored.headers), repr(stored.payload)])
    assert "NOTE-7731" not in everything and "in_progress" not in everything
    assert delivery.deliver(svc.app, record.id).status == "sent"
    wire = relay.received[0].data if channel == "email" else webhook.requests[0][1]
    assert b"NOTE-7731" not in wire and b"in_progress" not in wire
    if (channel, kind) == ("email", "reply"):
        assert "When do I get the keys?" in stored.text
