"""Teams, deactivation, contacts and channels through the real CLI and SMTP server."""

from __future__ import annotations

from email.utils import make_msgid

from postroom.outbound import actions
from postroom.storage import conversation_views

from .conftest import as_json, write_rules

ASSIGN_ANNA = "rules:\n  - name: Anna takes new mail\n    when: { new_conversation: true }\n" \
              "    then: { assign: { user: anna@acme.example } }\n"


def summary(mailer, conversation_id: int) -> conversation_views.ConversationSummary:
    with mailer.service.app.session() as session:
        return conversation_views.get_conversation(session, conversation_id)[0]


def test_teams_and_a_deactivated_user(mailer, run, people_settings, tmp_path) -> None:
    run("user", "add", "acme", "--email", "anna@acme.example", "--name", "Anna")
    assert "team 1 'Finance' added to acme" in run("team", "add", "acme", "Finance")
    assert run("team", "add", "acme", "Finance", code=1) == "error: a team 'Finance' already exists for this tenant"
    run("team", "member", "add", "acme", "Finance", "Anna@Acme.example")
    assert as_json(run("team", "list", "acme", "--json"))[0]["member_emails"] == ["anna@acme.example"]
    assert "anna@acme.example" in run("team", "list", "acme")
    run("team", "member", "remove", "acme", "Finance", "anna@acme.example")
    assert run("team", "member", "remove", "acme", "Finance", "anna@acme.example", code=1) == \
        "error: anna@acme.example is not a member of team 'Finance'"
    assert run("team", "member", "add", "acme", "Sales", "anna@acme.example", code=1) == \
        "error: no team 'Sales' in this tenant; create it with: postroom team add TENANT 'Sales'"

    write_rules(people_settings, "acme", ASSIGN_ANNA)
    root = make_msgid(domain="example.com")
    first = mailer.message(mailer.mail(subject="Boiler", message_id=root))
    assert summary(mailer, first.conversation_id).responsible_user_id is not None  # the rule assigns her...
    staff_mail = mailer.message(mailer.mail(sender="Anna <anna@acme.example>", subject="Re: Boiler",
                                            headers={"In-Reply-To": root}))
    assert staff_mail.conversation_id == first.conversation_id  # ...and staff may join any conversation

    out = run("user", "deactivate", "acme", "anna@acme.example")
    assert out.strip() == f"staff user 1 anna@acme.example deactivated; unassigned from conversation(s) " \
                          f"{first.conversation_id}"
    assert "no" in run("user", "list", "acme").splitlines()[2]
    later = mailer.message(mailer.mail(sender="Anna <anna@acme.example>", subject="Re: Boiler",
                                       headers={"In-Reply-To": root}))
    assert (later.conversation_id, later.flags) == (None, ("foreign_sender",))  # her address is no longer trusted
    fresh = mailer.message(mailer.mail(sender="Mia <mia@example.com>", subject="Window"))
    assert summary(mailer, fresh.conversation_id).responsible_user_id is None  # never assigned again
    text = tmp_path / "reply.txt"
    text.write_text("Hello\n")
    assert run("reply", str(first.conversation_id), "--as", "anna@acme.example", "--text", str(text), code=1) \
        .startswith("error: no active staff user anna@acme.example")


def test_contacts_link_merge_and_mail_follows(mailer, run) -> None:
    root = make_msgid(domain="example.com")
    kept = mailer.message(mailer.mail(sender="Jean Dupont <jean@old.example>", subject="Heating", message_id=root))
    # his new address, same name, answering his own thread: not proven to be him, so it waits with a hint
    other = mailer.message(mailer.mail(sender="Jean Dupont <jean@new.example>", subject="Re: Heating",
                                       headers={"In-Reply-To": root}))
    assert other.conversation_id is None and other.similar_contacts == (
        {"contact_id": kept.author_contact_id, "address": "jean@old.example"},)
    listed = run("inbox", "list", "--tenant", "acme")
    assert f"same name as contact {kept.author_contact_id} (jean@old.example)" in listed
    keep, drop = kept.author_contact_id, other.author_contact_id
    assert run("contact", "link", str(keep), "jean@new.example", code=1) == \
        f"error: jean@new.example belongs to contact {drop}; to make them one, merge them with: " \
        f"postroom contact merge {keep} {drop}"
    assert "addresses: jean@old.example, jean@work.example" in run("contact", "link", str(keep), "Jean@Work.example")
    merged = as_json(run("contact", "merge", str(keep), str(drop), "--json"))[0]
    assert merged["addresses"] == ["jean@old.example", "jean@new.example", "jean@work.example"]
    assert f"merged into contact {keep}" in run("contact", "show", str(drop))
    assert [c["id"] for c in as_json(run("contact", "list", "acme", "--json"))] == [keep]
    assert mailer.message(other.id).author_contact_id == keep
    after = mailer.message(mailer.mail(sender="Jean Dupont <jean@new.example>", subject="Re: Heating",
                                       headers={"In-Reply-To": root}))
    assert after.conversation_id == kept.conversation_id  # the merged address now speaks for the kept contact


def test_replies_follow_the_contacts_channel(mailer, run, tmp_path) -> None:
    run("user", "add", "acme", "--email", "elodie@acme.example", "--name", "Élodie")
    message = mailer.message(mailer.mail(subject="Keys"))
    text = tmp_path / "reply.txt"
    text.write_text("The keys are ready.\n")
    reply = ("reply", str(message.conversation_id), "--as", "elodie@acme.example", "--text", str(text), "--json")
    assert as_json(run(*reply))[0]["outbound"]["channel"] == "email"
    assert "channel: portal" in run("contact", "set", str(message.author_contact_id), "--channel", "portal")
    assert as_json(run(*reply))[0]["outbound"]["channel"] == "portal"
    assert as_json(run(*reply, "--email"))[0]["outbound"]["channel"] == "email"  # unless staff say otherwise
    assert run("contact", "set", str(message.author_contact_id), code=2).startswith("Usage:")
    ack = actions.automatic(mailer.service.app, message.conversation_id, kind="ack")
    assert ack is not None and ack.channel == "portal"


def test_rule_auto_reply_follows_the_contacts_channel(mailer, run, people_settings) -> None:
    mia = mailer.message(mailer.mail(sender="Mia <mia@example.com>", subject="Window"))
    run("contact", "set", str(mia.author_contact_id), "--channel", "portal")
    write_rules(people_settings, "acme", "rules:\n  - name: Answer\n    then: { auto_reply: acknowledgement }\n")
    mailer.mail(sender="Mia <mia@example.com>", subject="Door")
    mailer.mail(sender="Jean <jean@example.com>", subject="Roof")
    channels = {o.recipients[0].address: o.channel for o in mailer.outbound() if o.kind == "auto_reply"}
    assert channels == {"mia@example.com": "portal", "jean@example.com": "email"}
