"""Pipeline worker processes started by ``postroom serve``, so processing is not capped by one GIL.

With the in-process broker the serving process hands inbound ids to the
worker processes: each runs the usual dramatiq worker on a broker of its own
and asks for the next id only when its own queue is short, so an idle process
takes the next message. With Redis or RabbitMQ the processes consume the
broker directly. ``WorkerProcesses`` is a kind of child of ``queue.supervisor``
(a pipe per process, restarted when it dies); on the supervisor's thread it
hands out ids, relays stage metrics to this process's registry and enforces the
per-message budget (``queue.budget``): it kills a process whose current
message overruns its CPU or memory budget and fails that row with the
reason. The database stays the record: a dead process loses at most the ids
it held, which go back to ``retrying`` (the rows it was running) or are
re-sent by the recovery sweep (rows are claimed atomically and the final
write is fenced by the claim's lease token, so nothing runs twice).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from dramatiq import Middleware
from sqlalchemy.engine import make_url

from postroom.app import App
from postroom.logs import configure
from postroom.metrics import StageMetrics, count_here, record_stage, relay_counts
from postroom.queue.actors import INBOUND_QUEUE, OUTBOUND_QUEUE, Pipeline
from postroom.queue.budget import Enforcer, InFlight, Publisher
from postroom.queue.runtime import build_pipeline
from postroom.queue.supervisor import READY, Channel, Child, Supervisor, stop_on_sigterm, wait_for_stop
from postroom.settings import Settings

log = logging.getLogger(__name__)

FEED_WAIT = 0.1  # seconds between looks at a process's own queue while it is full (a finished job wakes it sooner)
HANDED_KEPT = 64  # ids last handed to each process, re-sent if it dies (finished ones are skipped by the claim)
ASK = None  # what a worker process sends for "one more id, please"; a tuple is a metrics observation
COUNTED = "counted"  # (COUNTED, counter, label): an event of a relayed counter, counted in the serving process


def _worker_process(conn: Connection, settings: Settings, table: InFlight) -> None:
    """Body of one worker process: a pipeline on a broker of its own, fed over ``conn`` (in-process broker)."""
    configure(settings.log_format)
    stop = stop_on_sigterm()
    channel = Channel(conn)
    app = App.open(settings, migrate=False)
    finished = _Finished()
    relay_counts(lambda name, label: channel.send((COUNTED, name, label)))
    pipeline = build_pipeline(app, StageMetrics(observe=lambda *observation: channel.send(observation)), finished,
                              watch=Publisher(table))
    channel.send(READY)
    pipeline.start_worker(pipeline_threads(settings), {INBOUND_QUEUE})
    pipeline.start_worker(settings.worker_threads, {OUTBOUND_QUEUE})
    try:
        if settings.broker_url:
            wait_for_stop(conn, stop)
        else:
            _feed(pipeline, channel, stop, finished.event, backlog=pipeline_threads(settings))
    except (EOFError, OSError):
        log.warning("worker process lost its parent; stopping")
    finally:
        pipeline.stop()
        app.close()


def pipeline_threads(settings: Settings) -> int:
    """Inbound pipeline threads per worker process: one on SQLite, ``worker_threads`` otherwise.

    The pipeline is CPU-bound and SQLite takes one writer at a time, so on
    SQLite more threads in a process only contend for its GIL (bench/RESULTS.md);
    PostgreSQL round trips leave room for more. Outbound delivery, which
    waits on the network, keeps ``worker_threads`` threads of its own.
    """
    return 1 if make_url(settings.resolved_database_url).get_backend_name() == "sqlite" else settings.worker_threads


class _Finished(Middleware):
    """Sets ``event`` whenever a job ends, so the feeder looks at its queue again without polling."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self.event.set()

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self.event.set()


