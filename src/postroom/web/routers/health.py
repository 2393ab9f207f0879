"""Liveness and readiness for load balancers and orchestrators (no credentials needed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from postroom.app import App
from postroom.queue.connection import broker_reachable
from postroom.web.deps import get_app
from postroom.web.schemas import Health

router = APIRouter(tags=["health"])


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
