"""The FastAPI application factory: one App in, one ASGI app out, no globals."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from postroom import metrics
from postroom.app import App
from postroom.queue.operations import Dispatch
from postroom.web import errors
from postroom.web.limits import Gate
from postroom.web.routers import (
    console,
    conversations,
    docs,
    health,
    inbound_api,
    ingest,
    notifications,
    operator,
    people,
    replies,
    rules,
)
from postroom.web.routers import metrics as metrics_router

DESCRIPTION = """Conversations and mail of one tenant (send its API key as `Authorization: Bearer KEY`),
plus the operator API and console (operator token), health checks and Prometheus metrics.
Errors are JSON: `{"error": {"status", "message", "fields": [{"field", "location", "message"}]}}`."""


def create_app(app: App, dispatch: Dispatch | None = None, dispatch_outbound: Dispatch | None = None) -> FastAPI:
    """Build the HTTP app; ``dispatch`` re-sends retried inbound ids and ``dispatch_outbound`` hands staff
    replies to a running pipeline (without them the pipeline's sweeper picks the rows up later)."""
    api = FastAPI(title="postroom", version="1", description=DESCRIPTION, docs_url=None, redoc_url=None)
    api.state.postroom = app
    api.state.dispatch = dispatch
    api.state.dispatch_outbound = dispatch_outbound
    api.state.db_metrics = metrics_router.database_registry(app)
    errors.install(api)
    modules = (health, metrics_router, inbound_api, conversations, replies, people, notifications, rules, operator,
               console, ingest)
    # outside the NUL check, which reads the body; inside the timing, so 401 and 413 are counted too
    api.add_middleware(Gate, routes=[route for module in modules for route in module.router.routes])

    @api.middleware("http")
    async def timed(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.HTTP_SECONDS.labels(request.method, route, str(response.status_code)).observe(
            time.perf_counter() - started)
        return response

    for module in modules:
        api.include_router(module.router)
    api.include_router(docs.router)
    docs.mount_assets(api)
    return api
