"""Pipeline worker processes started by ``postroom serve``, so processing is not capped by one GIL.

With the in-process broker the serving process hands inbound ids to the
worker processes: each runs the usual dramatiq worker on a broker of its own
and asks for the next id only when its own queue is short, so an idle process
takes the next message. With Redis or RabbitMQ the processes consume the
broker directly. Every process has a pipe of its own to the parent (never a
shared queue, whose lock a killed process could take with it); one parent
thread owns the pipes, hands out ids, relays stage metrics to this process's
registry and replaces a process that dies. The same thread enforces the
per-message budget (``queue.budget``): it kills a process whose current
message overruns its CPU or memory budget and fails that row with the
reason. The database stays the record: a dead process loses at most the ids
it held, which go back to ``retrying`` (the rows it was running) or are
re-sent by the recovery sweep (rows are claimed atomically and the final
write is fenced by the claim's lease token, so nothing runs twice).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from dramatiq import Middleware
from sqlalchemy.engine import make_url

from postroom.app import App
from postroom.logs import configure
from postroom.metrics import StageMetrics, count_here, record_stage, relay_counts
from postroom.queue.actors import INBOUND_QUEUE, OUTBOUND_QUEUE, Pipeline
from postroom.queue.budget import Enforcer, InFlight, Publisher
from postroom.queue.runtime import build_pipeline
from postroom.settings import Settings

log = logging.getLogger(__name__)

FEED_WAIT = 0.1  # seconds between looks at a process's own queue while it is full (a finished job wakes it sooner)
HANDED_KEPT = 64  # ids last handed to each process, re-sent if it dies (finished ones are skipped by the claim)
SUPERVISE_EVERY = 0.25  # seconds between looks at the budgets of the messages being run
ASK = None  # what a worker process sends for "one more id, please"; a tuple is a metrics observation
READY = "ready"  # sent once, when the process has opened the database and its broker
COUNTED = "counted"  # (COUNTED, counter, label): an event of a relayed counter, counted in the serving process


class _Channel:
    """The worker process's end of its pipe: asks for ids and reports observations from several threads."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple | None) -> None:
        with self._lock:
            self.conn.send(message)


def _worker_process(settings: Settings, conn: Connection, table: InFlight) -> None:
    """Body of one worker process: a pipeline on a broker of its own, fed over ``conn`` (in-process broker)."""
    configure(settings.log_format)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the parent, which stops us
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    channel = _Channel(conn)
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
            while not stop.is_set():  # the parent never writes: a readable pipe means it died (EOFError)
                if channel.conn.poll(0.5):
                    channel.conn.recv()
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


