"""Reply tokens never attach mail they should not: forged, truncated, replayed across tenants, or used by
someone other than the contact they were issued to. Real SMTP, real pipeline, real threading."""

from __future__ import annotations

import base64
import os
import smtplib
from collections.abc import Callable
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select, update

from postroom.app import App
from postroom.service import Service
from postroom.statuses import TERMINAL
from postroom.storage import conversation_views, staff_messages
from postroom.storage.tables import InboundMessage, Tenant
from postroom.testing import make_eml, wait_until

CUSTOMER = "jean.dupont@gmail.example"
OTHER_CUSTOMER = "paul.martin@yahoo.example"
ATTACKER = "mallory@attacker.example"


class Mail:
    def __init__(self, app: App, smtp: Callable[[], smtplib.SMTP], tenant_ids: dict[str, int]) -> None:
        self.app, self.smtp, self.tenant_ids, self.sent = app, smtp, tenant_ids, 0

    def deliver(self, sender: str, rcpt: str, subject: str = "Remise des clés", **headers: str) -> str:
        """Send one mail over SMTP, wait until the pipeline finished it; its Message-ID."""
        message_id = make_msgid(domain=sender.split("@")[1])
        self.smtp().sendmail(sender, [rcpt], make_eml(sender=sender, to=rcpt, subject=subject,
                                                      message_id=message_id, headers=headers))
        self.sent += 1

        def finished() -> bool:
            with self.app.session() as session:
                done = session.scalar(select(func.count()).select_from(InboundMessage)
                                      .where(InboundMessage.status.in_(TERMINAL)))
            return done >= self.sent

        wait_until(finished, timeout=30)
        return message_id

    def conversation_of(self, message_id: str, tenant: str = "acme") -> tuple[int | None, tuple[str, ...]]:
        with self.app.session() as session:
            row = conversation_views.message_row_by_header(session, self.tenant_ids[tenant], message_id)
            assert row is not None, f"{message_id} was not stored for {tenant}"
            view = conversation_views.get_message(session, row)
        return view.conversation_id, tuple(view.flags)

    def start(self, sender: str = CUSTOMER, tenant: str = "acme") -> tuple[int, str, str]:
        """A customer's first mail: (conversation id, its reply token address, the first Message-ID)."""
        first = self.deliver(sender, f"inbox@{tenant}.mail.test")
        conversation, _ = self.conversation_of(first, tenant)
        assert conversation is not None
        with self.app.session() as session:
            address = staff_messages.reply_address(session, conversation, f"{tenant}.mail.test")
        return conversation, address, first


@pytest.fixture
def mail(service: Service, app: App, smtp: Callable[[], smtplib.SMTP], tenant_ids: dict[str, int]) -> Mail:
    return Mail(app, smtp, tenant_ids)


def _token(address: str) -> str:
    return address.split("@")[0].removeprefix("reply+")


def test_forged_tokens_never_attach(mail: Mail) -> None:
    conversation, address, first = mail.start()
    forged = [base64.b32encode(os.urandom(17)).decode().rstrip("=").lower(), "a" * 28, "0" * 28,
              _token(address)[:-2] + ("zz" if not _token(address).endswith("zz") else "yy")]
    for token in forged:
        # the worst case: the real customer, the same subject, In-Reply-To pointing into the conversation
        mid = mail.deliver(CUSTOMER, f"reply+{token}@acme.mail.test", "Re: Remise des clés", **{"In-Reply-To": first})
        assert mail.conversation_of(mid) == (None, ("forged_token",)), token


@pytest.mark.parametrize("cut", [1, 3, 8, 20])
def test_truncated_tokens_never_attach(mail: Mail, cut: int) -> None:
    conversation, address, _ = mail.start()
    mid = mail.deliver(CUSTOMER, f"reply+{_token(address)[:-cut]}@acme.mail.test", "Re: Remise des clés")
    attached, flags = mail.conversation_of(mid)
    assert attached is None and "forged_token" in flags


def test_tokens_replayed_across_tenants_never_attach(mail: Mail) -> None:
    acme_conversation, acme_address, _ = mail.start(CUSTOMER, "acme")
    globex_conversation, globex_address, _ = mail.start(CUSTOMER, "globex")
    into_acme = mail.deliver(CUSTOMER, f"reply+{_token(globex_address)}@acme.mail.test")
    into_globex = mail.deliver(CUSTOMER, f"reply+{_token(acme_address)}@globex.mail.test")
    assert mail.conversation_of(into_acme, "acme") == (None, ("forged_token",))
    assert mail.conversation_of(into_globex, "globex") == (None, ("forged_token",))


def test_a_token_used_by_another_sender_by_default_never_attaches(mail: Mail) -> None:
    """strict_senders is on by default: a stranger holding a valid token lands in the inbox, flagged."""
    conversation, address, _ = mail.start(CUSTOMER)
    mail.start(OTHER_CUSTOMER)
    for sender in (OTHER_CUSTOMER, ATTACKER):
        mid = mail.deliver(sender, address, "Re: Remise des clés")
        attached, flags = mail.conversation_of(mid)
        assert attached is None and "foreign_sender" in flags, sender


def test_a_token_used_by_another_sender_when_not_strict_is_always_flagged(mail: Mail) -> None:
    """With strict_senders off a CC'd colleague's reply may join, but never silently: it carries
    foreign_sender, and it can never land in the other contact's own thread."""
    with mail.app.session() as session:
        session.execute(update(Tenant).where(Tenant.slug == "acme")
                        .values(settings={"threading": {"strict_senders": False}}))
    conversation, address, _ = mail.start(CUSTOMER)
    other_conversation, _, _ = mail.start(OTHER_CUSTOMER)
    mid = mail.deliver(ATTACKER, address, "Re: Remise des clés")
    attached, flags = mail.conversation_of(mid)
    assert (attached, flags) == (conversation, ("foreign_sender",))
    assert attached != other_conversation
