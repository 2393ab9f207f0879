"""Dates: RFC 5322 Date headers and the free-form dates clients write in quote headers."""

from __future__ import annotations

import email.utils
import re
from datetime import datetime

from dateutil import parser as dateutil_parser

_MONTHS = {
    # French
    "janvier": "jan", "janv": "jan", "février": "feb", "févr": "feb", "fevrier": "feb", "mars": "mar",
    "avril": "apr", "avr": "apr", "mai": "may", "juin": "jun", "juillet": "jul", "juil": "jul",
    "août": "aug", "aout": "aug", "septembre": "sep", "sept": "sep", "octobre": "oct", "novembre": "nov",
    "décembre": "dec", "déc": "dec", "decembre": "dec",
    # Dutch
    "januari": "jan", "februari": "feb", "maart": "mar", "mei": "may", "juni": "jun", "juli": "jul",
    "augustus": "aug", "oktober": "oct", "okt": "oct", "mrt": "mar",
    # German
    "januar": "jan", "jänner": "jan", "februar": "feb", "märz": "mar", "mär": "mar", "dezember": "dec",
    "dez": "dec",
}
_NOISE = re.compile(
    r"\b(?:lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|lun|mer|jeu|ven|sam|dim|"
    r"maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag|ma|di|wo|do|vr|za|zo|"
    r"montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag|mo|mi|fr|sa|so|"
    r"at|à|om|um|uhr|le|op|h)\b\.?",
    re.I,
)


def parse_header_date(value: str | None) -> datetime | None:
    """An RFC 5322 date, or None when missing or unreadable."""
    if not value or not value.strip():
        return None
    try:
        return email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_loose(value: str | None) -> datetime | None:
    """A date as written in a forward/quote header, in EN/FR/NL/DE; None if unreadable."""
    if not value or not value.strip():
        return None
    found = parse_header_date(value)
    if found is not None:
        return found
    text = value.lower().replace(",", " ")
    text = re.sub(r"(\d{1,2})\s*h\s*(\d{2})", r"\1:\2", text)
    words = [_MONTHS.get(w.strip("."), w) for w in text.split()]
    text = _NOISE.sub(" ", " ".join(words))
    try:
        return dateutil_parser.parse(text, fuzzy=True, dayfirst=not re.search(r"[a-z]{3}\s+\d", text))
    except (ValueError, OverflowError, TypeError):
        return None
