"""forwarded.forwarded_metadata must return exactly what email-forward-parser's entry point returns,
for a forward of one level.

It re-composes the library's steps with shortcuts (needle pre-checks, no-op preprocessing skipped);
these tests catch a shortcut that changes a result, including after a library upgrade. With several
levels it differs on purpose (issue 17): it reads the first level whole (the library jumps to the
last separator and cuts the body at the next "Subject:"), and from_text decides how far in to go.
"""

from __future__ import annotations

import re

import pytest
from emailforwardparser import forward_parser, regexs
from emailforwardparser.forward_parser import get_forwarded_metadata
from tests.parsing.conftest import FIXTURES

from postroom.parsing import ParseFailed, forward_original, forwarded, parse

SEPARATOR_BODIES = [
    "See below.\n\n---------- Forwarded message ---------\nFrom: Ann <ann@example.com>\nDate: Mon, 8 Jan 2024\n"
    "Subject: Hi\nTo: bob@example.com\n\nHello there\n",
    "FYI\n\nBegin forwarded message:\n\n> From: Ann <ann@example.com>\n> Subject: Hi\n> Date: 8 January 2024\n"
    "> To: Bob <bob@example.com>\n\n> Hello\n",
    "Note\n\n________________________________\nFrom: Ann <ann@example.com>\nSent: Monday\nTo: Bob\n"
    "Subject: Hi\n\nBody\n",
    "Zie onder\n\n-------- Doorgestuurd bericht --------\nOnderwerp: Hoi\nDatum: 8 jan 2024\nVan: Ann <ann@ex.nl>\n"
    "Aan: bob@ex.nl\n\nTekst\n",
    "Am 08.01.2024 um 10:00 schrieb \"Ann\" <ann@example.de>:\n\nText\n",
    # What the library's preprocessing changes: a soft hyphen and a zero-width space inside the separator,
    # control characters, a byte order mark, no-break spaces, CRLF, an RFC 2047 word (also a broken one).
    "x\n\nBegin for\u00adwarded mes\u200bsage:\n\nFrom: Ann <ann@example.com>\nSubject: Hi\n\nHello\n",
    "x\x0b\n\n---------- Forwarded\x1f message ---------\nFrom: ann@example.com\n\nHi\n",
    "\ufeffx\xa0\r\n\r\n---------- Forwarded message ---------\r\nFrom: ann@example.com\xa0\r\n\r\nHi\r\n",
    "=?utf-8?q?Begin_forwarded_message:?=\n\nFrom: ann@example.com\nSubject: Hi\n\nHello\n",
    "=?utf-8?b?not base64!?= and =?x-unknown-charset?q?abc?=\n",
    "From: Ann <ann@example.com>\nSent: Monday\nTo: Bob\nSubject: Hi\n\nNo separator, header block only\n",
    "Just a reply.\n\nOn Mon, 8 Jan 2024, Ann <ann@example.com> wrote:\n> earlier\n",
    "",
]


def fixture_texts() -> list[tuple[str, str]]:
    out = []
    for path in sorted(FIXTURES.glob("*.eml")):
        try:
            msg = parse(path.read_bytes())
        except ParseFailed:
            continue
        out.append((msg.text, msg.subject))
        if msg.forward is not None:
            out.append((msg.forward.text, ""))
    return out


def outcome(fn, body: str, subject: str | None):
    try:
        return fn(body, subject)
    except Exception as exc:  # the library raises on some RFC 2047 words: then both must raise alike
        return type(exc)


@pytest.mark.parametrize("subject", [None, "Fwd: Hi", "Re: Hi", "Hi", "=?utf-8?q?TR=3A_Hi?="])
@pytest.mark.parametrize("body", SEPARATOR_BODIES)
def test_crafted_bodies_same_as_library(body, subject):
    assert outcome(forwarded.forwarded_metadata, body, subject) == outcome(get_forwarded_metadata, body, subject)


def test_fixture_texts_same_as_library():
    checked = 0
    for text, subject in fixture_texts():
        for subj in (subject or None, None, "Fwd: x"):
            ours = forwarded.forwarded_metadata(text, subj)
            if ours.forwarded and forwarded.forwarded_metadata(ours.email.body, "Fwd: x").email.body:
                continue  # a forward of a forward: read level by level here
            assert ours == get_forwarded_metadata(text, subj), (text[:60], subj)
            checked += 1
    assert checked > 100


def test_every_separator_has_a_needle():
    """Without a needle a separator regex runs on every body: the shortcut would be lost silently."""
    assert all(needle for _, needle in forwarded._SEPARATORS)
    assert any(needle == "_" * 32 for _, needle in forwarded._SEPARATORS)


def original_blocks() -> list[tuple[str, str]]:
    """(text, body) pairs as the forward reader hands them to ``parse_original_email``, plus the raw texts."""
    pairs = [(body, body) for body in SEPARATOR_BODIES]
    for text, _ in fixture_texts():
        pairs.append((text, text))
        found = forwarded._parse_body(text, True)
        if found.email:
            pairs.append((found.email, found.body))
    return pairs


def test_original_fields_same_as_library():
    """forward_original runs only the regexes whose needle is in the text; every field comes out the same."""
    for text, body in original_blocks():
        assert forward_original.parse_original_email(text, body) == forward_parser.parse_original_email(text, body), \
            text[:60]


REGEX_LISTS = [getattr(regexs, name) for name in dir(regexs)
               if isinstance(getattr(regexs, name), list) and isinstance(getattr(regexs, name)[0], re.Pattern)]


def test_a_regex_skipped_for_want_of_its_needle_does_not_match():
    """The needle is sound: where it is missing (crafted bodies, the fixtures' forward blocks) the regex finds
    nothing, so skipping it changes nothing."""
    skipped = 0
    blocks = {forwarded._parse_body(text, True).email for text, _ in fixture_texts()} - {""}
    for regexes in REGEX_LISTS:
        for rx, needle in forward_original.table(regexes):
            for text in [*SEPARATOR_BODIES, *blocks]:
                if needle is not None and needle not in text:
                    assert rx.search(text) is None, (rx.pattern, needle)
                    skipped += 1
    assert skipped > 1000


@pytest.mark.parametrize(("pattern", "expected"), [
    (r"(?m)^(\*?\s*From\s?:\*?(.+))$", "From"),  # inside a group
    (r"a(?:bc(?:de))f", "abcdef"),  # nested plain groups are one run
    (r"ab(?i:cd)ef", "ab"),  # a group that changes flags breaks the run
    (r"x_{3,}y", "x___"),  # the longest literal run; on a tie the first
    (r"(?:ab|cd)", None),
    (r"(?i)hello", None),
])
def test_needle(pattern, expected):
    assert forward_original.needle(re.compile(pattern)) == expected


def test_the_original_from_regexes_have_needles():
    """Without needles the From regexes run on every block and body: the shortcut would be lost silently."""
    assert all(needle for _, needle in forward_original.table(regexs.ORIGINAL_FROM))
    assert all(needle for _, needle in forward_original.table(regexs.ORIGINAL_TO))
