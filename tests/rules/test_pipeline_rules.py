"""Rules in the running service: routing, discard, auto-reply, forwarded copies, reload, over real SMTP."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from tests.rules.conftest import drain, finished, free_port, rows, write_rules

from postroom import flow
from postroom.service import Service
from postroom.statuses import TERMINAL
from postroom.storage import conversation_views, inbound, routing, staff
from postroom.storage import outbound as outbound_store
from postroom.storage.tables import InboundMessage, Message, NotificationEvent
from postroom.testing import make_eml, wait_until

ROUTING = """
rules:
  - name: Invoices to finance
    when:
      all:
        - from: { domain: supplier.be }
        - subject: { matches: "(?i)invoice" }
    then:
      category: Finance
      assign: { team: finance }
      tags: [invoice]
      unit: P-17
  - name: Ann takes urgent mail
    when: { subject: { contains: urgent } }
    then: { assign: { user: ann@acme.example }, tags: [urgent] }
  - name: Urgent replies are worked on
    when:
      all:
        - is_reply: true
        - subject: { contains: urgent }
    then: { status: in_progress, category: Escalated }
  - name: Everything else is general
    then: { category: General, tags: [seen] }
"""


def conversations_of(svc: Service, tenant: str = "acme") -> list[conversation_views.ConversationSummary]:
    with svc.app.session() as session:
        return conversation_views.list_conversations(session, tenant)


def outbound_rows(svc: Service) -> list[outbound_store.OutboundRecord]:
    with svc.app.session() as session:
        return outbound_store.list_outbound(session)


def test_rules_set_category_team_user_tags_and_unit(routed, send, settings) -> None:
    write_rules(settings, "acme", ROUTING)
    with routed.app.session() as session:
        finance = staff.add_team(session, "acme", "finance")
        ann = staff.add_user(session, "acme", email="ann@acme.example", name="Ann")
    send(make_eml(sender="Billing <billing@supplier.be>", subject="Invoice 2024-117"), mail_from="billing@supplier.be")
    send(make_eml(sender="Jean <jean@example.com>", subject="urgent: water leak"))
    wait_until(lambda: finished(routed, 2))
    by_subject = {c.subject: c for c in conversations_of(routed)}
    invoice, leak = by_subject["Invoice 2024-117"], by_subject["urgent: water leak"]
    # the catch-all rule fires last, so its category wins (later rules override single values); tags add up
    assert invoice.category == "General" and invoice.responsible_team_id == finance.id
    assert set(invoice.tags) == {"invoice", "seen"} and invoice.unit_ref == "P-17"
    assert leak.responsible_user_id == ann.id and set(leak.tags) == {"urgent", "seen"}
    assert leak.status == "open", "the reply-only rule must not fire on a new conversation"
    fired = {r.subject: r.routing["fired"] for r in rows(routed)}
    assert fired["Invoice 2024-117"] == ["Invoices to finance", "Everything else is general"]


def test_reply_updates_existing_conversation(routed, send, settings) -> None:
    write_rules(settings, "acme", ROUTING)
    first_id = "<first.leak@example.com>"
    send(make_eml(subject="Leak in the kitchen", message_id=first_id))
    [conv] = wait_until(lambda: conversations_of(routed))
    assert conv.category == "General"
    send(make_eml(subject="Re: Leak in the kitchen - urgent", headers={"In-Reply-To": first_id,
                                                                       "References": first_id}))
    wait_until(lambda: finished(routed, 2))
    [after] = conversations_of(routed)
    assert after.id == conv.id
    # the reply-aware rule overrides status and category; plain rules only add tags
    assert after.status == "in_progress" and after.category == "Escalated"
    assert set(after.tags) == {"seen", "urgent"}


DISCARD = """
rules:
  - name: Keep out spam
    when: { header: { name: X-Spam-Flag, is: "YES" } }
    then: { discard: true, stop: true }
"""


def test_discard_keeps_row_for_operators_creates_nothing(routed, send, settings) -> None:
    write_rules(settings, "acme", DISCARD)
    send(make_eml(subject="Cheap watches", headers={"X-Spam-Flag": "YES"}))
    [row] = wait_until(lambda: finished(routed))
    assert row.status == "discarded" and row.routing["fired"] == ["Keep out spam"]
    with routed.app.session() as session:
        assert [r.id for r in inbound.list_inbound(session, status="discarded")] == [row.id]
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        assert session.scalar(select(func.count()).select_from(NotificationEvent)) == 0
        assert session.get(InboundMessage, row.id).parsed["subject"] == "Cheap watches"
    assert conversations_of(routed) == []
    assert routed.app.blobs.exists(row.sha256)
    with routed.app.session() as session:  # within retention: kept
        assert routing.purge_discarded(session, older_than=timedelta(days=30)) == []
        later = datetime.now(UTC) + timedelta(days=29)
        assert routing.purge_discarded(session, older_than=timedelta(days=30), now=later) == []
    with routed.app.session() as session:  # past retention: the record goes
        later = datetime.now(UTC) + timedelta(days=31)
        assert list(routing.purge_discarded(session, older_than=timedelta(days=30), now=later)) == [row.id]
    assert rows(routed) == []


AUTO_REPLY = """
rules:
  - name: Acknowledge
    when: { new_conversation: true }
    then: { auto_reply: acknowledgement }
