"""The language table (languages.yaml) compiled once into the lookups the parsing stage matches with.

Words live in the data file so a language is added without touching code; this module only turns
them into bounded patterns (literal alternations, anchored, with bounded gaps: no backtracking)
and dictionary lookups. Wording is a hint: trimming and forward reading decide by structure first.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import yaml

#: A date-like token: a year, a clock time, or a CJK date. Used as structure, not wording.
DATE = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)|(?<!\d)\d{1,2}:\d{2}(?!\d)|\d{1,4}\s*[年월]")
#: An address, bare or in angle brackets.
ADDRESS = re.compile(r"[^\s@<>\"'(),;:]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_MAX_LABEL = 30


@cache
def table() -> dict[str, dict[str, Any]]:
    """The raw table, language code -> entries."""
    text = resources.files("postroom.parsing").joinpath("languages.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _words(key: str) -> list[str]:
    found = {w for lang in table().values() for w in lang.get(key, ())}
    return sorted(found, key=len, reverse=True)


def _alternation(words: list[str]) -> str:
    """Literal words, longest first, spaces matching any run of blanks; Latin words keep word edges."""
    parts = []
    for word in words:
        body = r"\s+".join(re.escape(w) for w in word.split())
        parts.append(rf"(?<!\w){body}(?!\w)" if word[-1].isascii() and word[0].isascii() else body)
    return "|".join(parts)


@cache
def wrote() -> re.Pattern[str]:
    """An attribution verb ("wrote", "a écrit", "написал(а)", "写道" …)."""
    return re.compile(_alternation(_words("wrote")), re.I)


@cache
def forward_separator() -> re.Pattern[str]:
    """A forward or "original message" separator line, dashes optional, in any listed language."""
    return re.compile(rf"^\s*[-=_*\s]{{0,40}}(?:{_alternation(_words('forward'))})\s*[:：]?\s*[-=_*\s]{{0,40}}$", re.I)


@cache
def labels() -> dict[str, str]:
    """Header-block label (lower case) -> its role (from, sent, to, cc, subject, reply_to)."""
    out: dict[str, str] = {}
    for lang in table().values():
        for role, words in lang.get("labels", {}).items():
            for word in words:
                out.setdefault(word.lower(), role)
    return out


def label_of(line: str) -> tuple[str, str] | None:
    """(role, value) when ``line`` is "Label: value" with a label from the table; a dict lookup, no regex."""
    head, sep, value = _split_label(line)
    if not sep:
        return None
    role = labels().get(head)
    return (role, value.strip()) if role else None


def generic_label(line: str) -> bool:
    """Any "Label: value" shape (one to three words before a colon), for header blocks in unknown languages."""
    head, sep, value = _split_label(line)
    return bool(sep and head and value.strip() and len(head.split()) <= 3 and not any(c.isdigit() for c in head)
                and "://" not in line[: len(head) + 4])


def _split_label(line: str) -> tuple[str, str, str]:
    text = line.strip().lstrip("*_ ")
    cut = min((i for i in (text.find(":", 0, _MAX_LABEL + 6), text.find("：", 0, _MAX_LABEL + 6)) if i > 0),
              default=-1)
    if cut < 0:
        return "", "", ""
    head = " ".join(text[:cut].strip("*_ \t").split()).lower()
    if len(head) > _MAX_LABEL:
        return "", "", ""
    return head, ":", text[cut + 1 :].lstrip("*_ \t")


@cache
def mobile_footer() -> re.Pattern[str]:
    """A mobile/app footer line ("Sent from my iPhone", "iPhoneから送信" …); "*" in the table is a short gap."""
    parts = []
    for phrase in _words("mobile"):
        parts.append(r"\s+".join(".{1,40}".join(re.escape(p) for p in w.split("*")) for w in phrase.split()))
    return re.compile(rf"^\s*(?:{'|'.join(parts)})\s*[.!]?\s*$", re.I)


@cache
def subject_prefix() -> re.Pattern[str]:
    """One reply or forward prefix at the start of a subject, with its colon ("Re:", "TR :", "AW[2]:")."""
    words = _words("reply") + _words("forward_prefix")
    return re.compile(rf"\s*(?:{_alternation(words)})\s*(?:\[\d{{1,4}}\]|\(\d{{1,4}}\))?\s*[:：]", re.I)


@cache
def forward_prefix() -> re.Pattern[str]:
    """One forward prefix ("Fwd:", "TR:", "WG:", "转发:") at the start of a subject."""
    return re.compile(rf"\s*(?:{_alternation(_words('forward_prefix'))})\s*(?:\[\d{{1,4}}\])?\s*[:：]", re.I)


@cache
def reply_prefix() -> re.Pattern[str]:
    """One reply prefix ("Re:", "AW:", "SV:", "回复:") at the start of a subject. A word that is a forward prefix
    in another language ("VS:" replies in Finnish, forwards in Danish) is left out: the body decides then."""
    forwards = {w.lower() for w in _words("forward_prefix")}
    words = [w for w in _words("reply") if w.lower() not in forwards]
    return re.compile(rf"\s*(?:{_alternation(words)})\s*(?:\[\d{{1,4}}\])?\s*[:：]", re.I)


@cache
def closings() -> frozenset[str]:
    """Sign-offs, lower case without punctuation."""
    return frozenset(w.lower() for w in _words("closing"))


def closing_of(line: str) -> str | None:
    """The sign-off a line opens with ("Kind regards," / "Bien à vous, Luc"), or None."""
    text = line.strip()
    if not text or len(text) > 80:
        return None
    head = text.split(",", 1)[0].rstrip(".!;: ").strip().lower()
    head = " ".join(head.split())
    return head if head in closings() else None


@cache
def autoreply_subject() -> re.Pattern[str]:
    """A subject that opens with an autoresponder phrase in any listed language."""
    return re.compile(rf"^\s*(?:{_alternation(_words('autoreply'))})", re.I)
