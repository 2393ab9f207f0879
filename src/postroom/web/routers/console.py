"""The operator console: server-rendered HTML with plain forms, no JavaScript build.

Login posts the operator token once; the browser then holds a SameSite=Strict,
HttpOnly cookie derived from it, which also keeps other sites from posting
the retry/drop forms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import APIKeyCookie
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.errors import PostroomError
from postroom.queue import operations
from postroom.queue.operations import Dispatch
from postroom.statuses import PROBLEMS
from postroom.storage import inbound, ingress, outbound, tenants
from postroom.web.auth import CONSOLE_COOKIE, console_session_value, is_operator
from postroom.web.deps import RowId, db_session, get_app, get_dispatch
from postroom.web.routers.operator import Action, queue_shape

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
cookie = APIKeyCookie(name=CONSOLE_COOKIE, auto_error=False)

PROBLEM_STATUSES = PROBLEMS
RECENT = 25


def _login(request: Request, message: str = "", status: int = 401) -> HTMLResponse:
    enabled = bool(get_app(request).settings.operator_token)
    return templates.TemplateResponse(request, "login.html", {"message": message, "enabled": enabled},
                                      status_code=status)


@router.get("", response_class=HTMLResponse)
def console(request: Request, session: Session = Depends(db_session), session_cookie: str | None = Depends(cookie),
            tenant: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{0,63}$")] = None,
            notice: Annotated[str, Query(max_length=300)] = "") -> HTMLResponse:
    """Queue by stage and age, failed items with retry/drop, recent inbound; optionally one tenant."""
    if not is_operator(request, None, session_cookie):
        return _login(request)
    tenant = tenant or None
    problems = [r for status in PROBLEM_STATUSES
                for r in inbound.list_inbound(session, status=status, tenant=tenant, limit=RECENT)]
    context = {
        "tenant": tenant, "notice": notice, "tenants": [t.slug for t in tenants.list_tenants(session)],
        "shape": queue_shape(session, tenant), "problems": sorted(problems, key=lambda r: r.id, reverse=True),
        "recent": inbound.list_inbound(session, tenant=tenant, limit=RECENT), "buckets": ("<5m", "<1h", "<1d", "older"),
        "outbound": outbound.list_outbound(session, tenant=tenant, limit=RECENT),
        "mailboxes": ingress.list_mailboxes(session, tenant),
    }
    return templates.TemplateResponse(request, "console.html", context)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=500)]) -> Response:
    if not is_operator(request, token, None):
        return _login(request, "That token is not the operator token.")
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(CONSOLE_COOKIE, console_session_value(get_app(request).settings.operator_token),
                        httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/console", status_code=303)
    response.delete_cookie(CONSOLE_COOKIE, path="/")
    return response


@router.post("/inbound/{inbound_id}/{action}", response_class=HTMLResponse)
def act(request: Request, inbound_id: RowId, action: Action, app: App = Depends(get_app),
        dispatch: Dispatch | None = Depends(get_dispatch), session_cookie: str | None = Depends(cookie),
        tenant: Annotated[str, Form(max_length=63)] = "") -> Response:
    """A button press: apply the action, then back to the page with a one-line notice."""
    if not is_operator(request, None, session_cookie):
        return _login(request)
    try:
        record = operations.apply(app, inbound_id, action, dispatch)
        notice = f"inbound {record.id}: {action} done, now {record.status}"
    except PostroomError as exc:
        notice = str(exc)
    query = urlencode({k: v for k, v in (("tenant", tenant), ("notice", notice)) if v})
    return RedirectResponse(f"/console?{query}", status_code=303)
