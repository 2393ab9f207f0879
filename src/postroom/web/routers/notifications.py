"""Notification events for the portal to deliver: mentions, new customer messages, failed deliveries, ...

The portal polls (``after_id`` = the last id it saw), shows or mails each
event, then marks it delivered so the next poll with ``pending=true`` skips it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from postroom.errors import NotFound
from postroom.storage import notifications, staff
from postroom.storage.apikeys import Principal
from postroom.storage.conversation_views import EventView
from postroom.web.auth import tenant_principal
from postroom.web.deps import db_session
from postroom.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"], responses=ERROR_RESPONSES)

RecipientType = Literal["user", "team", "tenant", "contact", "operator"]


class EventOut(BaseModel):
    id: int
    kind: str = Field(description="mention, assigned, new_conversation, customer_message, delivery_failed, ...")
    recipient_type: str
    recipient_id: int | None
    conversation_id: int | None
    message_id: int | None
    payload: dict
    delivered_at: datetime | None

    @classmethod
    def of(cls, event: EventView) -> EventOut:
        return cls(**{name: getattr(event, name) for name in cls.model_fields})


class DeliveredIn(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(min_length=1, max_length=1000)


class Delivered(BaseModel):
    delivered: list[int]


@router.get("", response_model=list[EventOut])
def list_notifications(
        principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
        user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1,
                                             description="Only events for this staff user and their teams")] = None,
        recipient_type: RecipientType | None = None,
        pending: Annotated[bool, Query(description="Only events not yet marked delivered")] = False,
        after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[EventOut]:
    """The tenant's events, oldest first after ``after_id``."""
    if user_id is not None:
        try:
            owner = staff.get_user(session, user_id).tenant_id
        except NotFound:
            owner = None
        if owner != principal.tenant_id:
            raise NotFound(f"no staff user {user_id}")
    events = notifications.list_events(session, principal.tenant_id, user_id=user_id, recipient_type=recipient_type,
                                       pending_only=pending, after_id=after_id, limit=limit)
    return [EventOut.of(e) for e in events]


@router.post("/delivered", response_model=Delivered)
def mark_delivered(body: DeliveredIn, principal: Principal = Depends(tenant_principal),
                   session: Session = Depends(db_session)) -> Delivered:
    """Mark events delivered; an id that is not this tenant's refuses the whole request (404)."""
    return Delivered(delivered=notifications.mark_delivered(session, principal.tenant_id, body.ids))
