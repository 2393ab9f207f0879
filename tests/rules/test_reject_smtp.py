"""Reject rules over real SMTP: refused at DATA when decidable there, else marked rejected without a bounce."""

from __future__ import annotations

import smtplib

import pytest
from tests.rules.conftest import drain, finished, rows, write_rules

from postroom.storage import outbound as outbound_store
from postroom.testing import make_eml, wait_until

AT_DATA = """
rules:
  - name: No invoices here
    when: { subject: { matches: "(?i)invoice" } }
    then:
      reject: { code: 550, enhanced: 5.7.1, text: "Please send invoices to billing@acme.example" }
"""

AFTER = """
rules:
  - name: Only replies from strangers
    when:
      all:
        - new_conversation: true
        - subject: { contains: "[ticket]" }
    then: { reject: "New tickets only through the portal" }
"""


def test_reject_at_data_refuses_with_rule_text_and_stores_nothing(routed, send, settings) -> None:
    write_rules(settings, "acme", AT_DATA)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(make_eml(subject="Invoice 2024-117"))
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.decode() == "5.7.1 Please send invoices to billing@acme.example"
    send(make_eml(subject="A normal question"))  # the same rules accept everything else
    [row] = wait_until(lambda: finished(routed))
    assert row.subject == "A normal question" and row.status == "done"


def test_threading_dependent_reject_is_marked_later_without_bounce(routed, send, settings, sink) -> None:
    write_rules(settings, "acme", AFTER)
    assert send(make_eml(sender="Forged <ceo@bank.example>", subject="[ticket] wire money"),
                mail_from="ceo@bank.example") == {}
    [row] = wait_until(lambda: finished(routed))
    assert row.status == "rejected"
    assert "New tickets only through the portal" in row.last_error
    assert row.routing["fired"] == ["Only replies from strangers"]
    drain(routed)
    with routed.app.session() as session:
        assert outbound_store.list_outbound(session) == []
    assert sink.received == []


def test_transaction_with_an_accepting_tenant_is_accepted_and_rejected_per_tenant(routed, send, settings) -> None:
    write_rules(settings, "acme", AT_DATA)
    assert send(make_eml(subject="Invoice 9"), rcpts=("inbox@acme.mail.test", "inbox@globex.mail.test")) == {}
    done = wait_until(lambda: finished(routed, 2))
    assert {(r.tenant, r.status) for r in done} == {("acme", "rejected"), ("globex", "done")}
    assert len(rows(routed)) == 2
