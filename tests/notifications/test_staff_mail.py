"""Staff notification mail through the real service, relay, CLI and API.

The job is the one the sweeper runs every sweep (``Pipeline.mail_staff``); the
tests call it instead of waiting for the sweep, and read what the relay got.
"""

from __future__ import annotations

import json
import smtplib
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from postroom.outbound import actions, staff_mail
from postroom.service import Service
from postroom.storage import apikeys, conversation_edits, conversation_views, staff
from postroom.testing import Received, conversation_with_subject, make_eml, wait_until
from postroom.web import create_app

INBOX = "inbox@acme.mail.test"


def mails_to(relay, address: str) -> list[Received]:  # type: ignore[no-untyped-def]
    return [r for r in relay.received if address in r.rcpt_tos]


def text_of(received: Received) -> str:
    part = received.message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def add_users(svc: Service) -> dict[str, int]:
    with svc.app.session() as session:
        ids = {name: staff.add_user(session, "acme", email=f"{name}@acme.example", name=name.title()).id
               for name in ("ann", "bob", "carol")}
        ids["gina"] = staff.add_user(session, "globex", email="gina@globex.example", name="Gina").id
    return ids


def test_immediate_mail_for_assignment_and_customer_reply_once(running: Service, customer: smtplib.SMTP, relay,
                                                               run) -> None:
    users = add_users(running)
    assert run("user", "notify", "acme", "ann@acme.example", "--mode", "immediate") == \
        "ann@acme.example: notification mail at once\n"
    customer.sendmail("zoe@example.com", [INBOX], make_eml(sender="Zoë <zoe@example.com>", subject="Boiler",
                                                           body="The boiler is broken.", message_id="<b1@example.com>"))
    conv = conversation_with_subject(running.app, "Boiler")
    with running.app.session() as session:
        tenant_id = conversation_views.get_conversation(session, conv)[0].tenant_id
        conversation_edits.update_conversations(session, tenant_id, [conv], responsible_user_id=users["ann"])
    customer.sendmail("zoe@example.com", [INBOX], make_eml(
        sender="Zoë <zoe@example.com>", subject="Re: Boiler", body="It is leaking water now.",
        headers={"In-Reply-To": "<b1@example.com>"}))
    wait_until(lambda: len(conversations_events(running, conv, "customer_message")) == 1)

    queued = running.pipeline.mail_staff()
    assert len(queued) == 2  # the assignment, then the customer's reply
    wait_until(lambda: len(mails_to(relay, "ann@acme.example")) == 2)
    # two outbound mails, delivered by separate workers: either may reach the relay first
    assigned, reply = sorted(mails_to(relay, "ann@acme.example"),
                             key=lambda m: not m.message["Subject"].startswith("You are now responsible for "))
    assert assigned.message["Subject"].startswith("You are now responsible for ")
    assert reply.message["Subject"].startswith("Zoë wrote in ") and reply.message["Subject"].endswith(": Boiler")
    assert "It is leaking water now." in text_of(reply) and reply.message["Auto-Submitted"] == "auto-replied"
    assert running.pipeline.mail_staff() == [], "each event is mailed once"
    listed = [json.loads(line) for line in run("outbound", "list", "--json").splitlines()]
    assert sorted(o["kind"] for o in listed if o["id"] in queued) == ["staff_notice"] * 2
    assert mails_to(relay, "bob@acme.example") == [] and mails_to(relay, "gina@globex.example") == []


def conversations_events(svc: Service, conv: int, kind: str) -> list[conversation_views.EventView]:
    with svc.app.session() as session:
        tenant_id = conversation_views.get_conversation(session, conv)[0].tenant_id
        return [e for e in conversation_views.events(session, tenant_id, conversation_id=conv) if e.kind == kind]


