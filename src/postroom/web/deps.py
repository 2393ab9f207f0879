"""Request-scoped access to the postroom App and the pipeline's dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Protocol, TypeVar

from fastapi import Path, Query, Request
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.errors import NotFound
from postroom.queue.operations import Dispatch


class _TenantRow(Protocol):
    tenant_id: int


Row = TypeVar("Row", bound=_TenantRow)

RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A row id")]
Status = Annotated[str | None, Query(pattern=r"^[a-z_]{1,16}$", description="pending, done, failed, held, ...")]
TenantSlug = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,63}$", description="Only this tenant (slug)")]


def get_app(request: Request) -> App:
    return request.app.state.postroom


def get_dispatch(request: Request) -> Dispatch | None:
    return request.app.state.dispatch


def get_outbound_dispatch(request: Request) -> Dispatch | None:
    return request.app.state.dispatch_outbound


def db_session(request: Request) -> Iterator[Session]:
    """One committed transaction per request, like one per job in the pipeline."""
    with get_app(request).session() as session:
        yield session


def owned(load: Callable[[Session, int], Row | None], session: Session, tenant_id: int, row_id: int, what: str) -> Row:
    """The row if it belongs to the caller's tenant; another tenant's row is 'not found', never 'forbidden'."""
    try:
        row = load(session, row_id)
    except NotFound:
        row = None
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"no {what} {row_id}")
    return row
