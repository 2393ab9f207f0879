"""The gate every HTTP request passes first: who is calling, then how many body bytes they may send.

FastAPI reads and parses a request body before it runs any dependency, so an
API key checked in a dependency comes too late: a stranger's 300 MB body is
already in memory. This pure ASGI middleware authenticates /api requests from
their headers alone (401/403 without touching the body), then refuses a
declared Content-Length over the limit and counts the bytes of a streamed
(chunked) body as they arrive, answering 413 the moment the limit is passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postroom.ingress import webhooks
from postroom.ingress.webhooks import Caller
from postroom.web.auth import authenticate_tenant, bearer_token, check_operator
from postroom.web.deps import get_app
from postroom.web.errors import error_response

F = TypeVar("F", bound=Callable[..., Any])
TENANT_API = "/api/v1/"
OPERATOR_API = "/api/operator/"
INGEST = "/ingest/"


def takes_upload(endpoint: F) -> F:
    """Mark an endpoint that receives whole messages or attachments: it gets the larger body limit."""
    endpoint.postroom_upload = True  # type: ignore[attr-defined]
    return endpoint


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` while a body streams in; rendered as the usual JSON error with status 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes")


class Gate:
    """``routes`` are the app's routes as its routers define them (full paths), to know an endpoint by its path."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        endpoint = _endpoint(self.routes, request.scope)
        try:
            if endpoint is not None:
                await self._authenticate(request)
        except HTTPException as exc:
            await error_response(exc.status_code, str(exc.detail), headers=exc.headers)(scope, receive, send)
            return
        settings = get_app(request).settings
        limit = settings.http_max_upload_bytes if getattr(endpoint, "postroom_upload", False) \
            else settings.http_max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, str(BodyTooLarge(limit).detail))(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await error_response(exc.status_code, str(exc.detail))(scope, receive, send)

    @staticmethod
    async def _authenticate(request: Request) -> None:
        """Tenant key for /api/v1, operator token for /api/operator; the principal is kept for the endpoint.

        Only for paths a route answers (in any method), so an unknown path stays a plain 404."""
        path = request.url.path
        if path.startswith(OPERATOR_API):
            check_operator(request)
        elif path.startswith(TENANT_API):
            request.state.principal = await run_in_threadpool(authenticate_tenant, get_app(request),
                                                              bearer_token(request))
        elif path.startswith(INGEST):
            request.state.ingest_caller = await run_in_threadpool(_ingest_caller, request)


def _ingest_caller(request: Request) -> Caller:
    """A provider webhook (/ingest/PROVIDER/TENANT) from its headers; 401/404 before the body is read."""
    _, _, provider, tenant = (request.url.path.split("/", 4) + ["", "", "", ""])[:4]
    try:
        return webhooks.authenticate(get_app(request), provider, tenant, request.headers.get("authorization", ""),
                                     request.query_params.get("key"))
    except webhooks.WebhookRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None


def _endpoint(routes: Sequence[BaseRoute], scope: Scope) -> Callable[..., Any] | None:
    """The endpoint of the route matching the path (a method mismatch still counts: the answer is a 405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "endpoint", None)
        if match is Match.PARTIAL and partial is None:
            partial = getattr(route, "endpoint", None)
    return partial
