"""Mail to inbox@ is trusted as a staff forward only from staff with passing, aligned authentication;
anything else still reaches the unsorted inbox, flagged ``quarantine`` with the reason kept."""

from __future__ import annotations

import smtplib
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from postroom.service import Service
from postroom.storage import conversation_views, staff
from postroom.storage.tables import InboundMessage
from postroom.testing import wait_until

STAFF = "sophie.martin@acme-builders.example"
TRUSTED_MX = "mx.mail.test"
PASSING = (f"Authentication-Results: {TRUSTED_MX}; dkim=pass header.d=acme-builders.example; "
           "spf=pass smtp.mailfrom=acme-builders.example; dmarc=pass header.from=acme-builders.example\r\n")
FAILING = f"Authentication-Results: {TRUSTED_MX}; dkim=fail header.d=acme-builders.example; dmarc=fail\r\n"


def _forward(message_id: str, sender: str = STAFF, results: str = "") -> bytes:
    return (f"{results}From: Sophie Martin <{sender}>\r\nTo: inbox@acme.mail.test\r\n"
            f"Subject: Fwd: Parking\r\nMessage-ID: {message_id}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease file this.\r\n\r\n"
            "---------- Forwarded message ---------\r\nFrom: Jean Dupont <jean.dupont@gmail.example>\r\n"
            "Date: Sun, 22 Nov 2026 at 09:12\r\nSubject: Parking\r\n"
            f"To: Sophie Martin <{STAFF}>\r\n"
            "\r\nCan I get a second parking space?\r\n").encode()


@pytest.fixture
def gateway(settings, tenant_ids):
    svc = Service(settings.replace(trusted_authserv_ids=TRUSTED_MX, dkim_verify=False)).start()
    with svc.app.session() as session:
        staff.add_user(session, "acme", email=STAFF, name="Sophie Martin")
    yield svc
    svc.stop()


def _deliver(svc: Service, raw: bytes, message_id: str):
    with smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10) as client:
        client.sendmail(STAFF, ["inbox@acme.mail.test"], raw)

    def stored():
        with svc.app.session() as session:
            row = conversation_views.message_row_by_header(session, svc.app.directory().slugs["acme"], message_id)
            return conversation_views.get_message(session, row) if row else None

    message = wait_until(stored)
    with svc.app.session() as session:
        results = session.scalar(select(InboundMessage.auth_results).where(InboundMessage.message_id == message_id))
    return message, results["staff_forward"]


@pytest.mark.parametrize(("sender", "results", "verdict", "reason"), [
    (STAFF, PASSING, "trusted", "staff address with passing, aligned authentication"),
    (STAFF, FAILING, "quarantine", "authentication failed"),
    (STAFF, "", "quarantine", "no passing SPF, DKIM or DMARC check"),
    ("mallory@acme-builders.example", PASSING, "quarantine", "not one of the tenant's staff addresses"),
])
def test_forwards_are_trusted_or_quarantined(gateway, sender, results, verdict, reason):
    message_id = make_msgid(domain="acme-builders.example")
    message, vetted = _deliver(gateway, _forward(message_id, sender, results), message_id)
    assert (vetted["verdict"], reason in vetted["reason"]) == (verdict, True)
    assert message.conversation_id is None and message.matched_via == "forward"
    assert message.author_email == "jean.dupont@gmail.example"
    assert ("quarantine" in message.flags) == (verdict == "quarantine")