def _feed(pipeline: Pipeline, channel: Channel, stop: threading.Event, finished: threading.Event, *,
          backlog: int) -> None:
    """Ask for an id whenever this process has fewer than ``backlog`` waiting, and queue it here.

    The dramatiq consumer prefetches up to twice its thread count, so a
    process holds at most about three ids per thread that others could run.
    """
    local = pipeline.broker.queues[INBOUND_QUEUE]
    while not stop.is_set():
        channel.send(ASK)
        while not channel.conn.poll(0.5):
            if stop.is_set():
                return
        pipeline.dispatch([channel.conn.recv()])
        while local.qsize() >= backlog and not stop.is_set():
            finished.clear()
            if local.qsize() >= backlog:
                finished.wait(FEED_WAIT)


@dataclass
class _Slot:
    """What the parent knows of the worker process in one slot; a new one at every (re)start."""

    table: InFlight
    handed: deque[int] = field(default_factory=lambda: deque(maxlen=HANDED_KEPT))
    asking: bool = False
    killed: bool = False  # by the budget check, which already wrote what became of its rows


class WorkerProcesses:
    """``count`` supervised pipeline worker processes (a ``supervisor.Kind``); see the module docstring."""

    name = "worker"
    target = staticmethod(_worker_process)

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self._slots: dict[int, _Slot] = {}
        self._pending: deque[int] = deque()
        self._enforcer = Enforcer(settings, redispatch=None if settings.broker_url else self.dispatch)
        self._supervisor = Supervisor(self, count)

    @property
    def pids(self) -> list[int]:
        return self._supervisor.pids

    def running(self) -> dict[int, list[int]]:
        """Inbound ids each live process is running now, by pid (what the budget check sees)."""
        return {child.proc.pid: [one.inbound_id for one in self._slots[child.n].table.running()]
                for child in self._supervisor.children if child.proc.pid is not None}

    def start(self, timeout: float = 60.0) -> WorkerProcesses:
        self._supervisor.start(timeout)
        return self

    def args(self, n: int) -> tuple[Settings, InFlight]:
        self._slots[n] = _Slot(InFlight(self._supervisor.context, pipeline_threads(self.settings)))
        return self.settings, self._slots[n].table

    def dispatch(self, ids: Iterable[int]) -> None:
        """Queue inbound ids for whichever process asks first (in-process broker only)."""
        self._pending.extend(ids)
        self._supervisor.wake()

    def receive(self, child: Child, message: Any) -> None:
        if message is ASK:
            self._slots[child.n].asking = True
        elif isinstance(message, tuple) and message[0] == COUNTED:
            count_here(message[1], message[2])
        else:
            record_stage(*message)

    def look(self, children: list[Child]) -> None:
        self._enforce(children)
        self._hand_out(children)

    def _hand_out(self, children: list[Child]) -> None:
        for child in children:
            if not self._pending:
                return
            slot = self._slots[child.n]
            if slot.asking:
                inbound_id = self._pending.popleft()
                try:
                    child.conn.send(inbound_id)
                except OSError:
                    self._pending.appendleft(inbound_id)
                    continue
                slot.handed.append(inbound_id)
                slot.asking = False

    def _enforce(self, children: list[Child]) -> None:
        """Kill a process whose current message is over budget; extend the leases of long-running claims."""
        running = []
        for child in children:
            slot = self._slots[child.n]
            pid = child.proc.pid
            if pid is None or slot.killed:
                continue
            current = slot.table.running()
            verdict = self._enforcer.judge(pid, current)
            if verdict is None:
                running.extend(current)
                continue
            slot.killed = True
            child.proc.kill()
            child.proc.join(5)
            self._enforcer.killed(child.proc.name, pid, verdict, current)
        self._enforcer.heartbeat(running)

    def lost(self, child: Child) -> str:
        slot = self._slots[child.n]
        slot.asking = False
        if slot.killed:
            outcome = "killed for its budget"
        else:
            self._enforcer.died(child.proc.name, child.proc.pid or 0, child.proc.exitcode, slot.table.running())
            outcome = "the rows it was running go back to retrying"
        if not self.settings.broker_url:  # ids it had queued but not run: otherwise only the sweep finds them
            self.dispatch(slot.handed)
            outcome += "; the ids it held are sent again"
        return outcome

    def stop(self, timeout: float = 30.0) -> None:
        """Let every process finish the jobs it is running, then stop it (ids not yet run stay pending rows)."""
        self._supervisor.stop(timeout)
        self._enforcer.close()
