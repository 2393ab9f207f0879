"""storage/text.storable_fields: every string of a parsed message made storable, the same objects when clean."""

from __future__ import annotations

from datetime import UTC, datetime

from postroom.model import Address, Attachment, Forward, ParsedMessage
from postroom.storage.text import storable_fields

WHEN = datetime(2026, 1, 2, tzinfo=UTC)


def test_a_clean_message_comes_back_as_the_same_object():
    parsed = ParsedMessage(message_id="<a@b>", in_reply_to=(), subject="Hi", date=WHEN,
                           sender=Address("Ann", "ann@example.com"),
                           headers=(("Subject", "Hi"), ("To", "x@example.com")), references=("<r@x>",))
    assert storable_fields(parsed) is parsed


def test_nul_and_lone_surrogates_become_replacement_characters_at_any_depth():
    attachment = Attachment(filename="a\udce9.txt", content_type="text/plain", size=3, sha256="0" * 64,
                            data=b"\x00\xff")
    forward = Forward(sender=Address("Bo\x00b", "bob@example.com"), to=(), cc=(), date=None, subject="s",
                      text="t", attachments=(attachment,), note="")
    parsed = ParsedMessage(message_id="<a@b>", in_reply_to=(), subject="caf\udce9", date=WHEN, sender=None,
                           headers=(("X-A", "\x00"), ("X-B", "ok")),
                           references=["<r@x>", "<\udcff@x>"], forward=forward)
    clean = storable_fields(parsed)
    assert clean.subject == "caf\ufffd"
    assert clean.headers == (("X-A", "\ufffd"), ("X-B", "ok"))
    assert clean.headers[1] is parsed.headers[1]  # unchanged items are kept as they are
    assert clean.references == ["<r@x>", "<\ufffd@x>"] and type(clean.references) is list
    assert clean.forward.sender.name == "Bo\ufffdb"
    assert clean.forward.attachments[0].filename == "a\ufffd.txt"
    assert clean.forward.attachments[0].data == b"\x00\xff"  # bytes stay as they are
    assert clean.date is WHEN
