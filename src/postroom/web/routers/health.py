"""Liveness and readiness for load balancers and orchestrators (no credentials needed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from postroom.app import App
from postroom.web.deps import get_app
from postroom.web.schemas import Health

router = APIRouter(tags=["health"])
BROKER_TIMEOUT = 2.0


def broker_reachable(url: str) -> str:
    """'in-process' for the stub broker, otherwise a real round trip to Redis or RabbitMQ."""
    if not url:
        return "in-process"
    if url.startswith(("amqp://", "amqps://")):
        import pika

        params = pika.URLParameters(url)
        params.socket_timeout = params.blocked_connection_timeout = BROKER_TIMEOUT
        pika.BlockingConnection(params).close()
        return "ok"
    import redis

    client = redis.Redis.from_url(url, socket_timeout=BROKER_TIMEOUT, socket_connect_timeout=BROKER_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health, "description": "Not ready"}})
def readyz(app: App = Depends(get_app)) -> Health | JSONResponse:
    """Ready when the database and the broker both answer."""
    checks: dict[str, str] = {}
    try:
        with app.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        checks["broker"] = broker_reachable(app.settings.broker_url)
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    if all(not value.startswith("error") for value in checks.values()):
        return Health(status="ok", checks=checks)
    return JSONResponse(Health(status="unavailable", checks=checks).model_dump(), status_code=503)
