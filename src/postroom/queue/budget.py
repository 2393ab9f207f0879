"""The per-message budget for worker processes: which row each pipeline thread runs, and the supervisor's checks.

A worker process publishes, per pipeline thread, the row it runs (id, lease
token, attempts), the thread's id and its CPU time and clock at the claim,
in shared memory: a few stores per message, no pipe message or system call.
The supervisor in the serving process reads the table a few times a second.
A message whose thread used more CPU than ``budget_cpu_seconds`` since its
claim, or whose process grew past ``budget_memory_mb`` resident, gets its
process killed (nothing else can stop a stage stuck inside one call) and
its row failed with the reason; the other rows that process was running go
back to ``retrying``. Rows of a process that died on its own go back to
``retrying`` with that said (or ``failed``, at the last attempt). Every
write is fenced by the claim's lease token, so a row that finished or moved
on meanwhile is left alone. Long-running claims get their lease extended.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.context import BaseContext

from postroom import budget as budgets
from postroom.budget import Budget
from postroom.metrics import count_failed
from postroom.settings import Settings
from postroom.storage import inbound
from postroom.storage.db import make_engine, session_factory, session_scope
from postroom.storage.inbound import InboundRecord

log = logging.getLogger(__name__)

_INTS = 4  # per slot: inbound id (0 = idle), lease token, attempts, native thread id
_FLOATS = 2  # per slot: the thread's CPU seconds at the claim, time.monotonic() at the claim
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Running:
    """One row a worker process runs, as its supervisor reads it."""

    inbound_id: int
    token: int
    attempts: int
    thread_id: int
    cpu_start: float
    started: float


class InFlight:
    """The shared table of one worker process: one slot per pipeline thread (created by the parent)."""

    def __init__(self, ctx: BaseContext, slots: int) -> None:
        self.slots = slots
        self.ints = ctx.RawArray("q", slots * _INTS)  # type: ignore[attr-defined]
        self.floats = ctx.RawArray("d", slots * _FLOATS)  # type: ignore[attr-defined]

    def running(self) -> list[Running]:
        """The busy slots; a slot rewritten while being read is skipped (seen on the next look)."""
        found = []
        for n in range(self.slots):
            i, f = n * _INTS, n * _FLOATS
            inbound_id = self.ints[i]
            if not inbound_id:
                continue
            one = Running(inbound_id, self.ints[i + 1], self.ints[i + 2], self.ints[i + 3], self.floats[f],
                          self.floats[f + 1])
            if self.ints[i] == inbound_id and self.ints[i + 1] == one.token:
                found.append(one)
        return found


class Publisher:
    """The worker side (``flow.Watch``): each pipeline thread takes a slot of its own on its first message."""

    def __init__(self, table: InFlight) -> None:
        self.table = table
        self._local = threading.local()
        self._lock = threading.Lock()
        self._taken = 0

    def _slot(self) -> int | None:
        slot = getattr(self._local, "slot", -1)
        if slot == -1:
            with self._lock:
                slot = self._taken if self._taken < self.table.slots else None
                self._taken += 1
            self._local.slot = slot
        return slot

    def started(self, record: InboundRecord, budget: Budget) -> None:
        slot = self._slot()
        if slot is None:
            return
        i, f = slot * _INTS, slot * _FLOATS
        ints, floats = self.table.ints, self.table.floats
        ints[i + 1], ints[i + 2], ints[i + 3] = record.lease_token or 0, record.attempts, threading.get_native_id()
        floats[f], floats[f + 1] = budget.cpu_start, time.monotonic()
        ints[i] = record.id  # last: a reader sees the slot busy only once it is complete

    def finished(self) -> None:
        slot = self._slot()
        if slot is not None:
            self.table.ints[slot * _INTS] = 0


def thread_cpu(pid: int, thread_id: int) -> float | None:
    """User + system CPU seconds of one thread of another process, from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{thread_id}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15 of stat(5)


def resident_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return None


@dataclass(frozen=True)
class Verdict:
    """Why a worker process must be killed, and for which of its rows."""

    kind: str
    reason: str
    guilty: Running