def _feed(pipeline: Pipeline, channel: _Channel, stop: threading.Event, finished: threading.Event, *,
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
class _Child:
    proc: BaseProcess
    conn: Connection
    table: InFlight
    handed: deque[int] = field(default_factory=lambda: deque(maxlen=HANDED_KEPT))
    asking: bool = False
    killed: bool = False  # by the budget check, which already wrote what became of its rows


class WorkerProcesses:
    """``count`` supervised pipeline worker processes; see the module docstring."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self._ctx = multiprocessing.get_context("spawn")  # the parent already runs threads: never fork it
        self._children: list[_Child] = []
        self._pending: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._owner: threading.Thread | None = None
        self._enforcer = Enforcer(settings, redispatch=None if settings.broker_url else self.dispatch)

    @property
    def pids(self) -> list[int]:
        return [child.proc.pid for child in self._children if child.proc.pid is not None]

    def running(self) -> dict[int, list[int]]:
        """Inbound ids each live process is running now, by pid (what the budget check sees)."""
        return {child.proc.pid: [one.inbound_id for one in child.table.running()]
                for child in self._children if child.proc.pid is not None and child.proc.is_alive()}

    def start(self, timeout: float = 60.0) -> WorkerProcesses:
        self._children = [self._spawn(n) for n in range(self.count)]
        deadline = time.monotonic() + timeout
        for child in self._children:
            try:
                started = child.conn.poll(max(0.0, deadline - time.monotonic())) and child.conn.recv() == READY
            except (EOFError, OSError):  # it died while starting
                started = False
            if not started:
                self.stop()
                raise RuntimeError(f"{self.count} worker process(es) did not start within {timeout:.0f} s")
        self._owner = threading.Thread(target=self._run, name="postroom-worker-processes", daemon=True)
        self._owner.start()
        return self

    def _spawn(self, n: int) -> _Child:
        ours, theirs = self._ctx.Pipe()
        table = InFlight(self._ctx, pipeline_threads(self.settings))
        proc = self._ctx.Process(target=_worker_process, args=(self.settings, theirs, table),
                                 name=f"postroom-worker-{n + 1}", daemon=True)
        proc.start()
        theirs.close()
        return _Child(proc, ours, table)

    def dispatch(self, ids: Iterable[int]) -> None:
        """Queue inbound ids for whichever process asks first (in-process broker only)."""
        self._pending.extend(ids)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe already wakes the owner thread
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        """The one thread that talks to the processes: requests, observations, hand-outs, replacements."""
        while not self._stopping.is_set():
            by_conn = {child.conn: child for child in self._children}
            ready = wait([self._wake_r, *by_conn, *(child.proc.sentinel for child in self._children)],
                         timeout=SUPERVISE_EVERY)
            if self._wake_r in ready:
                os.read(self._wake_r, 65536)
            for conn in (obj for obj in ready if obj in by_conn):
                self._receive(by_conn[conn])
            self._enforce()
            self._replace_dead()
            self._hand_out()

    def _receive(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                message = child.conn.recv()
                if message is ASK:
                    child.asking = True
                elif isinstance(message, tuple) and message[0] == COUNTED:
                    count_here(message[1], message[2])
                elif message != READY:  # a replacement's READY needs no answer
                    record_stage(*message)
        except (EOFError, OSError):
            child.asking = False  # it died; _replace_dead sees its exit

    def _hand_out(self) -> None:
        for child in self._children:
            if not self._pending:
                return
            if child.asking:
                inbound_id = self._pending.popleft()
                try:
                    child.conn.send(inbound_id)
                except OSError:
                    self._pending.appendleft(inbound_id)
                    continue
                child.handed.append(inbound_id)
                child.asking = False

    def _enforce(self) -> None:
        """Kill a process whose current message is over budget; extend the leases of long-running claims."""
        running = []
        for child in self._children:
            pid = child.proc.pid
            if pid is None or child.killed or not child.proc.is_alive():
                continue
            current = child.table.running()
            verdict = self._enforcer.judge(pid, current)
            if verdict is None:
                running.extend(current)
                continue
            child.killed = True
            child.proc.kill()
            child.proc.join(5)
            self._enforcer.killed(child.proc.name, pid, verdict, current)
        self._enforcer.heartbeat(running)

    def _replace_dead(self) -> None:
        for n, child in enumerate(self._children):
            if child.proc.is_alive() or self._stopping.is_set():
                continue
            if not child.killed:
                log.error("worker process %s (pid %s) exited with %s; starting a replacement (the rows it was "
                          "running go back to retrying; the ids it held are sent again)",
                          child.proc.name, child.proc.pid, child.proc.exitcode)
                self._enforcer.died(child.proc.name, child.proc.pid or 0, child.proc.exitcode, child.table.running())
            child.conn.close()
            self._children[n] = self._spawn(n)
            if not self.settings.broker_url:  # ids it had queued but not run: otherwise only the sweep finds them
                self.dispatch(child.handed)

    def stop(self, timeout: float = 30.0) -> None:
        """Let every process finish the jobs it is running, then stop it (ids not yet run stay pending rows)."""
        self._stopping.set()
        self._wake()
        if self._owner is not None:
            self._owner.join(10)
        for child in self._children:
            if child.proc.is_alive() and child.proc.pid is not None:
                os.kill(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self._children:
            child.proc.join(max(0.1, deadline - time.monotonic()))
            if child.proc.is_alive():
                child.proc.kill()
                child.proc.join()
            child.conn.close()
        self._children.clear()
        self._enforcer.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
