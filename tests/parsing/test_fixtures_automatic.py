"""Auto-replies and bounces."""

from __future__ import annotations

import pytest

from postroom.model import Bounce
from postroom.parsing import is_null_sender, parse


def test_exchange_auto_reply(parsed):
    assert parsed["exchange_autoreply_en.eml"].auto_reply.reason == "auto-submitted: auto-replied"


def test_person_mail_is_not_automatic(parsed):
    for name in ("gmail_reply_en.eml", "outlook_reply_fr.eml", "thunderbird_forward_nl.eml"):
        assert parsed[name].auto_reply is None
        assert parsed[name].bounce is None


def _mail(headers: str, subject: str = "Hello", sender: str = "a@example.com") -> bytes:
    return (f"From: {sender}\nTo: b@example.com\nSubject: {subject}\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\n{headers}\nbody\n").encode()


@pytest.mark.parametrize(
    ("headers", "subject", "reason"),
    [
        ("Auto-Submitted: auto-generated", "Hello", "auto-submitted: auto-generated"),
        ("Auto-Submitted: no", "Hello", None),
        ("X-Autoreply: yes", "Hello", "x-autoreply: yes"),
        ("X-Autorespond: Out of office", "Hello", "x-autorespond: Out of office"),
        ("Precedence: bulk", "Hello", "precedence: bulk"),
        ("Precedence: junk", "Hello", "precedence: junk"),
        ("Precedence: auto_reply", "Hello", "precedence: auto_reply"),
        ("Precedence: list", "Hello", None),
        ("X-Auto-Response-Suppress: OOF, AutoReply", "Hello", "x-auto-response-suppress: OOF, AutoReply"),
        ("Return-Path: <>", "Hello", "empty return path"),
        ("", "Out of Office: Re: Hello", "subject: Out of Office: Re: Hello"),
        ("", "Automatic reply: Hello", "subject: Automatic reply: Hello"),
        ("", "Réponse automatique : Bonjour", "subject: Réponse automatique : Bonjour"),
        ("", "Absent du bureau", "subject: Absent du bureau"),
        ("", "Automatisch antwoord: Hallo", "subject: Automatisch antwoord: Hallo"),
        ("", "Afwezig: Hallo", "subject: Afwezig: Hallo"),
        ("", "Automatische Antwort: Hallo", "subject: Automatische Antwort: Hallo"),
        ("", "Abwesenheitsnotiz: Hallo", "subject: Abwesenheitsnotiz: Hallo"),
        ("", "Re: office chairs", None),
    ],
)
def test_auto_reply_signals(headers, subject, reason):
    """Subject-only rows come from a role address: a subject alone decides only then (issue 17)."""
    sender = "noreply@example.com" if reason and reason.startswith("subject:") else "a@example.com"
    got = parse(_mail(headers, subject, sender)).auto_reply
    assert (got.reason if got else None) == reason


@pytest.mark.parametrize("subject", ["Out of office next week: who covers the helpdesk?", "Automatic reply: Hello",
                                     "Abwesenheit im August", "Автоматический ответ: привет"])
def test_a_persons_subject_alone_is_no_auto_reply(subject):
    """A person may start a subject with an autoresponder phrase; without automatic headers it is their mail."""
    assert parse(_mail("", subject, "Maria Rossi <maria@customer.example>")).auto_reply is None
    assert parse(_mail("Auto-Submitted: auto-replied", subject, "maria@customer.example")).auto_reply is not None


@pytest.mark.parametrize(("mail_from", "expected"), [("", True), ("<>", True), (" <> ", True),
                                                    ("a@example.com", False), ("<a@example.com>", False)])
def test_is_null_sender(mail_from, expected):
    assert is_null_sender(mail_from) is expected


@pytest.mark.parametrize(
    ("fixture", "bounce"),
    [
        ("postfix_bounce_dsn.eml", Bounce(("nobody@customer.example",), (), "<out-777@acme.mail.test>", "5.1.1")),
        ("exchange_bounce_delayed.eml", Bounce((), ("slow@partner.example",), "<out-888@acme.mail.test>", "4.4.7")),
        # Exim text: wrapped intro, "<addr>", "addr:" + reason, alias "(generated from addr)"; the copy's Cc is not one
        ("exim_bounce_wrapped_en.eml",
         Bounce(("leaver@partner.example", "quota.full@partner.example", "team-alias@partner.example"), (),
                "<out-4242@acme.mail.test>", None)),
        ("mta_bounce_one_line_en.eml", Bounce(("orders@partner.example",), (), None, None)),
        # a bare message/delivery-status without From or Subject is still a DSN (Action: failed -> permanent)
        ("mta_dsn_bare_failed.eml", Bounce(("stuck@partner.example",), (), None, "4.2.2")),
    ],
)
def test_bounces(parsed, fixture, bounce):
    assert parsed[fixture].bounce == bounce
    assert parsed[fixture].forward is None


def test_non_standard_bounce_with_quoted_message_id():
    raw = (b"From: Mail Delivery Subsystem <MAILER-DAEMON@mx.partner.example>\n"
           b"To: bounces@acme.mail.test\nSubject: Mail delivery failed: returning message to sender\n"
           b"Date: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <bounce-1@mx.partner.example>\n\n"
           b"This message was created automatically by mail delivery software.\n\n"
           b"A message that you sent could not be delivered to one or more of its\n"
           b"recipients. This is a permanent error. The following address(es) failed:\n\n"
           b"  gone@partner.example\n    SMTP error from remote mail server after RCPT TO:<gone@partner.example>:\n"
           b"    550 5.1.1 User unknown\n\n------ This is a copy of the message, including all the headers. ------\n\n"
           b"From: support@acme.mail.test\nTo: gone@partner.example\nMessage-ID: <out-999@acme.mail.test>\n"
           b"Subject: hi\n\nhello\n")
    assert parse(raw).bounce == Bounce(("gone@partner.example",), (), "<out-999@acme.mail.test>", None)


def test_person_writing_about_a_rejection_is_not_a_bounce():
    raw = (b"From: Dana <dana@customer.example>\nTo: support@acme.mail.test\nSubject: Re: rejected invoice\n"
           b"Date: Mon, 1 Jan 2024 10:00:00 +0000\n\nThe invoice was rejected by accounting, delivery failed twice.\n"
           b"Can you send it again to billing@customer.example?\n")
    assert parse(raw).bounce is None
