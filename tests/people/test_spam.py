"""Spam and block through the real SMTP server, pipeline and CLI: a blocked sender's mail waits, silent."""

from __future__ import annotations

from email.utils import make_msgid

from postroom.storage import conversation_views

from .conftest import as_json, write_rules

ALWAYS_ANSWER = "rules:\n  - name: Answer everything\n    then: { auto_reply: acknowledgement }\n"
SPAMMER = "Great Offers <offers@spam.example>"


def recipients(mailer) -> list[str]:
    return [r.address for o in mailer.outbound() for r in o.recipients]


def test_spam_blocks_the_sender_until_unspam(mailer, run, people_settings, tenant_ids) -> None:
    first = make_msgid(domain="spam.example")
    spam_conversation = mailer.message(mailer.mail(sender=SPAMMER, subject="Cheap watches",
                                                   message_id=first)).conversation_id
    assert spam_conversation is not None

    marked = as_json(run("conversations", "spam", str(spam_conversation), "--json"))[0]
    assert marked["addresses"] == ["offers@spam.example"] and marked["status"] == "closed"
    shown = as_json(run("conversations", "show", str(spam_conversation), "--json"))[0]
    assert shown["status"] == "closed" and "spam" in shown["flags"]

    write_rules(people_settings, "acme", ALWAYS_ANSWER)
    # a reply in the thread, with its Message-ID chain and subject: still never joins, never opens
    blocked = mailer.message(mailer.mail(sender=SPAMMER, subject="Re: Cheap watches",
                                         headers={"In-Reply-To": first, "References": first}))
    fresh = mailer.message(mailer.mail(sender=SPAMMER, subject="Brand new offer"))
    honest = mailer.message(mailer.mail(sender="Mia <mia@example.com>", subject="Leaking tap"))
    for message in (blocked, fresh):
        assert (message.conversation_id, message.matched_via, message.suggestions) == (None, "blocked", ())
        assert "blocked" in message.flags
    assert honest.conversation_id is not None  # the rule answers everyone else...
    assert recipients(mailer) == ["mia@example.com"]  # ...but nothing is queued for the blocked address
    with mailer.service.app.session() as session:
        tenant_events = conversation_views.events(session, tenant_ids["acme"])
        assert not [e for e in tenant_events if e.message_id in (blocked.id, fresh.id)]  # nobody is notified
        assert [c.id for c in conversation_views.list_conversations(session, "acme")].count(spam_conversation) == 1
        assert len(conversation_views.list_conversations(session, "acme")) == 2
    listed = run("inbox", "list", "--tenant", "acme")
    assert "offers@spam.example" in listed and "blocked" in listed

    lifted = as_json(run("conversations", "unspam", str(spam_conversation), "--json"))[0]
    assert (lifted["addresses"], lifted["status"], lifted["flags"]) == (["offers@spam.example"], "open", [])
    again = mailer.message(mailer.mail(sender=SPAMMER, subject="Re: Cheap watches",
                                       headers={"In-Reply-To": first}))
    assert (again.conversation_id, "blocked" in again.flags) == (spam_conversation, False)


def test_spam_of_an_unknown_conversation_is_one_line(run, tenant_ids) -> None:
    assert run("conversations", "spam", "999", code=1) == \
        "error: no conversation 999; list them with: postroom conversations list --tenant T"
