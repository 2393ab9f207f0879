"""Issue 17: one fixture per kind of failure seen on unseen mail, with its expected output."""

from __future__ import annotations

from datetime import datetime

import pytest

from postroom.model import Address
from postroom.parsing import lexicon

REPLIES = [
    # Italian attribution wrapped over two lines, the address on its own line
    ("gmail_reply_wrapped_it.eml", "Perfetto, allora aspetto il corriere giovedì.", "",
     "Il giorno lun 12 feb 2024 alle ore 08:10 Acme Support"),
    # Swedish "skrev", history quoted by indentation, the answer written below it
    ("thunderbird_reply_indented_sv.eml", "Ja, den betalades i fredags.", "",
     "Den 2024-02-11 kl. 17:40, Acme Support skrev:"),
    # Polish "napisał(a)", a >-quoted block above the answer written below
    ("mutt_answer_below_pl.eml", "Tak, dotarła wczoraj. Dziękuję.", "",
     "W dniu 11.02.2024 o 18:00, Acme Support <support@acme.mail.test> napisał(a):"),
    # Outlook header block in Cyrillic (От/Отправлено/Кому/Тема); the sign-off stays in the reply
    ("outlook_reply_block_ru.eml", "Добрый день,\n\nоплату отправили сегодня.\n\nС уважением,\nИван", "",
     "________________________________"),
    # Spanish Outlook header block in HTML only
    ("outlook_html_reply_block_es.eml", "Me viene bien el martes.", "",
     "De: Acme Support <support@acme.mail.test>"),
    # contact block after the sign-off: sign-off and name in the reply, the block is the signature
    ("gmail_reply_contact_block_en.eml",
     "Hello,\n\nThe quote looks fine, please go ahead.\n\nKind regards,\nMaria",
     "Maria Rossi | Purchasing Manager\nRossi Interiors Ltd, 12 Mill Lane, Leeds LS1 4AB\nT +44 113 496 0000\n"
     "www.rossi-interiors.example",
     "On Mon, 12 Feb 2024 at 08:00, Acme Support <support@acme.mail.test> wrote:"),
    # Portuguese mobile footer; the typed sign-off stays
    ("ios_reply_footer_pt.eml", "Pode ser amanhã às 10h.\n\nBien à vous, João", "Enviado do meu iPhone",
     "> Em 11/02/2024, às 16:00, Acme Support <support@acme.mail.test> escreveu:"),
]


@pytest.mark.parametrize(("fixture", "reply", "signature", "quote_first_line"), REPLIES)
def test_reply_signature_quote(parsed, fixture, reply, signature, quote_first_line):
    msg = parsed[fixture]
    assert (msg.reply_text, msg.signature) == (reply, signature)
    assert msg.quoted_text.split("\n")[0] == quote_first_line


FORWARDS = [
    # header block itself >-quoted (MailMate)
    ("mailmate_forward_quoted_header_en.eml", Address("Nora Hale", "nora@customer.example"), "Broken hinge",
     "The cabinet hinge broke after a week.", "Forwarding the customer's report.", datetime(2024, 2, 10, 8, 15)),
    # Outlook FR (TR:) around a Gmail forward: innermost original, its own Re: kept, the forwarders' prefixes gone
    ("outlook_gmail_nested_forward_fr.eml", Address("Rita Leroy", "rita@locataire.example"), "Re: Fuite",
     "Le robinet fuit toujours.", "Pour suite à donner.", None),
    # Thunderbird forward in Russian: separator and labels from the language table
    ("thunderbird_forward_ru.eml", Address("Ольга Смирнова", "olga@klient.example"), "Доставка",
     "Когда будет доставка?", "Посмотрите, пожалуйста.", None),
]


@pytest.mark.parametrize(("fixture", "sender", "subject", "text", "note", "date"), FORWARDS)
def test_forwards(parsed, fixture, sender, subject, text, note, date):
    fwd = parsed[fixture].forward
    assert fwd is not None
    assert (fwd.sender, fwd.subject, fwd.text, fwd.note) == (sender, subject, text, note)
    if date is not None:
        assert fwd.date.replace(tzinfo=None) == date


def test_plain_bounce_reports_the_address_an_alias_was_expanded_from(parsed):
    bounce = parsed["postfix_plain_bounce_expanded.eml"].bounce
    assert (bounce.permanent, bounce.temporary, bounce.original_message_id) == \
        (("john@customer.example",), (), "<orig1@acme.mail.test>")
    assert parsed["postfix_plain_bounce_expanded.eml"].sender == \
        Address("Mail Delivery System", "mailer-daemon@mx.acme.mail.test")


def test_delay_quoted_in_the_returned_message_is_not_a_bounce_of_that_address(parsed):
    bounce = parsed["bounce_with_quoted_delay.eml"].bounce
    assert (bounce.permanent, bounce.temporary) == (("ana@customer.example",), ())


def test_from_without_address_falls_back_to_reply_to(parsed):
    msg = parsed["webshop_from_without_address.eml"]
    assert msg.sender == Address("Hana Kim", "hana@customer.example")
    assert "missing-from" in msg.defects


def test_winmail_dat_is_unpacked(parsed):
    atts = parsed["outlook_winmail_tnef_de.eml"].attachments
    assert [(a.filename, a.content_type, a.flags) for a in atts] == [
        ("winmail.dat", "application/ms-tnef", ("tnef",)), ("quote.txt", "text/plain", ("from-tnef",))]
    assert atts[1].data == b"Price: 120 EUR\n"


def test_persons_out_of_office_subject_is_not_an_auto_reply(parsed):
    assert parsed["person_subject_out_of_office_en.eml"].auto_reply is None


def test_undeclared_cp1252_and_nbsp_subject(parsed):
    msg = parsed["outlook_undeclared_cp1252_fr.eml"]
    assert msg.reply_text == "Bonjour,\n\nJ'ai bien reçu la facture, merci."
    assert msg.subject == "Re:\u00a0Facture\u00a0n°\u00a012"


def test_language_table_covers_twenty_languages_and_scripts():
    table = lexicon.table()
    assert len(table) >= 20
    for code, entry in table.items():
        assert {"wrote", "forward", "labels", "mobile"} <= set(entry), code
        assert {"from", "sent", "to", "subject"} <= set(entry["labels"]), code
    scripts = {"ru": "От", "el": "Από", "ja": "差出人", "zh": "发件人", "ko": "보낸 사람", "ar": "من", "he": "מאת"}
    for code, word in scripts.items():
        assert word in table[code]["labels"]["from"]
        assert lexicon.label_of(f"{word}: x") == ("from", "x")
