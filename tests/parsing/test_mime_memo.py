"""mime.load's parts remember their content type; every change must make them forget it."""

from __future__ import annotations

import email
import email.policy

import pytest

from postroom.parsing import mime

RAW = (b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
       b"--b1\nContent-Type: text/plain; charset=\"iso-8859-1\"; format=flowed\n\nHi\n"
       b"--b1\nContent-Type: application/pdf; name*=utf-8''r%C3%A9sum%C3%A9.pdf\n"
       b"Content-Disposition: attachment; filename=\"cv.pdf\"\n\n%PDF-\n--b1--\n")

CHANGES = [
    lambda m: m.set_type("text/html"),
    lambda m: m.set_param("charset", "utf-8"),
    lambda m: m.del_param("charset"),
    lambda m: m.replace_header("Content-Type", "text/x-other; charset=koi8-r"),
    lambda m: m.__delitem__("Content-Type"),
    lambda m: m.__setitem__("Content-Type", "image/png; name=x.png"),
    lambda m: m.add_header("Content-Type", "text/csv", charset="ascii"),
    lambda m: (m.__delitem__("Content-Type"), m.get_content_type(), m.set_default_type("message/rfc822")),
    lambda m: m.set_boundary("b2"),
    lambda m: m.set_payload("x", "utf-8"),
]


def answers(msg: email.message.Message) -> list:
    parts = list(msg.walk())
    return [(p.get_content_type(), p.get_param("charset"), p.get_param("name"), p.get_param("boundary"),
             p.get_param("filename", "none", header="content-disposition"), p.get_filename(), p.get_boundary(),
             p.get_content_charset()) for p in parts]


@pytest.mark.parametrize("change", range(len(CHANGES)))
@pytest.mark.parametrize("index", [0, 1, 2])
def test_changes_are_seen(change, index):
    ours, _ = mime.load(RAW)
    plain = email.message_from_bytes(RAW, policy=email.policy.compat32)
    assert answers(ours) == answers(plain)  # answers remembered before the change
    CHANGES[change](list(ours.walk())[index])
    CHANGES[change](list(plain.walk())[index])
    assert answers(ours) == answers(plain)
