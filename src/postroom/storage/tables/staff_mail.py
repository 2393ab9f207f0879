"""Per staff member: whether notification events are also mailed to them, and how far mailing has got."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from postroom.storage.tables.base import Base, utcnow


class StaffMailSetting(Base):
    """``mode``: off, immediate or digest (every ``every_minutes``).

    ``after_event_id`` is the cursor: the user's events with a higher id are
    still to be mailed. It starts at the newest event when mail is turned on
    (no backlog is mailed) and moves in the same transaction that queues the
    mail, so a retried or concurrent run never mails an event twice.
    """

    __tablename__ = "staff_mail_settings"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(10), default="off")
    every_minutes: Mapped[int] = mapped_column(Integer, default=60)
    after_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_mailed_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
