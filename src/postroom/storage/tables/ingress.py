"""Configuration and progress of the ingresses other than SMTP: IMAP mailboxes and webhook secrets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from postroom.storage.tables.base import Base, utcnow


class Mailbox(Base):
    """One IMAP folder fetched for a tenant, with its cursor, its lease and its last outcome.

    ``uidvalidity``/``last_uid`` say what has been stored: the cursor only moves
    after the rows are committed, so a crash re-reads (and dedup absorbs) rather
    than skips. ``lease_owner``/``lease_until`` keep two ``serve`` processes from
    fetching the same folder at once.
    """

    __tablename__ = "mailboxes"
    __table_args__ = (UniqueConstraint("tenant_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(1000))  # imaps://user@host:port/Folder, no secret in it
    auth: Mapped[str] = mapped_column(String(16), default="password")  # password or xoauth2
    secret: Mapped[str] = mapped_column(Text, default="")  # the password, or the command printing a token
    after: Mapped[str] = mapped_column(String(200), default="seen")  # seen, none or move:Folder
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    backlog: Mapped[int] = mapped_column(default=0)  # messages past the cursor at the last look
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(default=None)
    failures: Mapped[int] = mapped_column(default=0)  # consecutive, reset by a success
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSecret(Base):
    """The secret a provider's webhook proves itself with, per tenant and provider (mailgun, postmark, sendgrid)."""

    __tablename__ = "webhook_secrets"
    __table_args__ = (UniqueConstraint("tenant_id", "provider"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
