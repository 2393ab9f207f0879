"""Tenant API over received mail: every query is filtered on the API key's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.storage import inbound
from postroom.storage.apikeys import Principal
from postroom.storage.inbound import InboundRecord
from postroom.web.auth import tenant_principal
from postroom.web.deps import RowId, Status, db_session, get_app, owned
from postroom.web.errors import ERROR_RESPONSES
from postroom.web.schemas import Inbound, Me

router = APIRouter(prefix="/api/v1", tags=["tenant"], responses=ERROR_RESPONSES)


def own_inbound(session: Session, principal: Principal, inbound_id: int) -> InboundRecord:
    return owned(inbound.get_inbound, session, principal.tenant_id, inbound_id, "inbound message")


@router.get("/me", response_model=Me)
def me(principal: Principal = Depends(tenant_principal)) -> Me:
    """The tenant this key belongs to."""
    return Me(tenant=principal.tenant, key_id=principal.key_id)


@router.get("/inbound", response_model=list[Inbound])
def list_inbound(principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
                 status: Status = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Inbound]:
    """Received messages, newest first, optionally in one status (pending, done, failed, ...)."""
    records = inbound.list_inbound(session, status=status, tenant=principal.tenant, limit=limit)
    return [Inbound.of(r) for r in records if r.tenant_id == principal.tenant_id]


@router.get("/inbound/{inbound_id}", response_model=Inbound)
def show_inbound(inbound_id: RowId, principal: Principal = Depends(tenant_principal),
                 session: Session = Depends(db_session)) -> Inbound:
    """One received message with its pipeline state."""
    return Inbound.of(own_inbound(session, principal, inbound_id))


@router.get("/inbound/{inbound_id}/raw", response_class=Response,
            responses={200: {"content": {"message/rfc822": {}}, "description": "The message as received"}})
def raw_inbound(inbound_id: RowId, principal: Principal = Depends(tenant_principal),
                session: Session = Depends(db_session), app: App = Depends(get_app)) -> Response:
    """The message exactly as received, as an .eml download."""
    record = own_inbound(session, principal, inbound_id)
    return Response(app.blobs.get(record.sha256), media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="inbound-{record.id}.eml"'})