class Enforcer:
    """The supervisor's side: judge a process's current messages, and write what became of its rows."""

    def __init__(self, settings: Settings, redispatch: Callable[[list[int]], None] | None = None) -> None:
        self.settings = settings
        self.redispatch = redispatch
        self.lease = timedelta(seconds=settings.processing_lease_seconds)
        self._sessions = None
        self._beats: dict[tuple[int, int], float] = {}

    def judge(self, pid: int, running: list[Running]) -> Verdict | None:
        """A verdict when a current message is over its CPU budget or the process over the memory budget."""
        if not running:
            return None
        used = {one: thread_cpu(pid, one.thread_id) for one in running}
        used = {one: cpu - one.cpu_start for one, cpu in used.items() if cpu is not None}
        limit = self.settings.budget_cpu_seconds
        if limit > 0:
            for one, cpu in used.items():
                if cpu > limit:
                    return Verdict(budgets.BUDGET_CPU,
                                   budgets.cpu_reason(limit, cpu, "and still running", "worker killed"), one)
        memory = self.settings.budget_memory_mb
        if memory > 0 and (rss := resident_mb(pid)) is not None and rss > memory:
            # several messages in one process: the one that used the most CPU since its claim did the growing
            guilty = max(running, key=lambda one: used.get(one, 0.0))
            return Verdict(budgets.BUDGET_MEMORY, budgets.memory_reason(memory, rss), guilty)
        return None

    def killed(self, name: str, pid: int, verdict: Verdict, running: list[Running]) -> None:
        """After a budget kill: the guilty row failed with the reason, the others back to retrying."""
        log.error("worker process %s (pid %s) killed: inbound %s is %s", name, pid, verdict.guilty.inbound_id,
                  verdict.reason)
        if self._write(verdict.guilty, verdict.reason, final=True):
            count_failed(verdict.kind)
        self._release([one for one in running if one != verdict.guilty],
                      f"its worker process was killed for another message's budget ({verdict.reason})")

    def died(self, name: str, pid: int, exitcode: int | None, running: list[Running]) -> None:
        """A process that died on its own (an out-of-memory kill, a crash): its rows go back, or fail at the end."""
        self._release(running, f"its worker process {name} (pid {pid}) died with exit code {exitcode}")

    def _release(self, running: list[Running], why: str) -> None:
        again = []
        for one in running:
            if one.attempts >= self.settings.max_attempts:
                if self._write(one, f"{budgets.attempts_reason(one.attempts)} (last: {why})", final=True):
                    count_failed(budgets.ATTEMPTS_EXHAUSTED)
            elif self._write(one, f"{why}; will be retried", final=False):
                again.append(one.inbound_id)
        if again and self.redispatch is not None:
            self.redispatch(again)

    def heartbeat(self, running: list[Running]) -> None:
        """Extend the lease of every claim (of all processes) that has run for half of it, every half lease."""
        now = time.monotonic()
        half = self.lease.total_seconds() / 2
        current = {(one.inbound_id, one.token) for one in running}
        self._beats = {key: beat for key, beat in self._beats.items() if key in current}
        for one in running:
            key = (one.inbound_id, one.token)
            if now - max(one.started, self._beats.get(key, 0.0)) < half:
                continue
            self._beats[key] = now
            try:
                with session_scope(self._session_factory()) as session:
                    inbound.extend_lease(session, one.inbound_id, one.token, datetime.now(UTC) + self.lease)
            except Exception as exc:
                log.warning("could not extend the lease of inbound %s: %s", one.inbound_id, exc)

    def _write(self, one: Running, error: str, *, final: bool) -> bool:
        """The row's outcome, if it is still the claim this process held; False when it was not written."""
        try:
            with session_scope(self._session_factory()) as session:
                inbound.record_error(session, one.inbound_id, error, final=final, token=one.token)
            return True
        except inbound.LeaseLost:
            return False
        except Exception as exc:  # the claim after the last attempt still fails the row
            log.error("could not record what became of inbound %s (%s): %s", one.inbound_id, error, exc)
            return False

    def _session_factory(self):  # type: ignore[no-untyped-def]
        """Opened on first need: most supervisors never write."""
        if self._sessions is None:
            self._sessions = session_factory(make_engine(self.settings.resolved_database_url, pool_size=1))
        return self._sessions

    def close(self) -> None:
        if self._sessions is not None:
            self._sessions.kw["bind"].dispose()
