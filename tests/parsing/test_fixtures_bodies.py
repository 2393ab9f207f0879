"""Reply trimming, HTML and attachments on real-client fixtures."""

from __future__ import annotations

import hashlib

import pytest

from postroom.model import Address
from postroom.parsing import parse

REPLIES = [
    ("gmail_reply_en.eml", "Thanks, the parcel arrived this morning.\nCan you send the invoice again?",
     "Chris Customer\nCustomer Ltd.", "On Fri, 5 Jan 2024 at 16:30, Acme Support <support@acme.mail.test> wrote:"),
    # issue 17: the sign-off and the name typed under it are part of the reply (no contact block follows)
    ("outlook_reply_fr.eml", "Bonjour,\n\nC’est d’accord pour 120 € par mois.\n\nCordialement,\nValérie Dupré", "",
     "________________________________"),
    ("apple_reply_nl.eml", "Dinsdag past prima, graag vóór 12 uur.", "Verzonden vanaf mijn iPhone",
     "> Op 9 jan. 2024 om 16:45 heeft Acme Support <support@acme.mail.test> het volgende geschreven:"),
    ("thunderbird_reply_de.eml", "Hallo,\n\ndie Rechnung ist bezahlt. Bitte um Bestätigung.",
     "Jörg Müller\nKunde GmbH, Hauptstraße 1, Berlin", "Am 10.01.24 um 09:00 schrieb Acme Support:"),
    ("ios_reply_de.eml", "Montag um 10 Uhr passt.", "Von meinem iPhone gesendet",
     "> Am 11.01.2024 um 18:03 schrieb Acme Support <support@acme.mail.test>:"),
    ("outlook_reply_nl.eml", "Akkoord, we gaan ermee verder.\n\nMet vriendelijke groet,\nPieter Jansen", "",
     "Van: Acme Support <support@acme.mail.test>"),
    ("outlook_reply_de.eml", "Danke, die Lieferung ist angekommen.\n\nGruß\nKlaus", "",
     "-----Ursprüngliche Nachricht-----"),
    ("mutt_bottompost_en.eml", "No, it says the link expired.", "",
     "On Wed, Jan 17, 2024 at 09:00:00AM +0000, Acme Support wrote:"),
    ("yahoo_reply_en.eml", "Yes please refund to my card.\n\nEve", "",
     "On Thursday, January 18, 2024, 10:00:00 AM GMT, Acme Support <support@acme.mail.test> wrote:"),
    ("outlook_web_reply_en.eml", "Here is the screenshot:\n\nscreenshot\n\nFrank", "",
     "From: Acme Support <support@acme.mail.test>"),
]


@pytest.mark.parametrize(("fixture", "reply", "signature", "quote_first_line"), REPLIES)
def test_reply_signature_quote(parsed, fixture, reply, signature, quote_first_line):
    msg = parsed[fixture]
    assert msg.reply_text == reply
    assert msg.signature == signature
    assert msg.quoted_text.split("\n")[0] == quote_first_line


def test_text_from_html_when_no_plain_part(parsed):
    msg = parsed["yahoo_reply_en.eml"]
    assert msg.text == ("Yes please refund to my card.\n\nEve\n\nOn Thursday, January 18, 2024, 10:00:00 AM GMT, "
                        "Acme Support <support@acme.mail.test> wrote:\n\nShall we refund you?")


def test_html_is_sanitised_and_keeps_cid_images(parsed):
    html = parsed["outlook_web_reply_en.eml"].html
    assert '<img src="cid:image001.png@01DA4A00.12345670" alt="screenshot">' in html
    for bad in ("<script", "alert(", "onclick", "tracker.example", "<style"):
        assert bad not in html


ATTACHMENTS = [
    ("thunderbird_attachments_en.eml", 0, "été 2024.pdf", "application/pdf", "application/pdf", ()),
    ("thunderbird_attachments_en.eml", 1, "winmail.dat", "application/ms-tnef", "application/vnd.ms-tnef",
     ("tnef",)),
    ("thunderbird_attachments_en.eml", 2, "invoice.pdf", "application/pdf", "application/x-msdownload",
     ("executable", "type-mismatch")),
    ("thunderbird_attachments_en.eml", 3, "notes.txt", "text/plain", None, ()),
    ("outlook_web_reply_en.eml", 0, "image001.png", "image/png", "image/png", ()),
    # the whole (single-part) message is the attachment
    ("scanner_pdf_only_en.eml", 0, "scan_0416.pdf", "application/pdf", "application/pdf", ()),
    # raw GB2312 bytes in the name, charset declared only on the message: decoded with that charset
    ("outlookexpress_gb2312_8bit_name_zh.eml", 0, "报价单.xls", "application/octet-stream",
     "application/x-ole-storage", ()),
]


@pytest.mark.parametrize(("fixture", "index", "filename", "ctype", "detected", "flags"), ATTACHMENTS)
def test_attachments(parsed, fixture, index, filename, ctype, detected, flags):
    att = parsed[fixture].attachments[index]
    assert (att.filename, att.content_type, att.detected_type, att.flags) == (filename, ctype, detected, flags)
    assert att.size == len(att.data)
    assert att.sha256 == hashlib.sha256(att.data).hexdigest()