"""


def test_auto_reply_once_per_day_null_sender_and_idempotent(routed, send, settings, sink) -> None:
    write_rules(settings, "acme", AUTO_REPLY)
    send(make_eml(sender="Jean <jean@example.com>", subject="First question"))
    [reply] = wait_until(lambda: sink.received)
    assert reply.mail_from == "<>" and reply.rcpt_tos == ["jean@example.com"]
    assert reply.message["Auto-Submitted"] == "auto-replied"
    send(make_eml(sender="Jean <jean@example.com>", subject="Second question"))
    send(make_eml(sender="Mia <mia@example.com>", subject="Other customer"))
    wait_until(lambda: finished(routed, 3))
    wait_until(lambda: len(sink.received) >= 2)
    drain(routed)
    assert sorted(d.rcpt_tos[0] for d in sink.received) == ["jean@example.com", "mia@example.com"]
    second = next(r for r in rows(routed) if r.subject == "Second question")
    assert "already auto-replied" in second.routing["auto_reply_suppressed"]
    first = next(r for r in rows(routed) if r.subject == "First question")
    # an operator re-runs the row: the message is already recorded, nothing is queued again
    with routed.app.session() as session:
        inbound.set_status(session, first.id, "pending", allowed_from=("done",))
    assert flow.process_inbound(routed.app, first.id) == "done"
    assert len([o for o in outbound_rows(routed) if o.kind == "auto_reply"]) == 2


def test_auto_reply_never_to_automatic_mail_or_lists(routed, send, settings, sink) -> None:
    write_rules(settings, "acme", AUTO_REPLY)
    send(make_eml(sender="Away <away@example.com>", subject="Out of office",
                  headers={"Auto-Submitted": "auto-replied"}), mail_from="away@example.com")
    send(make_eml(sender="List <news@lists.example>", subject="Newsletter", headers={"List-Id": "<n.lists.example>"}),
         mail_from="news-bounces@lists.example")
    wait_until(lambda: finished(routed, 2))
    drain(routed)
    assert sink.received == [] and outbound_rows(routed) == []


def test_two_tenants_auto_replying_to_each_other_do_not_loop(settings, tenant_ids) -> None:
    """Each tenant's auto-reply goes through our own gateway into the other's inbox."""
    port = free_port()
    svc = Service(settings.replace(smtp_listen=f"127.0.0.1:{port}", outbound_url=f"smtp://127.0.0.1:{port}",
                                   outbound_backoff_ms=20, outbound_max_backoff_ms=100)).start()
    try:
        if settings.broker_url:
            svc.pipeline.broker.flush_all()
        always = "rules:\n  - name: Answer everything\n    then: { auto_reply: acknowledgement }\n"
        write_rules(settings, "acme", always)
        write_rules(settings, "globex", always)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("inbox@globex.mail.test", ["inbox@acme.mail.test"],
                            make_eml(sender="Globex <inbox@globex.mail.test>", to="inbox@acme.mail.test",
                                     subject="Order 55"))
        # acme answers globex once; globex receives that auto-reply and must not answer it
        wait_until(lambda: [o for o in outbound_rows(svc) if o.status == "sent"])
        wait_until(lambda: [r for r in rows(svc) if r.tenant == "globex" and r.status in TERMINAL])
        drain(svc)
        sent = outbound_rows(svc)
        assert [(o.tenant, o.kind) for o in sent] == [("acme", "auto_reply")]
        globex_row = next(r for r in rows(svc) if r.tenant == "globex")
        assert globex_row.routing["fired"] == ["Answer everything"]
        assert "auto_reply" not in globex_row.routing and globex_row.routing["auto_reply_suppressed"]
        assert len(rows(svc)) == 2
    finally:
        svc.stop()


FORWARD = """
rules:
  - name: Copy to archive
    when: { subject: { contains: contract } }
    then: { forward: archive@records.example, tags: [archived] }
"""


def test_forward_copy_carries_original(routed, send, settings, sink) -> None:
    write_rules(settings, "acme", FORWARD)
    send(make_eml(subject="Signed contract", body="Please find the contract.\n"))
    [copy] = wait_until(lambda: sink.received)
    assert copy.rcpt_tos == ["archive@records.example"]
    msg = copy.message
    assert msg["Subject"] == "Fwd: Signed contract"
    [attached] = list(msg.iter_attachments())
    assert attached.get_content_type() == "message/rfc822"
    assert attached.get_content()["Subject"] == "Signed contract"
    assert "Please find the contract." in attached.get_content().get_content()
    [row] = finished(routed)
    assert row.routing["outbound"] and conversations_of(routed)[0].tags == ("archived",)


def test_hot_reload_and_broken_file_keeps_last_good(routed, send, settings) -> None:
    write_rules(settings, "acme", "rules:\n  - name: v1\n    then: { category: One }\n")
    send(make_eml(subject="first"))
    wait_until(lambda: finished(routed, 1))
    write_rules(settings, "acme", "rules:\n  - name: v2\n    then: { category: Two }\n")
    send(make_eml(subject="second"))
    wait_until(lambda: finished(routed, 2))
    write_rules(settings, "acme", "rules:\n  - name: v3\n    then: { categroy: Three }\n")
    send(make_eml(subject="third"))
    wait_until(lambda: finished(routed, 3))
    categories = {c.subject: c.category for c in conversations_of(routed)}
    assert categories == {"first": "One", "second": "Two", "third": "Two"}
