"""`postroom worker` while its broker comes and goes: one clear line per try, growing delays, no CRITICAL spam.

A real worker process against a private redis-server the test starts, kills
and restarts; mail dispatched after the broker is back is processed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.app import App
from postroom.model import Envelope
from postroom.queue.actors import Pipeline
from postroom.queue.broker import make_broker
from postroom.settings import Settings
from postroom.storage import inbound, tenants
from postroom.storage.intake import IntakeItem, store_batch
from postroom.testing import RedisProcess, make_eml, wait_until

pytestmark = pytest.mark.skipif(not any(Path(p, "redis-server").exists() for p in os.environ["PATH"].split(":")),
                                reason="redis-server is not installed")


class Worker:
    """A `postroom worker` subprocess whose stderr lines are collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "postroom", "worker", "--threads", "1"], env=env,
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, pattern: str) -> int:
        return sum(bool(re.search(pattern, line)) for line in list(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Settings, RedisProcess, dict[str, str]]]:
    redis = RedisProcess()  # port chosen, server not started yet
    settings = Settings(data_dir=tmp_path / "data", mail_domain="mail.test", broker_url=redis.url,
                        broker_namespace=f"outage-{os.getpid()}")
    env = {**os.environ, "POSTROOM_DATA_DIR": str(settings.data_dir), "POSTROOM_MAIL_DOMAIN": "mail.test",
           "POSTROOM_BROKER_URL": redis.url, "POSTROOM_BROKER_NAMESPACE": settings.broker_namespace,
           "POSTROOM_DATABASE_URL": ""}
    app = App.open(settings)
    with app.session() as session:
        tenants.add_tenant(session, "acme")
    app.close()
    yield settings, redis, env
    redis.kill()


def test_worker_waits_pauses_and_resumes_with_its_broker(setup) -> None:  # type: ignore[no-untyped-def]
    settings, redis, env = setup
    worker = Worker(env)
    try:
        wait_until(lambda: worker.count(r"unreachable .*retrying in 2 s") == 1, timeout=20)
        assert worker.count(r"retrying in 1 s") == 1 and worker.count("running") == 0
        redis.start()
        wait_until(lambda: worker.count("worker running") == 1, timeout=20)
        assert worker.count("reachable again") == 1

        redis.kill()
        wait_until(lambda: worker.count(r"unreachable .*retrying in 2 s") == 2, timeout=30)
        redis.start()
        wait_until(lambda: worker.count("reachable again") == 2, timeout=30)

        app = App.open(settings)
        try:
            rcpt = "inbox@acme.mail.test"
            with app.session() as session:
                tenant_id = tenants.get_tenant(session, "acme").id
            [[row]] = store_batch(app.sessions, app.blobs, [IntakeItem(
                make_eml(), Envelope("jean@example.com", (rcpt,)), {tenant_id: (rcpt,)})])
            Pipeline(app, make_broker(settings)).dispatch([row])

            def done() -> bool:
                with app.session() as session:
                    return inbound.get_inbound(session, row).status == "done"

            wait_until(done, timeout=30)
        finally:
            app.close()
        assert worker.count("CRITICAL|Traceback|connection error") == 0, "\n".join(worker.lines)
    finally:
        worker.stop()
