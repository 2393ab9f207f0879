"""The composition root: the one place a broker, its middleware and the pipeline's actors are put together.

``serve``, ``worker``, the worker processes and the CLI commands that only
send ids all build their pipeline here, so they cannot drift apart in
middleware or broker choice; each caller adds only what is its own (stage
metrics where they are served, the supervisor's hooks in a worker process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dramatiq import Middleware

from postroom import flow
from postroom.app import App
from postroom.logs import LogContext
from postroom.queue.actors import Pipeline
from postroom.queue.broker import make_broker
from postroom.storage import inbound
from postroom.storage.db import read_scope


def inbound_tenant(app: App) -> Callable[[str, int], str | None]:
    """A ``tenant_of`` for ``LogContext`` that reads the inbound row's tenant (outbound jobs: none yet).

    A read-only transaction: it may run while this thread holds SQLite's write lock (a line logged mid-job).
    """

    def tenant_of(queue: str, job_id: int) -> str | None:
        if queue != "inbound":
            return None
        with read_scope(app.sessions) as session:
            return inbound.get_inbound(session, int(job_id)).tenant

    return tenant_of


def build_pipeline(app: App, *middleware: Middleware, inbound_sink: Callable[[Iterable[int]], None] | None = None,
                   watch: flow.Watch | None = None) -> Pipeline:
    """A pipeline on the broker ``app.settings`` names: ``middleware`` first, then the log context."""
    broker = make_broker(app.settings)
    for item in middleware:
        broker.add_middleware(item)
    broker.add_middleware(LogContext(inbound_tenant(app)))
    return Pipeline(app, broker, inbound_sink=inbound_sink, watch=watch)


def sender(app: App) -> Pipeline:
    """A pipeline used only to send ids to the broker's queues (CLI commands, wake-ups); it runs no worker."""
    return build_pipeline(app)
