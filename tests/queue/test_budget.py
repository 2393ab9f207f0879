"""The per-message budget: a message over its CPU budget (or whose worker grows past the memory budget) is
stopped and failed with the reason, in its own worker thread (the flow's check between stages) or by killing its
worker process (the supervisor), while ordinary mail sent at the same time is done. Real SMTP, real pipeline, real
worker processes."""

from __future__ import annotations

import re
import smtplib
import threading
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from postroom.app import App
from postroom.cli import cli
from postroom.queue.budget import resident_mb
from postroom.service import Service
from postroom.settings import Settings
from postroom.statuses import TERMINAL
from postroom.storage import inbound
from postroom.testing import make_eml, wait_until

BUDGET = 0.3  # CPU seconds; the expensive message below takes about 2 s to parse
INBOX = "inbox@acme.mail.test"


def expensive_message(subject: str, elements: int = 250_000) -> bytes:
    """HTML of many tiny elements: linear in its size, but seconds of CPU to parse."""
    head = (f"From: Jean <jean@example.com>\r\nTo: {INBOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
            "Content-Type: text/html; charset=utf-8\r\n\r\n")
    return (head + ("<i>a</i>" * 10 + "\r\n") * (elements // 10)).encode()


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("jean@example.com", [INBOX], raw)


def _send_together(port: int) -> None:
    """The expensive message and an ordinary one, over two connections at the same time."""
    threads = [threading.Thread(target=_send, args=(port, raw)) for raw in
               (expensive_message("too expensive"), make_eml(subject="ordinary"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def _finished(app: App) -> dict[str, inbound.InboundRecord] | None:
    with app.session() as session:
        rows = inbound.list_inbound(session, limit=10)
    if len(rows) == 2 and all(r.status in TERMINAL for r in rows):
        return {"expensive" if r.size > 100_000 else "ordinary": r for r in rows}
    return None


def _failed_metric(service: Service, reason: str) -> float:
    text = httpx.get(f"{service.http_url}/metrics").text
    found = re.search(rf'^postroom_messages_failed_total\{{reason="{reason}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(budget_cpu_seconds=BUDGET)


def test_a_message_over_the_cpu_budget_is_stopped_between_stages(service: Service, app: App) -> None:
    """Workers as threads of the service: the flow checks the budget after each stage and fails the row itself."""
    before = _failed_metric(service, "budget_cpu")
    _send_together(service.smtp_port)
    rows = wait_until(lambda: _finished(app), timeout=60, interval=0.1)
    assert rows["ordinary"].status == "done"
    expensive = rows["expensive"]
    assert (expensive.status, expensive.attempts) == ("failed", 1)
    assert expensive.last_error is not None
    assert re.fullmatch(r"over the per-message CPU budget \(0\.3 s\): \d+\.\d s by the end of parsing; stopped",
                        expensive.last_error), expensive.last_error
    assert _failed_metric(service, "budget_cpu") - before == 1


@pytest.fixture
def served(settings: Settings, tenant_ids: dict[str, int], monkeypatch) -> Iterator[Service]:
    for name in ("data_dir", "database_url", "mail_domain"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(settings, name)))
    service = Service(settings.replace(worker_processes=2)).start()
    if settings.broker_url:
        service.pipeline.broker.flush_all()
    yield service
    service.stop()


def test_a_message_over_the_cpu_budget_inside_a_stage_has_its_worker_killed(served: Service, app: App) -> None:
    """Worker processes: the parse outruns the budget before the flow could check, so the supervisor kills it."""
    assert served.workers is not None
    before = _failed_metric(served, "budget_cpu")
    _send_together(served.smtp_port)
    rows = wait_until(lambda: _finished(app), timeout=60, interval=0.1)
    assert rows["ordinary"].status == "done"
    expensive = rows["expensive"]
    assert (expensive.status, expensive.stage, expensive.attempts) == ("failed", "parsing", 1)
    assert expensive.last_error is not None
    assert re.fullmatch(r"over the per-message CPU budget \(0\.3 s\): \d+\.\d s and still running; worker killed",
                        expensive.last_error), expensive.last_error
    assert _failed_metric(served, "budget_cpu") - before == 1
    shown = CliRunner().invoke(cli, ["queue", "show", str(expensive.id)])
    assert shown.exit_code == 0 and "over the per-message CPU budget (0.3 s)" in shown.output
    assert "failed by reason: budget_cpu 1" in CliRunner().invoke(cli, ["queue"]).output
    wait_until(lambda: len(served.workers.pids) == 2 or None, timeout=30)  # replaced


def _warm_worker_mb(settings: Settings, app: App) -> float:
    """Resident size of a worker process once it has run an ordinary message: what the budget is set above."""
    service = Service(settings).start()
    try:
        _send(service.smtp_port, make_eml(subject="warm-up"))
        wait_until(lambda: all(r.status == "done" for r in rows) and rows
                   if (rows := _rows(app)) else None, timeout=60, interval=0.1)
        assert service.workers is not None
        return max(resident_mb(pid) or 0.0 for pid in service.workers.pids)
    finally:
        service.stop()


def _rows(app: App) -> list[inbound.InboundRecord]:
    with app.session() as session:
        return inbound.list_inbound(session, limit=10)


def test_a_message_that_grows_its_worker_past_the_memory_budget_has_it_killed(
        settings: Settings, tenant_ids: dict[str, int], app: App, monkeypatch) -> None:
    """Worker processes: a message whose parse grows its process well past the memory budget is failed with the
    reason and its worker replaced; an ordinary message sent at the same time is done."""
    for name in ("data_dir", "database_url", "mail_domain"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(settings, name)))
    settings = settings.replace(worker_processes=2, budget_cpu_seconds=60.0)
    limit = int(_warm_worker_mb(settings, app)) + 60  # the message below grows a worker by well over 100 MB
    service = Service(settings.replace(budget_memory_mb=limit)).start()
    try:
        before = _failed_metric(service, "budget_memory")
        threads = [threading.Thread(target=_send, args=(service.smtp_port, raw)) for raw in
                   (expensive_message("too big", elements=500_000), make_eml(subject="ordinary"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        rows = wait_until(lambda: {"big" if r.size > 100_000 else r.subject: r for r in found}
                          if len(found := _rows(app)) == 3 and all(r.status in TERMINAL for r in found) else None,
                          timeout=90, interval=0.1)
        assert rows["ordinary"].status == "done"
        big = rows["big"]  # killed while parsing: the row has no subject yet
        assert (big.status, big.attempts) == ("failed", 1)
        assert re.fullmatch(rf"over the per-message memory budget \({limit} MB\): its worker process reached "
                            r"\d+ MB; killed", big.last_error or ""), big.last_error
        assert _failed_metric(service, "budget_memory") - before == 1
        assert service.workers is not None
        wait_until(lambda: len(service.workers.pids) == 2 or None, timeout=30)  # replaced
    finally:
        service.stop()
