"""Structured logs: one JSON object per line, carrying the job's inbound id and tenant."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from postroom import logs
from postroom.app import App

from .conftest import store_mail


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("postroom.test.jobs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def test_json_lines_carry_bound_ids_and_extras(json_lines: io.StringIO) -> None:
    log = logging.getLogger("postroom.test.jobs")
    with logs.bound(inbound_id=7, tenant="acme"):
        log.info("parsed %s", "ok")
    log.warning("delivery deferred", extra={"outbound_id": 3, "tenant": "globex"})
    first, second = (json.loads(line) for line in json_lines.getvalue().splitlines())
    assert first["message"] == "parsed ok" and first["inbound_id"] == 7 and first["tenant"] == "acme"
    assert first["level"] == "info" and first["logger"] == "postroom.test.jobs" and first["ts"].endswith("+00:00")
    assert second == {**second, "outbound_id": 3, "tenant": "globex", "level": "warning"}
    assert "inbound_id" not in second


def test_broker_jobs_log_their_inbound_id_and_tenant(app: App, tenant_ids: dict[str, int],
                                                     json_lines: io.StringIO) -> None:
    inbound_id = store_mail(app, tenant_ids["globex"], "globex")
    broker = StubBroker()
    broker.emit_after("process_boot")
    broker.add_middleware(logs.LogContext(logs.inbound_tenant(app)))

    def job(inbound_id: int) -> None:
        logging.getLogger("postroom.test.jobs").info("working")

    actor = dramatiq.actor(job, broker=broker, queue_name="inbound", actor_name="job")
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        actor.send(inbound_id)
        broker.join("inbound", timeout=10_000)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    line = json.loads(json_lines.getvalue().splitlines()[-1])
    assert (line["message"], line["inbound_id"], line["tenant"]) == ("working", inbound_id, "globex")


def test_text_format_appends_the_context() -> None:
    record = logging.LogRecord("postroom.flow", logging.INFO, __file__, 1, "done", None, None)
    with logs.bound(inbound_id=5, tenant="acme"):
        assert logs.TextFormatter("%(message)s").format(record) == "done [inbound_id=5 tenant=acme]"
    assert logs.TextFormatter("%(message)s").format(record) == "done"
    with pytest.raises(ValueError, match="POSTROOM_LOG_FORMAT"):
        logs.configure("yaml")
