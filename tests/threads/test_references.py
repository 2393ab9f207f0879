"""Lenient Message-ID list parsing: commas, folding, missing brackets, comments, truncation."""

from __future__ import annotations

import pytest

from postroom.messageids import canonical, make_message_id, parse_ids, thread_references


@pytest.mark.parametrize(("value", "expected"), [
    ("<a@x> <b@y>", ("<a@x>", "<b@y>")),
    ("<a@x>,<b@y>, <c@z>", ("<a@x>", "<b@y>", "<c@z>")),            # Exchange / iOS
    ("<a@x>\r\n\t<b@y>\r\n <c@z>", ("<a@x>", "<b@y>", "<c@z>")),    # folded
    ("a@x b@y", ("<a@x>", "<b@y>")),                                  # no angle brackets
    ("<a@x> b@y", ("<a@x>", "<b@y>")),                                # mixed
    ("<a@x> (from Jane at 10:00)", ("<a@x>",)),                       # comment after the id
    ("<a@x> <b@y", ("<a@x>", "<b@y>")),                               # truncated last id
    ("<a@x> <a@x>", ("<a@x>",)),                                      # duplicates
    ("< a@x >", ("<a@x>",)),
    ("<a@\r\n x>", ("<a@x>",)),                                       # folded inside an id
    ("", ()),
    (None, ()),
])
def test_parse_ids(value: str | None, expected: tuple[str, ...]) -> None:
    assert parse_ids(value) == expected


def test_canonical() -> None:
    assert canonical("a@x") == canonical("<a@x>") == canonical(" <a@x> ") == "<a@x>"
    assert canonical("has space@x") is None
    assert canonical("") is None


def test_thread_references_keep_root_and_recent() -> None:
    ids = [f"<{i}@x>" for i in range(30)]
    kept = thread_references(ids, keep=5)
    assert kept == ("<0@x>", "<26@x>", "<27@x>", "<28@x>", "<29@x>")
    assert thread_references(ids[:3]) == tuple(ids[:3])


def test_make_message_id_is_unique_and_canonical() -> None:
    first, second = make_message_id("Acme.Mail.Test"), make_message_id("acme.mail.test")
    assert first != second and first.endswith("@acme.mail.test>") and canonical(first) == first
