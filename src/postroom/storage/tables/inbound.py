"""The durable record of every message received: one row per tenant recipient."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from postroom.storage.tables.base import BIG_ID, Base, utcnow


class InboundMessage(Base):
    """Raw bytes live in the blob store under ``sha256``; this row is the record.

    ``stage`` says where the message is in the pipeline, ``status`` whether it
    waits, runs, finished or failed there. Unique on (tenant, sha256) so a
    retried SMTP transaction or a re-ingested file is stored once.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256"),
        Index("ix_inbound_messages_status_stage", "status", "stage"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16), default="smtp")
    mail_from: Mapped[str] = mapped_column(String(512), default="")
    rcpt_tos: Mapped[list] = mapped_column(default=list)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stage: Mapped[str] = mapped_column(String(16), default="parsing")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_token: Mapped[int | None] = mapped_column(BigInteger, default=None)  # fences the claimant's writes
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    message_id: Mapped[str | None] = mapped_column(String(998), default=None)
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    sender: Mapped[str | None] = mapped_column(String(512), default=None)
    parsed: Mapped[dict | None] = mapped_column(default=None)
    auth_results: Mapped[dict | None] = mapped_column(default=None)  # gateway.auth.AuthResults as JSON
    routing: Mapped[dict | None] = mapped_column(default=None)  # rules stage: fired rules, disposition, actions
