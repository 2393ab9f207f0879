"""``serve``'s pipeline worker processes: they run the jobs, a dead one is replaced, and nothing is lost or run twice.

Real processes (spawned), real SMTP on 127.0.0.1, the suite's database and
broker (in-process: ids handed out over each process's pipe; Redis/RabbitMQ: consumed directly).
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from postroom.app import App
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import inbound
from postroom.testing import make_eml, process_tree, wait_until

PROCESSES = 2


@pytest.fixture
def served(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    service = Service(settings.replace(worker_processes=PROCESSES)).start()
    if settings.broker_url:
        service.pipeline.broker.flush_all()
    yield service
    service.stop()


def _send(service: Service, subjects: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as client:
        for subject in subjects:
            client.sendmail("jean@example.com", ["inbox@acme.mail.test"],
                            make_eml(subject=subject, to="inbox@acme.mail.test"))


def _rows(app: App) -> list[inbound.InboundRecord]:
    with app.session() as session:
        return inbound.list_inbound(session, limit=1000)


def _all_done(app: App, count: int) -> list[inbound.InboundRecord] | None:
    rows = _rows(app)
    return rows if len(rows) == count and all(r.status == "done" for r in rows) else None


def _processed(service: Service) -> float:
    text = httpx.get(f"{service.http_url}/metrics").text
    found = re.search(r'^postroom_stage_processed_total\{stage="inbound"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_the_worker_processes_run_the_jobs_and_report_them_to_metrics(served: Service, app: App) -> None:
    assert served.workers is not None and len(served.workers.pids) == PROCESSES
    before = _processed(served)
    for pid in served.workers.pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        _send(served, [f"held {n}" for n in range(6)])
        time.sleep(1.0)
        assert {r.status for r in _rows(app)} == {"pending"}, "only the (stopped) worker processes may process"
    finally:
        for pid in served.workers.pids:
            os.kill(pid, signal.SIGCONT)
    rows = wait_until(lambda: _all_done(app, 6), timeout=30, interval=0.1)
    assert all(r.attempts == 1 for r in rows)
    wait_until(lambda: _processed(served) - before >= 6 or None, timeout=10, interval=0.1)


def test_a_killed_worker_process_is_replaced_and_its_mail_recovered_once(settings: Settings,
                                                                         tenant_ids: dict[str, int], app: App) -> None:
    service = Service(settings.replace(worker_processes=PROCESSES, processing_lease_seconds=1)).start()
    try:
        assert service.workers is not None
        victim, survivor = service.workers.pids
        os.kill(survivor, signal.SIGSTOP)
        try:
            _send(service, [f"recovered {n}" for n in range(40)])
            wait_until(lambda: any(r.status != "pending" for r in _rows(app)) or None, timeout=20, interval=0.005)
            os.kill(victim, signal.SIGKILL)  # mid-run: it holds claimed and queued ids
        finally:
            os.kill(survivor, signal.SIGCONT)
        wait_until(lambda: victim not in service.workers.pids and len(service.workers.pids) == PROCESSES or None,
                   timeout=20, interval=0.1)
        time.sleep(1.2)  # past the victim's leases: what the sweeper does after its idle time
        service.pipeline.recover()
        rows = wait_until(lambda: _all_done(app, 40), timeout=60, interval=0.1)
    finally:
        service.stop()
    assert sorted(r.subject for r in rows) == sorted(f"recovered {n}" for n in range(40))
    assert max(r.attempts for r in rows) <= 2
    assert sum(r.attempts == 2 for r in rows) <= settings.worker_threads  # only what it was running when killed


def test_worker_processes_exit_when_serve_is_killed(settings: Settings, tenant_ids: dict[str, int]) -> None:
    """``kill -9`` of ``postroom serve`` leaves no orphan consuming the broker or holding ids."""
    env = dict(os.environ, POSTROOM_DATA_DIR=str(settings.data_dir), POSTROOM_DATABASE_URL=settings.database_url,
               POSTROOM_BROKER_URL=settings.broker_url, POSTROOM_BROKER_NAMESPACE=settings.broker_namespace,
               POSTROOM_MAIL_DOMAIN=settings.mail_domain, POSTROOM_SMTP_LISTEN="127.0.0.1:0",
               POSTROOM_HTTP_LISTEN="127.0.0.1:0", POSTROOM_WORKER_PROCESSES=str(PROCESSES))
    serve = subprocess.Popen([str(Path(sys.executable).parent / "postroom"), "serve"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert serve.stderr is not None
        while b"worker processes" not in (line := serve.stderr.readline()):
            assert line, "postroom serve exited before its worker processes started"
        workers = process_tree(serve.pid) - {serve.pid}
        assert len(workers) >= PROCESSES
    finally:
        serve.kill()
        serve.wait(10)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers) or None, timeout=10, interval=0.1)
