"""Structured logs: one JSON object per line, carrying the job's inbound id and tenant."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from postroom import logs
from postroom.app import App
from postroom.queue import runtime
from postroom.storage import conversation_views
from postroom.testing import make_eml, wait_until

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
    broker.add_middleware(logs.LogContext(runtime.inbound_tenant(app)))

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


def test_one_info_line_per_processed_message(service, smtp) -> None:  # type: ignore[no-untyped-def]
    """Through the real service: id, tenant, outcome, conversation and duration, once per message, as JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())  # formats in the worker thread, as the configured handler does
    flow_log = logging.getLogger("postroom.flow")
    flow_log.addHandler(handler)
    flow_log.setLevel(logging.INFO)
    try:
        with smtp() as client:
            client.sendmail("jean@example.com", ["inbox@acme.mail.test"], make_eml(subject="Logged"))

        def lines() -> list[dict]:
            return [f for f in map(json.loads, stream.getvalue().splitlines()) if "outcome" in f]

        [fields] = wait_until(lines)
    finally:
        flow_log.removeHandler(handler)
        flow_log.setLevel(logging.NOTSET)
    assert fields["outcome"] == "done" and fields["tenant"] == "acme" and isinstance(fields["duration_ms"], float)
    with service.app.session() as session:
        [conv] = conversation_views.list_conversations(session, "acme")
    assert fields["conversation_id"] == conv.id and fields["inbound_id"] > 0 and fields["level"] == "info"
    assert fields["message"] == f"inbound {fields['inbound_id']} done in {fields['duration_ms']:.1f} ms " \
                                f"(conversation {conv.id})"


def test_serve_start_up_lines_follow_the_json_format(tmp_path: Path) -> None:
    """Every stderr line of a starting ``postroom serve`` is one JSON object (the start-up summary too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(POSTROOM_DATA_DIR=str(tmp_path / "data"), POSTROOM_LOG_FORMAT="json", POSTROOM_WORKER_PROCESSES="0",
               POSTROOM_SMTP_LISTEN="127.0.0.1:0", POSTROOM_HTTP_LISTEN="127.0.0.1:0")
    postroom = Path(sys.executable).with_name("postroom")
    proc = subprocess.Popen([str(postroom), "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("broker in-process" in line for line in got), timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        reader.join(10)
    parsed = [json.loads(line) for line in got if line.strip()]
    messages = [p["message"] for p in parsed]
    assert any(m.startswith("postroom listening: smtp://127.0.0.1:") for m in messages), messages
    assert any(m.startswith("HTTP API http://127.0.0.1:") for m in messages)
    assert {p["logger"] for p in parsed if p["message"].startswith("postroom listening")} == {"postroom.start"}
    chatter = [p for p in parsed if p["logger"].split(".")[0] in ("alembic", "uvicorn")]
    assert chatter == [], "no library chatter at start"
