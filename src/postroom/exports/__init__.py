"""Conversation exports (mbox and PDF) for the CLI and the API, over a chosen period.

``collect`` gathers what both formats need in a fixed number of queries: the
messages in the period, the raw bytes of customer mail, and the recipients each
bounce reported, so a bounce is shown as a delivery failure and not as a
customer writing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.orm import Session

from postroom.errors import PostroomError
from postroom.storage import exports as store
from postroom.storage.blobs import BlobStore
from postroom.storage.conversation_views import MessageView
from postroom.storage.exports import FailedDelivery

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_moment(value: str, *, end: bool = False) -> datetime:
    """``2024-12-03`` or an ISO date-time (``2024-12-03T10:00Z``); naive times are UTC.

    A bare date as the end of a period means the whole of that day.
    """
    text = value.strip()
    try:
        if _DATE_ONLY.fullmatch(text):
            day = datetime.combine(date.fromisoformat(text), time(), UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise PostroomError(f"{value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[+HH:MM]") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Period:
    """Messages whose time (Date header, else arrival) is at or after ``since`` and before ``until``."""

    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> Period:
        period = cls(parse_moment(since) if since else None, parse_moment(until, end=True) if until else None)
        if period.since and period.until and period.since >= period.until:
            raise PostroomError(f"the period is empty: --since {since} is not before --until {until}")
        return period

    def describe(self) -> str:
        """The period as the PDF heading states it; empty for the whole conversation."""
        if self.since is None and self.until is None:
            return ""
        since = self.since.strftime("%Y-%m-%d %H:%M UTC") if self.since else "the start"
        until = self.until.strftime("%Y-%m-%d %H:%M UTC") if self.until else "now"
        return f"Messages from {since} to before {until}"

    def contains(self, moment: datetime) -> bool:
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)


@dataclass(frozen=True)
class ExportItem:
    view: MessageView
    raw: bytes | None = None
    failure: FailedDelivery | None = None

    @property
    def when(self) -> datetime:
        return self.view.sent_at or self.view.created_at

    @property
    def is_bounce(self) -> bool:
        return "bounce" in self.view.flags


def collect(session: Session, blobs: BlobStore, tenant_id: int, messages: Sequence[MessageView],
            period: Period = Period(), *, raw: bool = True) -> list[ExportItem]:
    """The conversation's messages in the period, with raw bytes of received mail when ``raw``."""
    chosen = [m for m in messages if period.contains(m.sent_at or m.created_at)]
    keys = store.raw_keys(session, tenant_id, [m.inbound_id for m in chosen if m.inbound_id]) if raw else {}
    failures = store.failed_deliveries(session, tenant_id,
                                       [(m.id, m.inbound_id) for m in chosen if "bounce" in m.flags])
    return [ExportItem(m, blobs.get(keys[m.inbound_id]) if m.inbound_id in keys else None, failures.get(m.id))
            for m in chosen]
