"""Operator API (global, operator token): queue shape, inbound rows, retry/drop/hold/release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.queue import operations
from postroom.queue.operations import Dispatch
from postroom.storage import inbound
from postroom.web.auth import require_operator
from postroom.web.deps import RowId, Status, TenantSlug, db_session, get_app, get_dispatch
from postroom.web.errors import ERROR_RESPONSES
from postroom.web.schemas import Inbound, QueueShapeLine

router = APIRouter(prefix="/api/operator", tags=["operator"], dependencies=[Depends(require_operator)],
                   responses={**ERROR_RESPONSES, 403: ERROR_RESPONSES[401] | {"description": "Operator access off"}})

Action = Literal["retry", "drop", "hold", "release"]


def queue_shape(session: Session, tenant: str | None) -> list[QueueShapeLine]:
    now = datetime.now(UTC)
    ages = inbound.age_buckets(session, tenant, now=now)
    return [QueueShapeLine.of(line, ages.get((line.stage, line.status), {}), now)
            for line in inbound.summary(session, tenant)]


@router.get("/queue", response_model=list[QueueShapeLine])
def queue(tenant: TenantSlug = None, session: Session = Depends(db_session)) -> list[QueueShapeLine]:
    """Counts per stage and status, split by age (<5m, <1h, <1d, older) as qshape does."""
    return queue_shape(session, tenant)


@router.get("/inbound", response_model=list[Inbound])
def list_inbound(session: Session = Depends(db_session), tenant: TenantSlug = None,
                 status: Status = None,
                 since_minutes: Annotated[int | None, Query(ge=1, le=10 * 365 * 24 * 60)] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Inbound]:
    """Inbound messages of every tenant, newest first."""
    since = datetime.now(UTC) - timedelta(minutes=since_minutes) if since_minutes else None
    return [Inbound.of(r) for r in inbound.list_inbound(session, status=status, tenant=tenant, since=since,
                                                         limit=limit)]


@router.get("/inbound/{inbound_id}", response_model=Inbound)
def show_inbound(inbound_id: RowId, session: Session = Depends(db_session)) -> Inbound:
    return Inbound.of(inbound.get_inbound(session, inbound_id))


@router.post("/inbound/{inbound_id}/{action}", response_model=Inbound)
def act(inbound_id: RowId, action: Action, app: App = Depends(get_app),
        dispatch: Dispatch | None = Depends(get_dispatch)) -> Inbound:
    """retry (back to pending, re-dispatched), drop, hold or release one message."""
    return Inbound.of(operations.apply(app, inbound_id, action, dispatch))
