"""RuleInput from real parsed messages: addresses, attachments, authentication results."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postroom.model import Attachment, Envelope, ParsedMessage
from postroom.parsing import parse
from postroom.rules import RuleInput
from postroom.testing import make_eml

EMAILS = Path(__file__).resolve().parents[2] / "fixtures" / "emails"


def load(name: str, **kwargs: object) -> RuleInput:
    parsed = parse((EMAILS / name).read_bytes())
    env = Envelope(mail_from="Billing@Mail.Supplier.be", rcpt_tos=("Support@Acme.example",))
    return RuleInput.from_parsed(parsed, env, **kwargs)  # type: ignore[arg-type]


def test_invoice_message() -> None:
    inp = load("rules_invoice.eml", is_reply=True, new_conversation=False, contact={"tier": "gold"},
               language="nl")
    assert inp.from_address == "billing@mail.supplier.be"
    assert inp.envelope_from == "billing@mail.supplier.be"
    assert inp.recipients == ("support@acme.example",)
    assert inp.to == ("support@acme.example",)
    assert inp.subject == "Factuur 2024-0042"
    assert "invoice 2024-0042" in inp.body
    assert (inp.is_reply, inp.new_conversation, inp.language) == (True, False, "nl")
    assert inp.contact["tier"] == "gold"
    assert (inp.spf, inp.dkim, inp.dmarc) == (("pass",), ("pass",), ("pass",))
    assert inp.size > 500
    assert not (inp.is_auto_reply or inp.is_bounce or inp.is_mailing_list or inp.is_forward)


def test_attachments() -> None:
    pdf = Attachment("factuur.PDF", "Application/PDF", 100, "0" * 64, detected_type="application/pdf")
    logo = Attachment("", "image/png", 10, "1" * 64, inline=True, detected_type="image/png")
    parsed = replace(parse((EMAILS / "rules_question.eml").read_bytes()), attachments=(pdf, logo))
    inp = RuleInput.from_parsed(parsed, Envelope(mail_from="", rcpt_tos=()))
    assert inp.attachment_names == ("factuur.PDF",)
    assert inp.attachment_types == ("application/pdf", "image/png")
    assert inp.attachment_count == 2


def test_auto_reply_detected_from_headers() -> None:
    assert load("rules_autoreply.eml").is_auto_reply
    assert not load("rules_question.eml").is_auto_reply


@pytest.mark.parametrize(("headers", "automatic"), [
    ({"Auto-Submitted": "auto-replied"}, True),
    ({"X-Autoreply": "yes"}, True),
    ({"Auto-Submitted": "no"}, False),
    ({"X-Autoreply": "no"}, False),  # an explicit "no" is a person's mail: the parser's reading, the only one
    ({}, False),
])
def test_rules_see_the_parsers_auto_reply_verdict(headers: dict[str, str], automatic: bool) -> None:
    parsed = parse(make_eml(headers=headers))
    inp = RuleInput.from_parsed(parsed, Envelope(mail_from="jean@example.com", rcpt_tos=()))
    assert (parsed.auto_reply is not None) is automatic
    assert inp.is_auto_reply is automatic


OURS = "mx.postroom.example; spf=pass smtp.mailfrom=mail.supplier.be; dmarc=pass header.from=supplier.be"


def test_authentication_results_can_be_limited_to_our_server() -> None:
    parsed = parse((EMAILS / "rules_invoice.eml").read_bytes())
    forged = replace(parsed, authentication_results=(OURS, "evil.test; dmarc=fail"))
    env = Envelope(mail_from="", rcpt_tos=())
    assert RuleInput.from_parsed(forged, env).dmarc == ("pass", "fail")
    trusted = RuleInput.from_parsed(forged, env, trusted_authserv_ids=("MX.postroom.example", "mx2.test"))
    assert trusted.dmarc == ("pass",)
    garbage = replace(parsed, authentication_results=(";;; ===",))
    assert RuleInput.from_parsed(garbage, env).dmarc == ()


def test_authentication_results_fall_back_to_headers() -> None:
    parsed = replace(parse((EMAILS / "rules_question.eml").read_bytes()), authentication_results=(),
                     headers=(("Authentication-Results", OURS),))
    assert RuleInput.from_parsed(parsed, Envelope(mail_from="", rcpt_tos=())).spf == ("pass",)


def test_tolerates_sparse_messages() -> None:
    parsed = ParsedMessage(message_id=None, in_reply_to=(), references=(), subject="",
                           date=datetime(2024, 4, 16, tzinfo=UTC), sender=None)
    inp = RuleInput.from_parsed(parsed, Envelope(mail_from="<>", rcpt_tos=()))
    assert (inp.from_address, inp.envelope_from, inp.subject, inp.contact) == ("", "", "", {})


def test_sender_without_display_name_and_no_language() -> None:
    parsed = parse(make_eml(sender="Jean@Example.com"))
    inp = RuleInput.from_parsed(parsed, Envelope(mail_from="", rcpt_tos=("", "Inbox@Acme.example")), language="")
    assert (inp.from_address, inp.from_name, inp.language) == ("jean@example.com", "", None)
    assert inp.recipients == ("inbox@acme.example",)