def test_team_digest_goes_to_members_with_mail_on_and_notes_only_to_who_they_mention(
        running: Service, customer: smtplib.SMTP, relay, run) -> None:
    users = add_users(running)
    with running.app.session() as session:
        team = staff.add_team(session, "acme", "Plumbing")
        for name in ("ann", "bob", "carol"):
            staff.add_team_member(session, team.id, users[name])
    run("user", "notify", "acme", "ann@acme.example", "--mode", "digest", "--every", "30")
    run("user", "notify", "acme", "bob@acme.example", "--mode", "immediate")
    run("user", "notify", "acme", "carol@acme.example", "--mode", "immediate")
    run("user", "notify", "globex", "gina@globex.example", "--mode", "immediate")
    run("user", "deactivate", "acme", "carol@acme.example")
    assert run("user", "notify", "acme", "ann@acme.example", "--mode", "immediate", "--every", "5",
               code=1) == "error: --every applies to --mode digest only"
    assert run("user", "notify", "acme", "nobody@acme.example", "--mode", "off", code=1).startswith(
        "error: no staff user nobody@acme.example in acme")

    customer.sendmail("zoe@example.com", [INBOX], make_eml(sender="Zoë <zoe@example.com>", subject="Tap",
                                                           body="The tap drips.", message_id="<t1@example.com>"))
    conv = conversation_with_subject(running.app, "Tap")
    with running.app.session() as session:
        tenant_id = conversation_views.get_conversation(session, conv)[0].tenant_id
        conversation_edits.update_conversations(session, tenant_id, [conv], responsible_team_id=team.id)
    customer.sendmail("zoe@example.com", [INBOX], make_eml(
        sender="Zoë <zoe@example.com>", subject="Re: Tap", body="Still dripping.",
        headers={"In-Reply-To": "<t1@example.com>"}))
    wait_until(lambda: conversations_events(running, conv, "customer_message"))
    actions.note(running.app, conv, "elodie@acme.example", "@ann the owner agreed to a secret discount of 40%")

    assert running.pipeline.mail_staff() != []  # bob at once; ann's digest is not due yet
    wait_until(lambda: mails_to(relay, "bob@acme.example"))
    [bob] = mails_to(relay, "bob@acme.example")
    assert "Still dripping." in text_of(bob) and "secret discount" not in bob.data.decode(errors="replace")
    assert mails_to(relay, "ann@acme.example") == []

    later = datetime.now(UTC) + timedelta(minutes=31)
    digest_ids = staff_mail.run(running.app, dispatch=running.pipeline.dispatch_outbound, now=later)
    assert len(digest_ids) == 1
    wait_until(lambda: mails_to(relay, "ann@acme.example"))
    [digest] = mails_to(relay, "ann@acme.example")
    body = text_of(digest)
    assert digest.message["Subject"].startswith("2 notification(s) from ")
    assert "Still dripping." in body and "secret discount of 40%" in body and "mentioned you in" in body
    assert staff_mail.run(running.app, now=later + timedelta(minutes=31)) == []
    assert mails_to(relay, "carol@acme.example") == [] and mails_to(relay, "gina@globex.example") == []
    assert len(mails_to(relay, "bob@acme.example")) == 1, "the mention was ann's alone"


def test_the_api_reads_and_sets_the_mail_setting_of_its_own_tenant_only(running: Service) -> None:
    users = add_users(running)
    with running.app.session() as session:
        acme = {"Authorization": f"Bearer {apikeys.create_key(session, 'acme', 'tests')[1]}"}
        globex = {"Authorization": f"Bearer {apikeys.create_key(session, 'globex', 'tests')[1]}"}
    with TestClient(create_app(running.app, lambda ids: None, lambda ids: None)) as client:
        url = f"/api/v1/users/{users['ann']}/notification-mail"
        assert client.get(url, headers=acme).json()["mode"] == "off"
        put = client.put(url, json={"mode": "digest", "every_minutes": 15}, headers=acme)
        assert put.status_code == 200 and (put.json()["mode"], put.json()["every_minutes"]) == ("digest", 15)
        assert client.get(url, headers=acme).json()["every_minutes"] == 15
        assert client.put(url, json={"mode": "loud"}, headers=acme).status_code == 422
        assert client.put(url, json={"mode": "immediate"}, headers=globex).status_code == 404
        assert client.get(url, headers=globex).status_code == 404
        assert client.get(url, headers=acme).json()["mode"] == "digest"
