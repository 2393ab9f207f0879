"""Headers, addresses, dates and charsets of real-client fixtures."""

from __future__ import annotations

import re

import pytest

from postroom.model import Address
from postroom.parsing import addresses


@pytest.mark.parametrize(
    ("fixture", "sender", "subject", "date"),
    [
        ("gmail_reply_en.eml", Address("Chris Customer", "chris@customer.example"), "Re: Your order #1042",
         "2024-01-08T11:02:13+01:00"),
        ("outlook_reply_fr.eml", Address("Valérie Dupré", "valerie.dupre@client.example.fr"),
         "RE: Votre devis n° 77", "2024-01-09T09:14:55+00:00"),
        ("thunderbird_reply_de.eml", Address("Jörg Müller", "joerg.mueller@kunde.example.de"),
         "Re: Rechnung 2024-001", "2024-01-11T14:22:07+01:00"),
        ("outlook_reply_de.eml", Address("Weber, Klaus", "klaus.weber@firma.example.de"), "AW: Lieferung",
         "2024-01-16T08:12:00+01:00"),
        ("mutt_charset_mixed_fr.eml", Address("Élodie Léger", "elodie@client.example.fr"),
         "Problème de connexion à l'espace client", "2024-02-05T10:00:00+01:00"),
        ("postfix_bounce_dsn.eml", Address("Mail Delivery System", "mailer-daemon@mx.acme.mail.test"),
         "Undelivered Mail Returned to Sender", "2024-02-01T10:00:05+00:00"),
    ],
)
def test_sender_subject_date(parsed, fixture, sender, subject, date):
    msg = parsed[fixture]
    assert msg.sender == sender
    assert msg.subject == subject
    assert msg.date.isoformat() == date
    assert not msg.date_is_fallback


def test_ids_and_recipients(parsed):
    msg = parsed["apple_reply_nl.eml"]
    assert msg.message_id == "<3F2A1B7C-5D6E-4F80-9A1B-2C3D4E5F6A7B@klant.example.nl>"
    assert msg.in_reply_to == ("<delivery-9@acme.mail.test>",)
    assert msg.references == ("<delivery-9@acme.mail.test>",)
    assert msg.to == (Address("Acme Support", "support@acme.mail.test"),)
    assert msg.cc == (Address("Inge Bakker", "inge@klant.example.nl"),)


def test_broken_address_list_keeps_what_it_can(parsed):
    assert parsed["thunderbird_attachments_en.eml"].to == (
        Address("Acme Support", "support@acme.mail.test"),
        Address("", "sales@acme.mail.test"),
    )


def test_missing_date_falls_back_and_is_flagged(parsed):
    msg = parsed["script_undeclared_8bit_nodate_de.eml"]
    assert msg.date_is_fallback
    assert msg.date.tzinfo is not None
    assert "missing-date" in msg.defects


@pytest.mark.parametrize(
    ("fixture", "text"),
    [
        # windows-1252 bytes (’ €) in a body declared iso-8859-1
        ("outlook_reply_fr.eml", "Bonjour,\n\nC’est d’accord pour 120 € par mois.\n\nCordialement,\nValérie Dupré"),
        # latin-1 bytes inside a body declared utf-8
        ("mutt_charset_mixed_fr.eml", "Je n'arrive pas à me connecter depuis la mise à jour."),
        # undeclared 8-bit UTF-8
        ("script_undeclared_8bit_nodate_de.eml", "Größe: XL, Menge: 2, Preis: 39,90 €"),
        # quoted-printable UTF-8
        ("apple_reply_nl.eml", "Dinsdag past prima, graag vóór 12 uur."),
    ],
)
def test_charset_repair(parsed, fixture, text):
    assert parsed[fixture].reply_text == text


def test_raw_8bit_header_is_decoded(parsed):
    assert parsed["mutt_charset_mixed_fr.eml"].header("X-Note") == "Café crème"


@pytest.mark.parametrize("value", ["undisclosed-recipients:;", "{{TO}}", "Joe (no address)", "joe\uff20example.com",
                                   "Group: ;", "<>"])
def test_no_at_sign_no_mailbox(value):
    """parse_list answers () at once when there is no "@"; the flanker/stdlib chain it skips agrees."""
    assert addresses.parse_list(value) == ()
    assert not addresses._flanker_list(value)
    assert not [a for piece in addresses.split_list(value) for a in addresses._one(piece)]


@pytest.mark.parametrize("value", ["MAILER-DAEMON@relay.example.net (Mail Delivery System)", "a@b.example(x)",
                                   "a@b.example (O'Neil - Ops.), Joe <j@k.example>", "p@w.example, q@x.example ()"])
def test_commented_bare_address_reads_as_flanker_does(value):
    """The fast path takes "addr (comment)": the same addresses as flanker, which it spares, but the comment is
    the display name (issue 17: "MAILER-DAEMON@host (Mail Delivery System)"; flanker dropped it)."""
    got = addresses.parse_list(value)
    assert [a.address for a in got] == [a.address for a in addresses._flanker_list(value)]
    comments = [next(iter(re.findall(r"\(([^()]*)\)", piece)), "").strip() for piece in value.split(",")
                if "j@k.example" not in piece]
    assert [a.name for a in got if a.address != "j@k.example"] == comments
