"""Response models: what the OpenAPI schema promises and what the API returns."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from postroom.storage.inbound import InboundRecord, QueueLine


class Me(BaseModel):
    tenant: str
    key_id: int


class Inbound(BaseModel):
    id: int
    tenant: str
    received_at: datetime
    updated_at: datetime
    stage: str
    status: str
    attempts: int
    last_error: str | None
    source: str
    size: int
    mail_from: str
    rcpt_tos: list[str]
    message_id: str | None
    subject: str | None
    sender: str | None

    @classmethod
    def of(cls, record: InboundRecord) -> Inbound:
        return cls(**{name: getattr(record, name) for name in cls.model_fields})


class QueueShapeLine(BaseModel):
    stage: str
    status: str
    count: int
    oldest: datetime | None
    oldest_age_seconds: int | None
    ages: dict[str, int]

    @classmethod
    def of(cls, line: QueueLine, ages: dict[str, int], now: datetime | None = None) -> QueueShapeLine:
        now = now or datetime.now(UTC)
        return cls(stage=line.stage, status=line.status, count=line.count, oldest=line.oldest,
                   oldest_age_seconds=int((now - line.oldest).total_seconds()) if line.oldest else None, ages=ages)


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
