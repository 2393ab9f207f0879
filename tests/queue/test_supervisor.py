"""The process supervisor on its own: a child that keeps dying is restarted after a growing back-off.

Its two kinds in ``serve``, the worker processes and the extra SMTP processes, are tested in
tests/queue/test_worker_processes.py and tests/gateway/test_reuseport.py.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.connection import Connection
from typing import Any

import pytest

from postroom.queue.supervisor import READY, Child, Supervisor
from postroom.testing import wait_until

pytestmark = pytest.mark.slow


class _DiesOnceReady:
    """A kind whose child's whole body is ``conn.send(READY)`` (importable in the spawned child): it exits at once."""

    name = "test"
    target = staticmethod(Connection.send)

    def __init__(self) -> None:
        self.deaths: list[float] = []

    def args(self, n: int) -> tuple[Any, ...]:
        return (READY,)

    def receive(self, child: Child, message: Any) -> None:
        raise AssertionError(f"unexpected message {message!r}")

    def lost(self, child: Child) -> str:
        self.deaths.append(time.monotonic())
        return "nothing to recover"

    def look(self, children: list[Child]) -> None:
        pass


def test_a_child_that_keeps_dying_is_restarted_after_a_growing_back_off(caplog: pytest.LogCaptureFixture) -> None:
    kind = _DiesOnceReady()
    caplog.set_level(logging.ERROR, logger="postroom.queue.supervisor")
    supervisor = Supervisor(kind, 1).start()
    try:
        wait_until(lambda: len(kind.deaths) >= 4 or None, timeout=60, interval=0.1)
    finally:
        supervisor.stop()
    lines = [record.getMessage() for record in caplog.records]
    assert [line.partition("restarting it in ")[2].partition(" s")[0] for line in lines[:4]] == \
        ["0.1", "0.2", "0.4", "0.8"]
    assert all(line.startswith("test process postroom-test-1 (pid ") and "exited with 0" in line and
               line.endswith("(nothing to recover)") for line in lines)
    gaps = [later - earlier for earlier, later in zip(kind.deaths, kind.deaths[1:], strict=False)]
    assert all(gap >= wait for gap, wait in zip(gaps, (0.1, 0.2, 0.4), strict=False))
