"""The storage stage against a real database: lifecycle, settings, contacts, bounces, staff, retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import make_msgid

import pytest
from sqlalchemy import update

from postroom import flow
from postroom.errors import PostroomError
from postroom.messageids import make_message_id
from postroom.model import Envelope
from postroom.storage import bounces as bounce_store
from postroom.storage import (
    contacts,
    conversation_actions,
    conversation_views,
    conversations,
    inbound,
    staff,
    staff_messages,
    threading_lookup,
)
from postroom.storage.intake import IntakeItem, store_batch
from postroom.storage.tables import Conversation
from postroom.testing import make_eml

INBOX = "inbox@acme.mail.test"


@pytest.fixture
def deliver(app, tenant_ids):
    """Intake + pipeline without SMTP; returns the inbound row id."""

    def run(raw: bytes, rcpts: tuple[str, ...] = (INBOX,), tenant: str = "acme", expect: str = "done") -> int:
        [[row]] = store_batch(app.sessions, app.blobs, [IntakeItem(raw, Envelope("x@example.com", rcpts),
                                                                   {tenant_ids[tenant]: rcpts})])
        assert flow.process_inbound(app, row) == expect
        return row

    return run


def message_of(app, tenant_id: int, message_id: str) -> conversation_views.MessageView:
    with app.session() as session:
        row = conversation_views.message_row_by_header(session, tenant_id, message_id)
        assert row is not None
        return conversation_views.get_message(session, row)


def test_heuristic_same_contact_same_subject_within_window(app, tenant_ids, deliver) -> None:
    first, second, third = (make_msgid(domain="x.example") for _ in range(3))
    deliver(make_eml(message_id=first, subject="Volets roulants"))
    deliver(make_eml(message_id=second, subject="AW: Volets roulants"))
    acme = tenant_ids["acme"]
    assert message_of(app, acme, second).conversation_id == message_of(app, acme, first).conversation_id
    assert message_of(app, acme, second).matched_via == "subject"
    with app.session() as session:
        session.execute(update(Conversation).values(last_activity_at=datetime.now(UTC) - timedelta(days=31)))
    deliver(make_eml(message_id=third, subject="Re: Volets roulants"))
    assert message_of(app, acme, third).matched_via == "new"


def test_heuristic_can_be_turned_off_and_join_open_policy(app, tenant_ids, deliver) -> None:
    with app.session() as session:
        threading_lookup.set_threading_settings(session, "acme", heuristic=False)
    a, b = make_msgid(domain="x.example"), make_msgid(domain="x.example")
    deliver(make_eml(message_id=a, subject="Volets"))
    deliver(make_eml(message_id=b, subject="Re: Volets"))
    acme = tenant_ids["acme"]
    assert message_of(app, acme, b).conversation_id != message_of(app, acme, a).conversation_id
    with app.session() as session:
        threading_lookup.set_threading_settings(session, "acme", new_mail="join_open")
    c = make_msgid(domain="x.example")
    deliver(make_eml(message_id=c, subject="Something new"))
    assert message_of(app, acme, c).matched_via == "join-open"


def test_message_ids_never_thread_across_tenants(app, tenant_ids, deliver) -> None:
    root, reply = make_msgid(domain="x.example"), make_msgid(domain="x.example")
    deliver(make_eml(message_id=root, to="inbox@globex.mail.test"), ("inbox@globex.mail.test",), tenant="globex")
    deliver(make_eml(message_id=reply, subject="Other", headers={"In-Reply-To": root}))
    assert message_of(app, tenant_ids["acme"], reply).matched_via == "new"


def test_parent_arriving_after_its_child_meets_it(app, tenant_ids, deliver) -> None:
    root, child, late_parent = (make_msgid(domain="x.example") for _ in range(3))
    deliver(make_eml(message_id=root, subject="Plans"))
    # the child references a parent we have not seen; the parent arrives later without headers
    deliver(make_eml(message_id=child, subject="x",
                     headers={"In-Reply-To": late_parent, "References": f"{root} {late_parent}"}))
    deliver(make_eml(message_id=late_parent, subject="y"))
    acme = tenant_ids["acme"]
    convs = {message_of(app, acme, m).conversation_id for m in (root, child, late_parent)}
    assert len(convs) == 1
    assert message_of(app, acme, late_parent).matched_via == "related"


def test_settings_are_validated() -> None:
    from postroom.threading_policy import ThreadingPolicy

    policy = ThreadingPolicy()
    assert policy.autoclose_days is None and policy.heuristic and policy.new_mail == "new"
    for bad in ({"autoclose_days": 0}, {"autoclose_days": 16}, {"new_mail": "merge"}, {"heuristic": "yes"},
                {"loop_max": 0}, {"bogus": 1}):
        with pytest.raises(PostroomError):
            policy.updated(**bad)
    assert policy.updated(autoclose_days=15).autoclose_days == 15
    # a stored bad value falls back to the default instead of breaking the pipeline
    assert ThreadingPolicy.from_settings({"threading": {"autoclose_days": 99, "loop_max": 3}}) == \
        ThreadingPolicy(loop_max=3)


def test_autoclose_job(app, tenant_ids, deliver) -> None:
    ids = [make_msgid(domain="x.example") for _ in range(3)]
    for n, mid in enumerate(ids):
        deliver(make_eml(message_id=mid, subject=f"Subject {n}"))
    deliver(make_eml(message_id=make_msgid(domain="x"), to="inbox@globex.mail.test"), ("inbox@globex.mail.test",),
            tenant="globex")
    acme = tenant_ids["acme"]
    old, fresh, _ = (message_of(app, acme, m).conversation_id for m in ids)
    now = datetime.now(UTC)
    with app.session() as session:
        session.execute(update(Conversation).values(last_activity_at=now - timedelta(days=5)))
        session.execute(update(Conversation).where(Conversation.id == fresh)
                        .values(last_activity_at=now - timedelta(days=2)))
        assert conversation_actions.autoclose(session) == {}                          # off by default
        threading_lookup.set_threading_settings(session, "acme", autoclose_days=3)
    with app.session() as session:
        closed = conversation_actions.autoclose(session)
    assert set(closed) == {acme} and old in closed[acme] and fresh not in closed[acme]
    with app.session() as session:
        statuses = {c.id: c.status for c in conversation_views.list_conversations(session, "acme")}
        globex = conversation_views.list_conversations(session, "globex")
    assert statuses[old] == "closed" and statuses[fresh] == "open"
    assert [c.status for c in globex] == ["open"]


def test_contacts_are_created_and_merged_on_request(app, tenant_ids, deliver) -> None:
    a, b = make_msgid(domain="x.example"), make_msgid(domain="x.example")
    deliver(make_eml(sender="Jean <jean@home.example>", message_id=a, subject="Maison"))
    deliver(make_eml(sender="J. Dupont <j.dupont@work.example>", message_id=b, subject="Bureau"))
    acme = tenant_ids["acme"]
    home, work = message_of(app, acme, a).author_contact_id, message_of(app, acme, b).author_contact_id
    assert home != work
    with app.session() as session:
        with pytest.raises(PostroomError, match=f"belongs to contact {work}; .* merge {home} {work}"):
            contacts.add_contact_address(session, home, "J.Dupont@work.example")
        merged = contacts.merge_contacts(session, keep_id=home, drop_id=work)
        assert merged.addresses == ("jean@home.example", "j.dupont@work.example")
        assert contacts.get_contact(session, work).merged_into_id == home
        assert {c.contact_id for c in conversation_views.list_conversations(session, "acme")} == {home}
    assert message_of(app, acme, b).author_contact_id == home


def test_bounce_is_recorded_against_the_outbound_message(app, tenant_ids, deliver) -> None:
    root = make_msgid(domain="x.example")
    deliver(make_eml(sender="Jean <jean@home.example>", message_id=root))
    acme = tenant_ids["acme"]
    conv = message_of(app, acme, root).conversation_id
    outbound_id = make_message_id("acme.mail.test")
    with app.session() as session:
        user = staff.add_user(session, "acme", email="sophie@acme.example", name="Sophie")
        staff_messages.add_staff_message(session, conv, user.id, text="Bonjour", message_id=outbound_id)
        events_before = len(conversation_views.events(session, acme))
    dsn_id = make_msgid(domain="mx.home.example")
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.home.example>\r\n"
        f"To: {INBOX}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: {dsn_id}\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
        "--B1\r\nContent-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        "<jean@home.example>: host mx.home.example said: 552 5.2.2 mailbox full\r\n\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.home.example\r\n\r\n"
        "Final-Recipient: rfc822; jean@home.example\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        "Diagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n\r\n"
        "--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: sophie@acme.example\r\nTo: jean@home.example\r\nMessage-ID: {outbound_id}\r\n"
        "Subject: Bonjour\r\n\r\n--B1--\r\n"
    ).encode()
    deliver(dsn)
    with app.session() as session:
        bounces = bounce_store.list_bounces(session, acme)
        events_after = len(conversation_views.events(session, acme))
        summary = conversation_views.get_conversation(session, conv)[0]
    assert [b.header_message_id for b in bounces] == [outbound_id]
    assert "jean@home.example" in bounces[0].permanent + bounces[0].temporary
    assert events_after == events_before and summary.status == "open"
    assert "bounced" in message_of(app, acme, outbound_id).flags
    assert message_of(app, acme, dsn_id).conversation_id == conv


def test_record_bounce_function_for_outbound(app, tenant_ids) -> None:
    with app.session() as session:
        assert bounce_store.record_bounce(session, tenant_ids["acme"], "<unknown@x>", permanent=["a@b"]) is None


def test_staff_messages_responsible_team_and_notes(app, tenant_ids, deliver) -> None:
    root = make_msgid(domain="x.example")
    deliver(make_eml(message_id=root))
    acme = tenant_ids["acme"]
    conv = message_of(app, acme, root).conversation_id
    with app.session() as session:
        anna = staff.add_user(session, "acme", email="anna@acme.example", name="Anna", signature_text="-- Anna",
                              signature_html="<p>Anna</p>")
        paul = staff.add_user(session, "acme", email="paul@acme.example", name="Paul")
        team = staff.add_team(session, "acme", "After-sales", members=(paul.id,))
        with pytest.raises(PostroomError):
            staff.add_user(session, "acme", email="ANNA@acme.example", name="Twice")
        conversation_actions.assign(session, conv, team_id=team.id)
        staff_messages.add_staff_message(session, conv, anna.id, kind="note", text="internal")
        assert conversation_views.get_conversation(session, conv)[0].responsible_user_id is None
        staff_messages.add_staff_message(session, conv, anna.id, text="not in the team")
        assert conversation_views.get_conversation(session, conv)[0].responsible_user_id is None
        staff_messages.add_staff_message(session, conv, paul.id, text="hello", status="awaiting_feedback")
        summary = conversation_views.get_conversation(session, conv)[0]
        assert (summary.responsible_user_id, summary.responsible_team_id, summary.status) == \
            (paul.id, team.id, "awaiting_feedback")
        assert [u.email for u in staff.list_users(session, "acme")] == ["anna@acme.example", "paul@acme.example"]
        assert staff.get_user(session, paul.id).teams == ("After-sales",)
    reply = make_msgid(domain="x.example")
    deliver(make_eml(message_id=reply, subject="Re: Question about my unit", headers={"In-Reply-To": root}))
    with app.session() as session:
        summary = conversation_views.get_conversation(session, conv)[0]
        event = conversation_views.events(session, acme, conversation_id=conv)[-1]
    assert summary.status == "open"  # the customer answered
    assert (event.recipient_type, event.recipient_id) == ("user", paul.id)


def test_thread_headers_for_outbound(app, tenant_ids, deliver) -> None:
    root = make_msgid(domain="x.example")
    deliver(make_eml(message_id=root, subject="Clés"))
    conv = message_of(app, tenant_ids["acme"], root).conversation_id
    with app.session() as session:
        user = staff.add_user(session, "acme", email="anna@acme.example", name="Anna")
        out = make_message_id("acme.mail.test")
        staff_messages.add_staff_message(session, conv, user.id, text="x", message_id=out)
        headers = staff_messages.thread_headers(session, conv)
    assert headers.message_ids == (root, out) and headers.in_reply_to == root
    assert headers.subject == f"Clés [#{headers.reference}]"


def test_failure_keeps_the_stage_and_a_retry_records_once(app, tenant_ids, deliver, monkeypatch) -> None:
    mid = make_msgid(domain="x.example")
    real = conversations.record

    def broken(*args, **kwargs):
        real(*args, **kwargs)  # writes happen, then the transaction must roll back
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(conversations, "record", broken)
    [[row]] = store_batch(app.sessions, app.blobs, [IntakeItem(make_eml(message_id=mid), Envelope("x@y", (INBOX,)),
                                                               {tenant_ids["acme"]: (INBOX,)})])
    with pytest.raises(flow.RetryLater):
        flow.process_inbound(app, row)
    with app.session() as session:
        record = inbound.get_inbound(session, row)
        assert (record.stage, record.status) == ("storage", "retrying")
        assert conversation_views.message_row_by_header(session, tenant_ids["acme"], mid) is None
        assert conversation_views.list_conversations(session, "acme") == []
    monkeypatch.setattr(conversations, "record", real)
    assert flow.process_inbound(app, row) == "done"
    with app.session() as session:
        inbound.set_status(session, row, "pending", allowed_from=("done",))
    assert flow.process_inbound(app, row) == "done"  # processed again: still one message
    with app.session() as session:
        assert (inbound.get_inbound(session, row).stage, len(conversation_views.list_conversations(session, "acme"))) \
            == ("done", 1)
        assert conversation_views.list_conversations(session, "acme")[0].message_count == 1


def test_responder_opening_a_new_thread_each_time_is_stopped(app, tenant_ids, deliver) -> None:
    for n in range(15):
        deliver(make_eml(sender="Bot <bot@responder.example>", message_id=make_msgid(domain="responder.example"),
                         subject=f"Your request #{n} was received"))
    with app.session() as session:
        assert len(conversation_views.list_conversations(session, "acme")) == 10
        inbox = conversation_views.list_inbox(session, "acme")
    assert len(inbox) == 5 and all("loop" in m.flags for m in inbox)


def test_conversation_subject_drops_reply_prefixes(app, tenant_ids, deliver) -> None:
    deliver(make_eml(message_id=make_msgid(domain="x.example"), subject="RE: AW: Heizung [#ZZZZZZ]"))
    with app.session() as session:
        assert conversation_views.list_conversations(session, "acme")[0].subject == "Heizung"


def test_a_taken_conversation_reference_is_drawn_again(app, tenant_ids, deliver, monkeypatch) -> None:
    deliver(make_eml(message_id=make_msgid(domain="x.example"), subject="Chauffage"))
    with app.session() as session:
        [taken] = conversation_views.list_conversations(session, "acme")
    draws = iter([taken.reference, "Q7Q7Q7"])
    monkeypatch.setattr(conversations, "_random_reference", lambda: next(draws))
    deliver(make_eml(sender="Other <other@x.example>", message_id=make_msgid(domain="x.example"), subject="Fenêtre"))
    with app.session() as session:
        references = sorted(c.reference for c in conversation_views.list_conversations(session, "acme"))
    assert references == sorted([taken.reference, "Q7Q7Q7"])


def test_a_message_id_stored_after_the_duplicate_check_is_still_one_message(app, tenant_ids, deliver,
                                                                            monkeypatch) -> None:
    """A concurrent worker may store the same Message-ID between ``record``'s check and its insert."""
    mid = make_msgid(domain="x.example")
    deliver(make_eml(message_id=mid, subject="Volets", body="first copy"))
    real, checks = conversations._existing, []

    def racing(*args):  # the first check runs before the other worker's commit
        checks.append(args)
        return None if len(checks) == 1 else real(*args)

    monkeypatch.setattr(conversations, "_existing", racing)
    second = deliver(make_eml(message_id=mid, subject="Volets", body="second copy"))
    assert len(checks) == 2  # the insert found the row taken and looked again
    with app.session() as session:
        [conv] = conversation_views.list_conversations(session, "acme")
        assert conv.message_count == 1
        assert inbound.get_inbound(session, second).status == "done"
    assert message_of(app, tenant_ids["acme"], mid).text.strip() == "first copy"
