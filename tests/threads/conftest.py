"""Helpers for threading tests: deliver mail over real SMTP, wait for the pipeline, stage outbound mail.

Mail "from an outbound notification" gets its reply address and Message-ID
from the threading functions the outbound side will use (sending is not ours).
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postroom.messageids import make_message_id
from postroom.service import Service
from postroom.statuses import TERMINAL
from postroom.storage import (
    conversation_actions,
    conversation_views,
    staff,
    staff_messages,
    threading_lookup,
)
from postroom.storage.tables import InboundMessage
from postroom.testing import make_eml, wait_until

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "emails"
TENANT_DOMAIN = "acme.mail.test"
INBOX = f"inbox@{TENANT_DOMAIN}"
CUSTOMER = "jean.dupont@gmail.example"


def render(name: str, **values: str) -> bytes:
    """A fixture template with {{NAME}} placeholders filled (CRLF kept)."""
    text = (FIXTURES / name).read_bytes().decode("utf-8")
    values.setdefault("DATE", format_datetime(datetime.now(UTC)))
    values.setdefault("MESSAGE_ID", make_msgid(domain="client.example"))
    values.setdefault("BODY", "Merci, c'est noté.")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"unfilled placeholder in {name}"
    return text.encode("utf-8")


@dataclass
class Outbound:
    message_id: str
    reply_address: str
    references: tuple[str, ...]
    subject: str


@dataclass
class Threads:
    service: Service
    smtp: Callable[[], smtplib.SMTP]
    tenant_ids: dict[str, int]
    sent: int = 0

    @property
    def app(self):  # type: ignore[no-untyped-def]
        return self.service.app

    def deliver(self, raw: bytes, rcpts: list[str] | None = None, mail_from: str = CUSTOMER, *,
                rows: int = 1, client: smtplib.SMTP | None = None) -> None:
        """Send over SMTP and wait until every inbound row is finished (``rows`` new rows expected)."""
        (client or self.smtp()).sendmail(mail_from, rcpts or [INBOX], raw)
        self.sent += rows
        self.settle()

    def settle(self) -> None:
        def finished() -> bool:
            with self.app.session() as session:
                total = session.scalar(select(func.count()).select_from(InboundMessage))
                done = session.scalar(select(func.count()).select_from(InboundMessage)
                                      .where(InboundMessage.status.in_(TERMINAL)))
            return total >= self.sent and done == total

        wait_until(finished, timeout=90)  # a lost broker message is swept up again within ~45 s
        with self.app.session() as session:
            failed = session.scalars(select(InboundMessage.last_error).where(InboundMessage.status != "done")).all()
        assert not failed, failed

    def start(self, subject: str = "Remise des clés", sender: str = f"Jean Dupont <{CUSTOMER}>") -> int:
        """A customer's first mail to inbox@; returns the new conversation's id."""
        message_id = make_msgid(domain="gmail.example")
        self.deliver(make_eml(sender=sender, to=INBOX, subject=subject, message_id=message_id))
        return self.conversation_of(message_id)

    def conversation_of(self, message_id: str) -> int:
        with self.app.session() as session:
            row = conversation_views.message_row_by_header(session, self.tenant_ids["acme"], message_id)
            assert row is not None, f"{message_id} was not stored"
            found = conversation_views.get_message(session, row).conversation_id
        assert found is not None, f"{message_id} is in the unsorted inbox"
        return found

    def message(self, message_id: str, tenant: str = "acme") -> conversation_views.MessageView:
        with self.app.session() as session:
            row = conversation_views.message_row_by_header(session, self.tenant_ids[tenant], message_id)
            assert row is not None, f"{message_id} was not stored"
            return conversation_views.get_message(session, row)

    def conversation(self, conversation_id: int) -> conversation_views.ConversationSummary:
        with self.app.session() as session:
            return conversation_views.get_conversation(session, conversation_id)[0]

    def messages(self, conversation_id: int) -> list[conversation_views.MessageView]:
        with self.app.session() as session:
            return conversation_views.get_conversation(session, conversation_id)[1]

    def inbox(self, tenant: str = "acme") -> list[conversation_views.MessageView]:
        with self.app.session() as session:
            return conversation_views.list_inbox(session, tenant)

    def events(self, conversation_id: int | None = None, tenant: str = "acme") -> list[conversation_views.EventView]:
        with self.app.session() as session:
            return conversation_views.events(session, self.tenant_ids[tenant], conversation_id=conversation_id)

    def staff_reply(self, conversation_id: int, tenant: str = "acme") -> Outbound:
        """What the outbound side stores and sends for a staff reply: Message-ID, reply address, References."""
        domain = f"{tenant}.mail.test"
        with self.app.session() as session:
            user = staff.user_by_email(session, tenant, "sophie@acme-builders.example") or staff.add_user(
                session, tenant, email="sophie@acme-builders.example", name="Sophie Martin")
            headers = staff_messages.thread_headers(session, conversation_id)
            message_id = make_message_id(domain)
            staff_messages.add_staff_message(session, conversation_id, user.id, text="La remise est le 15 mars.",
                                            message_id=message_id, in_reply_to=[headers.in_reply_to or ""],
                                            references=headers.references)
            address = staff_messages.reply_address(session, conversation_id, domain)
        return Outbound(message_id, address, (*headers.references, message_id), headers.subject)

    def set_status(self, conversation_id: int, status: str) -> None:
        with self.app.session() as session:
            conversation_actions.set_status(session, conversation_id, status)

    def set_policy(self, tenant: str = "acme", **changes: object) -> None:
        with self.app.session() as session:
            threading_lookup.set_threading_settings(session, tenant, **changes)


@pytest.fixture
def threads(service: Service, smtp: Callable[[], smtplib.SMTP], tenant_ids: dict[str, int]) -> Threads:
    return Threads(service, smtp, tenant_ids)


@pytest.fixture
def template() -> Callable[..., bytes]:
    return render
