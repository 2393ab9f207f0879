"""Health, readiness and Prometheus metrics, against the real running service over real SMTP."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from postroom.app import App
from postroom.service import Service
from postroom.storage import inbound
from postroom.testing import make_eml, wait_until
from postroom.web import create_app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["checks"]["database"] == "ok"
    assert ready["checks"]["broker"] in ("ok", "in-process")


def test_readyz_fails_when_the_broker_is_unreachable(app: App) -> None:
    app.settings = app.settings.replace(broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(app)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error") and response.json()["checks"]["database"] == "ok"


def test_metrics_count_smtp_traffic_and_pipeline(service: Service, smtp) -> None:  # type: ignore[no-untyped-def]
    before = httpx.get(f"{service.http_url}/metrics").text
    client = smtp()
    client.sendmail("jean@example.com", ["inbox@acme.mail.test"], make_eml())
    client.docmd("MAIL FROM:<jean@example.com>")
    code, _ = client.docmd("RCPT TO:<x@nobody.mail.test>")
    assert code == 550

    def done() -> list:
        with service.app.session() as session:
            return inbound.list_inbound(session, status="done")

    wait_until(done)
    response = httpx.get(f"{service.http_url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    for name in ("postroom_smtp_sessions_total", "postroom_messages_received_total",
                 "postroom_messages_accepted_total"):
        assert value(after, name) >= value(before, name) + 1, name
    assert value(after, "postroom_messages_refused_total", reason="unknown_tenant") \
        == value(before, "postroom_messages_refused_total", reason="unknown_tenant") + 1
    wait_until(lambda: value(httpx.get(f"{service.http_url}/metrics").text, "postroom_stage_processed_total",
                             stage="inbound") > value(before, "postroom_stage_processed_total", stage="inbound"))
    assert value(after, "postroom_intake_seconds_count") >= 1
    assert value(after, "postroom_queue_depth", stage="done", status="done") == 1
    assert ("postroom_queue_oldest_age_seconds", (("stage", "done"), ("status", "done"))) in samples(after)
