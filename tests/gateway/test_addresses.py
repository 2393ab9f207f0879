"""RCPT classification: which tenant and local part, or why the address is not ours."""

from __future__ import annotations

import pytest

from postroom.addresses import TenantDirectory
from postroom.gateway.addresses import Recipient, Refusal, classify

DIRECTORY = TenantDirectory(mail_domain="mail.example", slugs={"acme": 1, "globex": 2},
                            domains={"support.acme-builders.be": 1}, aliases=frozenset({(1, "sales")}))


@pytest.mark.parametrize(("address", "expected"), [
    ("inbox@acme.mail.example", Recipient("inbox@acme.mail.example", 1, "acme", "inbox")),
    ("<INBOX@Acme.Mail.Example.>", Recipient("inbox@acme.mail.example", 1, "acme", "inbox")),
    ("reply+k7f3q@globex.mail.example", Recipient("reply+k7f3q@globex.mail.example", 2, "globex", "reply", "k7f3q")),
    ("sales@acme.mail.example", Recipient("sales@acme.mail.example", 1, "acme", "alias")),
    ("inbox@support.acme-builders.be", Recipient("inbox@support.acme-builders.be", 1, "acme", "inbox")),
    ("postmaster@acme.mail.example", Recipient("postmaster@acme.mail.example", 1, "acme", "postmaster")),
])
def test_our_addresses(address, expected):
    assert classify(address, DIRECTORY) == expected


@pytest.mark.parametrize(("address", "refusal"), [
    ("someone@gmail.com", Refusal.RELAY_DENIED),
    ("inbox@mail.example.attacker.com", Refusal.RELAY_DENIED),
    ("inbox@acme.mail.example.com", Refusal.RELAY_DENIED),
    ("inbox@mail.example", Refusal.RELAY_DENIED),
    ("inbox@nope.mail.example", Refusal.UNKNOWN_TENANT),
    ("sales@globex.mail.example", Refusal.UNKNOWN_MAILBOX),
    ("reply+@acme.mail.example", Refusal.UNKNOWN_MAILBOX),
    ("@relay.example:victim@gmail.com", Refusal.BAD_ADDRESS),
    ("victim%gmail.com@acme.mail.example", Refusal.BAD_ADDRESS),
    ('"victim@gmail.com"@acme.mail.example', Refusal.BAD_ADDRESS),
    ("victim@gmail.com@acme.mail.example", Refusal.BAD_ADDRESS),
    ("victim!gmail.com@acme.mail.example", Refusal.BAD_ADDRESS),
    ("", Refusal.BAD_ADDRESS),
])
def test_everything_else_is_refused(address, refusal):
    assert classify(address, DIRECTORY) == refusal
