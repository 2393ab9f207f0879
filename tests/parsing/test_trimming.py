"""Reply trimming on bodies as the four languages' clients write them."""

from __future__ import annotations

import pytest

from postroom.parsing.html import to_text
from postroom.parsing.trimming import trim

CASES = [
    # Gmail EN, header wrapped over two lines
    ("Sounds good.\n\nOn Mon, 8 Jan 2024 at 10:15, Sam Staff <\nsam@acme.test> wrote:\n> Shall we?\n",
     "Sounds good.", ""),
    # Gmail FR
    ("Parfait, merci.\n\nLe lun. 8 janv. 2024 à 10:15, Sam Staff <sam@acme.test> a écrit :\n> Ça vous va ?\n",
     "Parfait, merci.", ""),
    # Gmail NL
    ("Prima.\n\nOp ma 8 jan 2024 om 10:15 schreef Sam Staff <sam@acme.test>:\n> Akkoord?\n", "Prima.", ""),
    # Gmail DE
    ("Passt.\n\nAm Mo., 8. Jan. 2024 um 10:15 Uhr schrieb Sam Staff <sam@acme.test>:\n> Passt das?\n",
     "Passt.", ""),
    # Outlook EN block
    ("Yes.\n\nFrom: Sam Staff <sam@acme.test>\nSent: Monday, January 8, 2024 10:15 AM\nTo: Chris\n"
     "Subject: Question\n\nOK?\n", "Yes.", ""),
    # Outlook FR block
    ("Oui.\n\nDe : Sam Staff <sam@acme.test>\nEnvoyé : lundi 8 janvier 2024 10:15\nÀ : Chris\nObjet : Question\n",
     "Oui.", ""),
    # Outlook NL block without address
    ("Ja.\n\nVan: Sam Staff\nVerzonden: maandag 8 januari 2024 10:15\nAan: Chris\nOnderwerp: Vraag\n", "Ja.", ""),
    # Outlook DE block with bold labels (plain-text rendering of HTML)
    ("Ja.\n\n*Von:* Sam Staff\n*Gesendet:* Montag, 8. Januar 2024 10:15\n*An:* Chris\n*Betreff:* Frage\n",
     "Ja.", ""),
    # mobile signatures in four languages
    ("Ok!\n\nSent from my iPhone\n\n> On 8 Jan 2024, at 10:15, Sam <sam@acme.test> wrote:\n> Hi\n", "Ok!",
     "Sent from my iPhone"),
    ("D'accord.\n\nEnvoyé de mon iPhone\n", "D'accord.", "Envoyé de mon iPhone"),
    ("Goed.\n\nVerzonden vanaf mijn iPhone\n", "Goed.", "Verzonden vanaf mijn iPhone"),
    ("Gut.\n\nVon meinem iPhone gesendet\n", "Gut.", "Von meinem iPhone gesendet"),
    ("Thanks.\n\nGet Outlook for Android\n", "Thanks.", "Get Outlook for Android"),
    # -- separator
    ("See you.\n-- \nSam Staff\nAcme\n", "See you.", "Sam Staff\nAcme"),
    # a dash rule inside the text is no signature
    ("Item    Price\n-------------\nChair   10\n", "Item    Price\n-------------\nChair   10", ""),
    # nothing but a quote stays the reply
    ("> only a quote\n", "> only a quote", ""),
    # bottom posting after a > block, no header
    ("> Is it fixed?\n\nYes, since Monday.\n", "Yes, since Monday.", ""),
    # a reply line mentioning "wrote" is not a quote header
    ("I wrote: nothing yet.\nMore text.\n", "I wrote: nothing yet.\nMore text.", ""),
]


@pytest.mark.parametrize(("body", "reply", "signature"), CASES)
def test_trim(body, reply, signature):
    got = trim(body)
    assert (got.reply, got.signature) == (reply, signature)


def test_quoted_text_keeps_the_history():
    got = trim("Yes.\n\nOn Mon, 8 Jan 2024 at 10:15, Sam <sam@acme.test> wrote:\n> Shall we?\n")
    assert got.quoted == "On Mon, 8 Jan 2024 at 10:15, Sam <sam@acme.test> wrote:\n> Shall we?"


@pytest.mark.parametrize(
    ("html", "reply"),
    [
        ('<div dir="ltr">Yes<div class="gmail_quote">On Mon wrote:<blockquote>old</blockquote></div></div>',
         "Yes"),
        ('<div>Oui</div><div id="divRplyFwdMsg"><b>De :</b> Sam</div><div>ancien</div>', "Oui"),
        ('<div>Ja</div><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
         "<p><b>Von:</b> Sam</p></div><p>alt</p>", "Ja"),
        ('<div>Prima</div><blockquote type="cite">Op 8 jan. heeft Sam geschreven:<br>oud</blockquote>', "Prima"),
        ('<div>Fine</div><div class="moz-cite-prefix">On 08/01/2024 Sam wrote:</div><blockquote>old</blockquote>',
         "Fine"),
    ],
)
def test_html_client_quotes(html, reply):
    assert trim(to_text(html, mark_quotes=True)).reply == reply


def test_signature_below_a_quote_is_ours():
    got = trim("Agreed, ship it.\n\nOn Tue, 9 Jan 2024 at 08:00, Sam <sam@acme.test> wrote:\n> Ship it?\n\n-- \n"
               "Robin Reed\nReed & Co\n")
    assert got.reply == "Agreed, ship it."
    assert got.quoted == "On Tue, 9 Jan 2024 at 08:00, Sam <sam@acme.test> wrote:\n> Ship it?"
    assert got.signature == "Robin Reed\nReed & Co"


def test_dash_line_inside_a_header_block_quote_belongs_to_the_quoted_mail():
    body = ("Done.\n\nDa: Tracker Bot\nData: lunedì 12 febbraio 2024 10:00\nA: Robin Reed\nOggetto: Task #9\n\n"
            "Task #9 was closed.\n\n--\nThis notice was scanned by a mail filter.\n")
    got = trim(body)
    assert (got.reply, got.signature) == ("Done.", "")
    assert got.quoted.endswith("Task #9 was closed.\n\n--\nThis notice was scanned by a mail filter.")
