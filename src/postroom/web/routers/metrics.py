"""``/metrics`` in the Prometheus text format: process counters plus database gauges."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from postroom import metrics
from postroom.app import App
from postroom.ingress.imap import MailboxCollector
from postroom.storage import inbound, outbound

router = APIRouter(tags=["health"])


def database_registry(app: App) -> CollectorRegistry:
    """A registry whose gauges query the database at each scrape."""

    def queue_shape() -> list:
        with app.session() as session:
            return [(ln.stage, ln.status, ln.count, ln.oldest) for ln in inbound.summary(session)]

    def outbound_shape() -> list[tuple[str, int]]:
        with app.session() as session:
            return outbound.status_counts(session)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DatabaseCollector(queue_shape, outbound_shape))
    registry.register(MailboxCollector(app))
    return registry


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def scrape(request: Request) -> Response:
    """Counters of this process; queue and outbound gauges read from the database."""
    body = generate_latest(metrics.REGISTRY) + generate_latest(request.app.state.db_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
