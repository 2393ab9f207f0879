"""End to end over real SMTP: replies, tokens, forwards, lifecycle, duplicates, loops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import make_msgid

from postroom.storage import conversation_actions, conversation_views, staff_messages
from postroom.testing import make_eml
from postroom.tokens import make_reply_address

INBOX = "inbox@acme.mail.test"
CUSTOMER = "jean.dupont@gmail.example"


def test_gmail_reply_with_token_and_references(threads, template) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="mail.gmail.example")
    threads.deliver(template("threads_gmail_reply.eml", TO=out.reply_address, MESSAGE_ID=mid,
                             IN_REPLY_TO=out.message_id, REFERENCES=" ".join(out.references),
                             SUBJECT=f"Re: {out.subject}", BODY="Parfait, merci !"),
                    [out.reply_address])
    message = threads.message(mid)
    assert (message.conversation_id, message.matched_via, message.flags) == (conv, "token", ())
    assert message.reply_text.strip().startswith("Parfait, merci")
    assert [m.message_id for m in threads.messages(conv)][-2:] == [out.message_id, mid]


def test_outlook_reply_with_token_but_no_references(threads, template) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="EURP195.PROD.OUTLOOK.example")
    threads.deliver(template("threads_outlook_reply.eml", TO=out.reply_address, MESSAGE_ID=mid,
                             SUBJECT="RE: Remise des clés"), [out.reply_address])
    assert (threads.message(mid).conversation_id, threads.message(mid).matched_via) == (conv, "token")


def test_gmail_reply_without_token_threads_by_references(threads, template) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="mail.gmail.example")
    threads.deliver(template("threads_gmail_reply.eml", TO=INBOX, MESSAGE_ID=mid, IN_REPLY_TO=out.message_id,
                             REFERENCES=" ".join(out.references), SUBJECT="Re: something else entirely"))
    assert (threads.message(mid).conversation_id, threads.message(mid).matched_via) == (conv, "in-reply-to")


def test_outlook_reply_without_token_or_references_threads_by_reference_tag(threads, template) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="EURP195.PROD.OUTLOOK.example")
    threads.deliver(template("threads_outlook_reply.eml", TO=INBOX, MESSAGE_ID=mid, SUBJECT=f"RE: {out.subject}"))
    assert (threads.message(mid).conversation_id, threads.message(mid).matched_via) == (conv, "reference-tag")


def test_references_joined_by_commas(threads, template) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="exchange.example")
    # Exchange: commas, the parent id last, In-Reply-To pointing at an id we never stored
    threads.deliver(template("threads_exchange_commas.eml", TO=INBOX, MESSAGE_ID=mid,
                             IN_REPLY_TO="<never-seen@exchange.example>",
                             REFERENCES=",".join(out.references) + ",<never-seen@exchange.example>",
                             SUBJECT="RE: no tag here", BODY="OK pour moi."))
    message = threads.message(mid)
    assert (message.conversation_id, message.matched_via) == (conv, "references")


def test_forged_token_goes_to_inbox_flagged(threads) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    token = out.reply_address.split("@")[0][len("reply+"):]
    forged = f"reply+{token[:-4]}{'aaaa' if not token.endswith('aaaa') else 'bbbb'}@acme.mail.test"
    mid = make_msgid(domain="attacker.example")
    threads.deliver(make_eml(sender="Mallory <mallory@attacker.example>", to=forged, message_id=mid,
                             subject=f"Re: {out.subject}", headers={"In-Reply-To": out.message_id}), [forged],
                    mail_from="mallory@attacker.example")
    message = threads.message(mid)
    assert message.conversation_id is None and "forged_token" in message.flags
    assert [m.id for m in threads.inbox()] == [message.id]
    assert len(threads.messages(conv)) == 2


def test_other_tenants_token_goes_to_inbox_flagged(threads) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    # the same token, sent to globex's domain: globex's secret does not authenticate it
    stolen = out.reply_address.replace("@acme.mail.test", "@globex.mail.test")
    mid = make_msgid(domain="gmail.example")
    threads.deliver(make_eml(sender=f"Jean <{CUSTOMER}>", to=stolen, message_id=mid, subject="Re: test"), [stolen])
    message = threads.message(mid, tenant="globex")
    assert message.conversation_id is None and "forged_token" in message.flags
    assert len(threads.messages(conv)) == 2


def test_token_used_by_another_sender_goes_to_the_inbox_by_default(threads) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="example.org")
    threads.deliver(make_eml(sender="Marie Dupont <marie.dupont@example.org>", to=out.reply_address,
                             message_id=mid, subject=f"Re: {out.subject}", body="Je réponds pour Jean."),
                    [out.reply_address], mail_from="marie.dupont@example.org")
    message = threads.message(mid)
    assert (message.conversation_id, message.flags, message.suggestions[0]) == (None, ("foreign_sender",), conv)


def test_token_used_by_another_sender_attaches_flagged_when_not_strict(threads) -> None:
    threads.set_policy(strict_senders=False)
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="example.org")
    threads.deliver(make_eml(sender="Marie Dupont <marie.dupont@example.org>", to=out.reply_address,
                             message_id=mid, subject=f"Re: {out.subject}", body="Je réponds pour Jean."),
                    [out.reply_address], mail_from="marie.dupont@example.org")
    message = threads.message(mid)
    assert message.conversation_id == conv and "foreign_sender" in message.flags
    assert message.author_email == "marie.dupont@example.org"
    assert threads.conversation(conv).contact_email == CUSTOMER
    assert threads.events(conv)[-1].payload["foreign_sender"] is True


def test_reply_to_closed_conversation_reopens_it(threads, template) -> None:
    conv = threads.start()
    other = threads.start(subject="Autre sujet")
    out = threads.staff_reply(conv)
    threads.set_status(conv, "closed")
    mid = make_msgid(domain="mail.gmail.example")
    threads.deliver(template("threads_gmail_reply.eml", TO=out.reply_address, MESSAGE_ID=mid,
                             IN_REPLY_TO=out.message_id, REFERENCES=" ".join(out.references),
                             SUBJECT=f"Re: {out.subject}"), [out.reply_address])
    summary = threads.conversation(conv)
    assert summary.status == "open"
    with threads.app.session() as session:
        listed = conversation_views.list_conversations(session, "acme")
    assert [c.id for c in listed][:2] == [conv, other]  # back at the top
    event = threads.events(conv)[-1]
    assert (event.kind, event.payload["reopened"], event.recipient_type) == ("customer_message", True, "user")


def test_out_of_office_to_closed_conversation_does_not_reopen(threads, template) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    threads.set_status(conv, "closed")
    before = len(threads.events(conv))
    mid = make_msgid(domain="gmail.example")
    threads.deliver(template("threads_ooo_reply.eml", TO=out.reply_address, MESSAGE_ID=mid,
                             IN_REPLY_TO=out.message_id, REFERENCES=out.message_id, SUBJECT=out.subject),
                    [out.reply_address], mail_from="")
    message = threads.message(mid)
    assert message.conversation_id == conv and "auto_reply" in message.flags
    assert threads.conversation(conv).status == "closed"
    assert len(threads.events(conv)) == before


def test_out_of_office_without_a_conversation_creates_nothing(threads, template) -> None:
    mid = make_msgid(domain="gmail.example")
    threads.deliver(template("threads_ooo_reply.eml", TO=INBOX, MESSAGE_ID=mid, IN_REPLY_TO="<x@nowhere>",
                             REFERENCES="<x@nowhere>", SUBJECT="Hello"), mail_from="")
    message = threads.message(mid)
    assert message.conversation_id is None and "auto_reply" in message.flags
    with threads.app.session() as session:
        assert conversation_views.list_conversations(session, "acme") == []
    assert threads.events() == []


def test_forward_to_inbox_then_move_into_conversation(threads, template) -> None:
    conv = threads.start(subject="Fuite dans la salle de bain")
    mid = make_msgid(domain="acme-builders.example")
    threads.deliver(template("threads_forward_inbox.eml", MESSAGE_ID=mid, SUBJECT="Fuite dans la salle de bain",
                             BODY="Bonjour, il y a toujours une fuite sous la baignoire."),
                    mail_from="sophie.martin@acme-builders.example")
    message = threads.message(mid)
    assert message.conversation_id is None and message.matched_via == "forward"
    assert message.author_email == CUSTOMER and message.forwarded_by == "sophie.martin@acme-builders.example"
    assert "fuite sous la baignoire" in message.reply_text
    assert message.suggestions[0] == conv
    with threads.app.session() as session:
        moved = conversation_actions.move_message(session, message.id, to_conversation_id=conv)
    assert moved.to_conversation_id == conv and threads.inbox() == []
    assert threads.message(mid).author_contact_id == threads.conversation(conv).contact_id


def test_forward_to_inbox_then_new_conversation_with_corrected_author(threads, template) -> None:
    mid = make_msgid(domain="acme-builders.example")
    threads.deliver(template("threads_forward_inbox.eml", MESSAGE_ID=mid, SUBJECT="Parking",
                             BODY="Puis-je avoir une deuxième place ?"),
                    mail_from="sophie.martin@acme-builders.example")
    message = threads.message(mid)
    with threads.app.session() as session:
        moved = conversation_actions.move_message(session, message.id, new=True, author_email="Jean.D@Example.net",
                                           author_name="Jean D.")
    summary = threads.conversation(moved.to_conversation_id)
    assert (summary.subject, summary.contact_email) == ("Parking", "jean.d@example.net")


def test_moving_a_customer_message_between_conversations_notifies_the_customer(threads) -> None:
    first = threads.start(subject="Cuisine")
    second = threads.start(subject="Salle de bain")
    mid = make_msgid(domain="gmail.example")
    threads.deliver(make_eml(sender=f"Jean <{CUSTOMER}>", message_id=mid, subject="Re: Cuisine",
                             headers={"In-Reply-To": threads.messages(first)[0].message_id}))
    assert threads.message(mid).conversation_id == first
    with threads.app.session() as session:
        conversation_actions.move_message(session, threads.message(mid).id, to_conversation_id=second)
    event = threads.events(second)[-1]
    assert (event.kind, event.recipient_type, event.payload["from_conversation_id"]) == \
        ("message_moved", "contact", first)
    assert event.recipient_id == threads.conversation(second).contact_id


def test_duplicate_delivery_is_one_message(threads) -> None:
    conv = threads.start()
    out = threads.staff_reply(conv)
    mid = make_msgid(domain="gmail.example")
    raw = make_eml(sender=f"Jean <{CUSTOMER}>", to=out.reply_address, message_id=mid, subject="Re: clés")
    threads.deliver(raw, [out.reply_address])
    threads.deliver(raw, [out.reply_address], rows=0)                        # same bytes: stored once
    relayed = b"Received: from backup-mx.example by mx.mail.test; Mon, 1 Jan 2024 10:00:00 +0000\r\n" + raw
    threads.deliver(relayed, [out.reply_address, INBOX])                      # other bytes, two recipients
    ids = [m.message_id for m in threads.messages(conv)]
    assert ids.count(mid) == 1 and len(ids) == 3
    assert len([e for e in threads.events(conv) if e.message_id == threads.message(mid).id]) == 1


def test_looping_auto_responder_trips_the_loop_breaker(threads, template) -> None:
    threads.set_policy(strict_senders=False)  # the responder is a stranger: attached flagged, not to the inbox
    conv = threads.start(subject="Demande de devis")
    out = threads.staff_reply(conv)
    client = threads.smtp()
    for _ in range(50):
        client.sendmail("helpdesk@looping.example", [out.reply_address],
                        template("threads_looping_responder.eml", TO=out.reply_address, SUBJECT=out.subject))
    threads.sent += 50
    threads.settle()
    messages = [m for m in threads.messages(conv) if m.author_email == "helpdesk@looping.example"]
    assert len(messages) == 50                                               # nothing is lost
    assert sum("loop" in m.flags for m in messages) == 40                    # over 10 in 10 minutes
    assert "loop" in threads.conversation(conv).flags
    notified = [e for e in threads.events(conv) if e.kind == "customer_message"]
    assert len(notified) == 10
    assert [e.kind for e in threads.events(conv)].count("loop_detected") == 1
    with threads.app.session() as session:
        from postroom.storage import conversations
        assert conversations.loop_suppressed(session, conv, "helpdesk@looping.example")
        assert not conversations.loop_suppressed(session, conv, CUSTOMER)


def test_first_staff_replier_becomes_responsible(threads) -> None:
    conv = threads.start()
    assert threads.conversation(conv).responsible_user_id is None
    threads.staff_reply(conv)
    responsible = threads.conversation(conv).responsible_user_id
    assert responsible is not None
    assert all(m.is_answered for m in threads.messages(conv) if m.direction == "in")
    mid = make_msgid(domain="gmail.example")
    threads.deliver(make_eml(sender=f"Jean <{CUSTOMER}>", message_id=mid, subject="Re: Remise des clés",
                             headers={"References": threads.messages(conv)[-1].message_id}))
    event = threads.events(conv)[-1]
    assert (event.kind, event.recipient_type, event.recipient_id) == ("customer_message", "user", responsible)


def test_make_reply_address_matches_what_storage_hands_out(threads) -> None:
    conv = threads.start()
    with threads.app.session() as session:
        from postroom.storage.tenants import tenant_secret
        contact = threads.conversation(conv).contact_id
        expected = make_reply_address(tenant_secret(session, threads.tenant_ids["acme"]), "acme.mail.test", conv,
                                      contact)
        assert staff_messages.reply_address(session, conv, "acme.mail.test") == expected


def test_a_headerless_reply_past_the_window_starts_a_conversation_that_follows_the_old_one(threads) -> None:
    old = threads.start(subject="Remise des clés")
    threads.set_status(old, "closed")
    with threads.app.session() as session:
        from sqlalchemy import update

        from postroom.storage.tables import Conversation
        session.execute(update(Conversation).where(Conversation.id == old)
                        .values(last_activity_at=datetime.now(UTC) - timedelta(days=45)))
    mid = make_msgid(domain="gmail.example")
    threads.deliver(make_eml(sender=f"Jean <{CUSTOMER}>", message_id=mid, subject="RE: Remise des clés"))
    new = threads.conversation_of(mid)
    assert new != old
    summary = threads.conversation(new)
    assert summary.follows_id == old and threads.conversation(old).status == "closed"
