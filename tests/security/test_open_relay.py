"""Never an open relay: every trick for a foreign recipient is refused by the real server, at RCPT."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

from sqlalchemy import func, select

from postroom.app import App
from postroom.service import Service
from postroom.storage.tables import InboundMessage
from postroom.testing import RawSMTP

FOREIGN = [
    "victim@example.com",
    "VICTIM@EXAMPLE.COM",
    "victim@example.com.",
    "@acme.mail.test:victim@example.com",  # source route
    "@acme.mail.test,@relay.example:victim@example.com",
    "victim%example.com@acme.mail.test",  # percent hack
    "inbox%acme.mail.test@example.com",
    "victim!example.com@acme.mail.test",  # bang path
    "example.com!victim@acme.mail.test",
    '"victim@example.com"@acme.mail.test',  # quoted local part
    '"inbox"@example.com',
    "victim@example.com@acme.mail.test",
    "inbox@acme.mail.test@example.com",
    "inbox@acme.mail.test.example.com",  # our name as a prefix of theirs
    "inbox@acme.mail.test.evil",
    "inbox@evilmail.test",
    "inbox@mail.test.evil",
    "inbox@mail.test",  # the bare mail domain is not a tenant
    "inbox@xn--cme-8cd.mail.test",  # "аcme" with a Cyrillic а
    "inbox@\u0430cme.mail.test",
    "inbox@acme.mail.tеst",  # Cyrillic е in the mail domain
    "inbox@acme.mail.test\u200b",  # zero-width space (nameprep would map it onto acme)
    "inbox@\uff41cme.mail.test",  # full-width a
    "inbox@ex\u00e4mple.com",
    "inbox@[127.0.0.1]",  # address literal
    "inbox@127.0.0.1",
    "inbox@localhost",
    "inbox@acme.mail.test\x00.example.com",
    "inbox@.mail.test",
    "inbox@acme..mail.test",
    "postmaster@example.com",
    "postmaster",
    "inbox",
    "<>",
    "inbox@acme.mail.test>,<victim@example.com",
    "inbox@acme.mail.test victim@example.com",
    "inbox@acme.mail.test;victim@example.com",
    "inbox(comment)@example.com",
]


def test_every_foreign_or_tricky_recipient_is_refused(service: Service, app: App) -> None:
    """One connection, every trick in turn (RSET between): each RCPT refused, DATA never starts."""
    accepted: list[str] = []
    client = RawSMTP(service.smtp_port)
    try:
        client.cmd("EHLO relay-test.example")
        for address in FOREIGN:
            assert client.cmd("MAIL FROM:<spammer@example.net> SMTPUTF8")[0] == 250
            code, reply = client.cmd(f"RCPT TO:<{address}>")
            if code < 500:
                accepted.append(f"{address!r}: {reply}")
            assert client.cmd("DATA")[0] == 503, "DATA must not start without an accepted recipient"
            assert client.cmd("RSET")[0] == 250
    finally:
        client.close()
    assert accepted == []
    with app.session() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0


def test_own_addresses_in_any_case_are_accepted(smtp: Callable[[], smtplib.SMTP]) -> None:
    """The control: the same connection accepts what is ours, so the refusals above are policy, not breakage."""
    client = smtp()
    client.ehlo("relay-test.example")
    client.docmd("MAIL", "FROM:<someone@example.net>")
    for address in ("inbox@acme.mail.test", "INBOX@ACME.MAIL.TEST", "support@Acme.Mail.Test",
                    "reply+abc123@globex.mail.test", "postmaster@acme.mail.test"):
        assert client.docmd("RCPT", f"TO:<{address}>")[0] == 250, address


def test_one_foreign_recipient_among_ours_is_refused_alone(smtp: Callable[[], smtplib.SMTP], app: App) -> None:
    client = smtp()
    refused = client.sendmail("a@example.net", ["inbox@acme.mail.test", "victim@example.com"],
                              b"Subject: x\r\nMessage-ID: <r1@example.net>\r\n\r\nhi\r\n")
    assert set(refused) == {"victim@example.com"} and refused["victim@example.com"][0] == 550
    with app.session() as session:
        rcpts = session.scalars(select(InboundMessage.rcpt_tos)).all()
    assert rcpts == [["inbox@acme.mail.test"]]
