"""Subject keys: reply/forward prefixes of many languages and clients, tags, brackets."""

from __future__ import annotations

import pytest

from postroom.subjects import find_references, is_reply_subject, subject_key, tag_subject

BASE = "Keys for unit 12B"


@pytest.mark.parametrize("subject", [
    f"Re: {BASE}",
    f"RE: {BASE}",
    f"RE : {BASE}",                 # French typography
    f"Re[2]: {BASE}",
    f"Re^3: {BASE}",
    f"Re(2): {BASE}",
    f"Re:{BASE}",
    f"Fwd: {BASE}",
    f"Fw: {BASE}",
    f"FW: RE: {BASE}",
    f"TR: {BASE}",                  # French Transfert
    f"Réf. : {BASE}",
    f"AW: {BASE}",                  # German Antwort
    f"WG: AW: {BASE}",              # German Weitergeleitet
    f"Antw: {BASE}",                # Dutch Antwoord
    f"Doorst: {BASE}",              # Dutch Doorsturen
    f"SV: {BASE}",                  # Scandinavian Svar
    f"VS: {BASE}",                  # Finnish Vastaus
    f"RV: {BASE}",                  # Spanish Reenviado
    f"RES: ENC: {BASE}",            # Portuguese Resposta / Encaminhado
    f"R: I: {BASE}",                # Italian Risposta / Inoltro
    f"Odp: PD: {BASE}",             # Polish
    f"YNT: {BASE}",                 # Turkish
    f"Απ: {BASE}",                  # Greek
    f"Отв: {BASE}",                 # Russian
    f"回复：{BASE}",                  # Chinese with a full-width colon
    f"転送: {BASE}",                  # Japanese
    f"[Fwd: {BASE}]",               # bracketed forward
    f"{BASE} (fwd)",
    f"Re: Re: re: RE: {BASE}",
    f"Re: {BASE} [#A1B2C3]",        # our own reference tag
    f"[EXTERNAL] Re: {BASE}",
    "  re:   keys   FOR unit 12b  ",
])
def test_prefixes_and_tags_are_removed(subject: str) -> None:
    assert subject_key(subject) == subject_key(BASE) == "keys for unit 12b"


@pytest.mark.parametrize("subject", [
    "Reply needed for unit 12B",    # a word starting with "re" is not a prefix
    "Revision of the floor plan",
    "Fwd planning meeting",         # no colon, no prefix
    "Trouble with the heating",
])
def test_words_that_look_like_prefixes_are_kept(subject: str) -> None:
    assert subject_key(subject) == subject.casefold()
    assert not is_reply_subject(subject)


def test_subject_made_only_of_prefixes_is_empty() -> None:
    assert subject_key("Re: Fwd: ") == ""


def test_reference_tags() -> None:
    assert tag_subject("Re: Heating [#ZZZZZZ]", "A1B2C3") == "Re: Heating [#A1B2C3]"
    assert find_references("Re: Heating [#a1b2c3] and [#B00000]") == ("A1B2C3", "B00000")
    assert find_references("Heating [#A1B2] short") == ()
