"""Every stored time is an aware UTC instant: a Date with an offset arrives over SMTP and leaves the API in UTC."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import make_msgid

from fastapi.testclient import TestClient
from tests.web.conftest import auth

from postroom.service import Service
from postroom.storage import conversation_views, inbound
from postroom.testing import make_eml, wait_until

PLUS_TWO = timezone(timedelta(hours=2))


def _done(service: Service, count: int) -> bool:
    with service.app.session() as session:
        return sum(r.status == "done" for r in inbound.list_inbound(session)) >= count


def _message(service: Service, tenant_id: int, mid: str) -> conversation_views.MessageView:
    with service.app.session() as session:
        row = conversation_views.message_row_by_header(session, tenant_id, mid)
        assert row is not None
        return conversation_views.get_message(session, row)


def _forward(original_date: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Sophie <sophie@acme.example>", "inbox@acme.mail.test"
    msg["Subject"], msg["Message-ID"] = "Fwd: Keys", make_msgid(domain="acme.example")
    msg.set_content("---------- Forwarded message ---------\nFrom: Jean <jean@example.com>\n"
                    f"Date: {original_date}\nSubject: Keys\nTo: <sophie@acme.example>\n\nWhere are my keys?\n")
    return msg.as_bytes()


def test_a_date_with_an_offset_is_stored_and_served_in_utc(service: Service, smtp: Callable[[], smtplib.SMTP],
                                                           tenant_ids: dict[str, int], client: TestClient,
                                                           keys: dict[str, str]) -> None:
    mid = make_msgid(domain="example.com")
    raw = make_eml(message_id=mid, date=datetime(2024, 12, 3, 12, 0, tzinfo=PLUS_TWO))
    with smtp() as client_smtp:
        client_smtp.sendmail("jean@example.com", ["inbox@acme.mail.test"], raw)
        client_smtp.sendmail("sophie@acme.example", ["inbox@acme.mail.test"],
                             _forward("Tue, 3 Dec 2024 12:00:00 -0500"))
    wait_until(lambda: _done(service, 2))
    stored = _message(service, tenant_ids["acme"], mid)
    assert stored.sent_at == datetime(2024, 12, 3, 10, 0, tzinfo=UTC)
    assert stored.sent_at.utcoffset() == timedelta(0)
    served = client.get(f"/api/v1/messages/{stored.id}", headers=auth(keys["acme"])).json()
    assert served["sent_at"] in ("2024-12-03T10:00:00Z", "2024-12-03T10:00:00+00:00")
    forwarded = [m for m in conversations_inbox(service) if m.forward]
    assert [m.sent_at for m in forwarded] == [datetime(2024, 12, 3, 17, 0, tzinfo=UTC)]


def conversations_inbox(service: Service) -> list[conversation_views.MessageView]:
    with service.app.session() as session:
        return conversation_views.list_inbox(session, "acme")