def test_single_part_attachment_leaves_no_text(parsed):
    msg = parsed["scanner_pdf_only_en.eml"]
    assert (msg.text, len(msg.attachments), msg.attachments[0].size) == ("", 1, 77)


def test_gb2312_is_read_as_gb18030(parsed):
    # GB2312's A1AA is an em dash in every mail client (GBK/GB18030), a horizontal bar in Python's gb2312
    assert parsed["outlookexpress_gb2312_8bit_name_zh.eml"].text == "您好，附件是本月的报价单——请查收。\n"


def test_iso_2022_jp_with_windows_circled_digits():
    jis = "１都３県".encode("iso2022_jp")
    raw = (b"From: a@example.jp\nTo: b@example.jp\nSubject: x\nDate: Mon, 1 Jan 2024 10:00:00 +0900\n"
           b"MIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-2022-JP\n\n"
           b"\x1b$B\x2d\x21" + jis[3:] + b"\n\x1b(I\x36\x40\x1b(B\n")
    assert parse(raw).text == "①１都３県\nｶﾀ\n"


def test_inline_image_has_content_id(parsed):
    att = parsed["outlook_web_reply_en.eml"].attachments[0]
    assert att.inline
    assert att.content_id == "image001.png@01DA4A00.12345670"
    assert att.data.startswith(b"\x89PNG")


def test_path_is_stripped_from_filename(parsed):
    att = parsed["thunderbird_attachments_en.eml"].attachments[3]
    assert att.data == b"secret notes"
    assert not att.inline


FORWARDS = [
    ("gmail_forward_en.eml", Address("Chris Customer", "chris@customer.example"),
     (Address("", "sam.staff@acme.mail.test"),), (Address("Pat Partner", "pat@customer.example"),),
     "2024-01-21T18:30:00", "Broken kettle", "My kettle stopped working after two days.\nInvoice attached.",
     "Please open a ticket for this customer."),
    ("outlook_forward_fr.eml", Address("Luc Bernard", "luc.bernard@client.example.fr"),
     (Address("Sophie Martin", "sophie.martin@acme.mail.test"),), (Address("Compta", "compta@client.example.fr"),),
     "2024-01-22T18:05:00", "Demande de remboursement", "Bonjour, je souhaite être remboursé.", "Pour info."),
    ("apple_forward_de.eml", Address("Ute Kraus", "ute.kraus@kunde.example.de"),
     (Address("Tim Vogel", "tim.vogel@acme.mail.test"),), (), "2024-01-23T20:15:00", "Reklamation",
     "Der Stuhl ist beschädigt angekommen.", "Bitte bearbeiten."),
    ("thunderbird_forward_nl.eml", Address("Kees Visser", "kees@klant.example.nl"),
     (Address("Lotte Smit", "lotte.smit@acme.mail.test"),), (), "2024-01-24T09:30:00+01:00",
     "Vraag over factuur", "Klopt het bedrag op factuur 88?", "Zie hieronder."),
    ("yahoo_forward_en.eml", Address("Shop", "orders@shop.example"),
     (Address("Eve Example", "eve.example@yahoo.example"),), (), "2024-01-29T08:00:00", "Order confirmation",
     "Your order 5521 is confirmed.", "This is the order I mean."),
    ("outlook_forward_attached_en.eml", Address("Olivia Owner", "olivia@customer.example"),
     (Address("Sam Staff", "sam.staff@acme.mail.test"),), (), "2024-01-25T16:45:00+00:00", "Contract question",
     "When does my contract end?\n", "See attached mail from the customer."),
    ("gmail_forward_nested_en.eml", Address("Rita Renter", "rita@tenant.example"),
     (Address("Max Manager", "max@acme.mail.test"),), (), "2024-01-27T21:10:00", "Leaking tap",
     "The kitchen tap is leaking.", "FYI, see the original below."),
]


@pytest.mark.parametrize(("fixture", "sender", "to", "cc", "date", "subject", "text", "note"), FORWARDS)
def test_forwards(parsed, fixture, sender, to, cc, date, subject, text, note):
    fwd = parsed[fixture].forward
    assert fwd is not None
    assert (fwd.sender, fwd.to, fwd.cc) == (sender, to, cc)
    assert fwd.date.isoformat() == date
    assert (fwd.subject, fwd.text, fwd.note) == (subject, text, note)


def test_inline_forward_carries_outer_attachments(parsed):
    assert [a.filename for a in parsed["gmail_forward_en.eml"].forward.attachments] == ["invoice-1042.pdf"]


@pytest.mark.parametrize("fixture", ["gmail_reply_en.eml", "outlook_reply_fr.eml", "outlook_reply_de.eml",
                                     "mutt_bottompost_en.eml"])
def test_replies_are_not_forwards(parsed, fixture):
    assert parsed[fixture].forward is None
