"""The one supervisor of postroom's child processes: pipeline workers and the extra SMTP gateways.

Each child is spawned (the parent already runs threads: never fork it) with
a pipe of its own to the parent, never a shared queue, whose lock a killed
child could take with it. A child sends ``READY`` once it serves; one parent
thread then owns every pipe: it hands each message to the kind of child
(``Kind``), lets the kind look at its children a few times a second, and
restarts a child that dies, after a back-off that grows while the child
keeps dying soon after it starts. A child watches its pipe: end of file
means the parent is gone (even by ``kill -9``), and it stops.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

log = logging.getLogger(__name__)

READY = "ready"  # sent once by a child, when it serves
LOOK_EVERY = 0.25  # seconds between the kind's looks at its children (the budget check)
RESTART_FIRST = 0.1  # seconds before a dead child is started again
RESTART_MAX = 30.0  # the longest back-off, for a child that keeps dying right after it starts
STABLE_AFTER = 30.0  # seconds a child must have run for its next restart to wait RESTART_FIRST again


@dataclass(frozen=True)
class Child:
    """One running child: slot ``n`` of its supervisor, the parent's end of its pipe, when it started."""

    n: int
    proc: BaseProcess
    conn: Connection
    started: float


class Kind(Protocol):
    """What a supervisor runs: the children's body, and what the parent does with their messages and deaths."""

    name: str  # processes are named postroom-<name>-<n>
    target: Callable[..., None]  # the child's body, target(conn, *args(n)): a module-level function (staticmethod)

    def args(self, n: int) -> tuple[Any, ...]:
        """Arguments after the pipe for the child started in slot ``n`` (again at every restart)."""

    def receive(self, child: Child, message: Any) -> None:
        """A message the child sent (other than READY)."""

    def lost(self, child: Child) -> str:
        """The child died: deal with the work it held and say, for the log line, what became of it."""

    def look(self, children: list[Child]) -> None:
        """Called after every wake-up and every LOOK_EVERY seconds, with the live children."""


class Channel:
    """The child's end of its pipe, shared by the child's threads (one message at a time)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: Any) -> None:
        with self._lock:
            self.conn.send(message)


def stop_on_sigterm() -> threading.Event:
    """In a child: an event SIGTERM sets. SIGINT is ignored: a terminal's Ctrl-C reaches the parent, which stops us."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def wait_for_stop(conn: Connection, stop: threading.Event) -> None:
    """In a child whose parent never writes: return on SIGTERM or once the parent is gone (EOF on the pipe)."""
    try:
        while not stop.is_set():
            if conn.poll(0.5):
                conn.recv()
    except (EOFError, OSError):
        log.warning("lost the parent process; stopping")


class Supervisor:
    """``count`` children of one ``Kind``, started, watched, restarted and stopped; see the module docstring."""

    def __init__(self, kind: Kind, count: int) -> None:
        self.kind = kind
        self.count = count
        self._ctx = multiprocessing.get_context("spawn")  # the parent already runs threads: never fork it
        self._children: list[Child] = []
        self._restart_at: dict[int, float] = {}  # slot → when its dead child starts again
        self._backoff = [RESTART_FIRST] * count
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._owner: threading.Thread | None = None

    @property
    def context(self) -> BaseContext:
        """The spawn context, for shared memory the children get as arguments."""
        return self._ctx

    @property
    def children(self) -> list[Child]:
        """The children alive now."""
        return [child for child in self._children if child.n not in self._restart_at and child.proc.is_alive()]

    @property
    def pids(self) -> list[int]:
        return [child.proc.pid for child in self.children if child.proc.pid is not None]

    def start(self, timeout: float = 60.0) -> Supervisor:
        self._children = [self._spawn(n) for n in range(self.count)]
        deadline = time.monotonic() + timeout
        for child in self._children:
            try:
                started = child.conn.poll(max(0.0, deadline - time.monotonic())) and child.conn.recv() == READY
            except (EOFError, OSError):  # it died while starting
                started = False
            if not started:
                self.stop()
                raise RuntimeError(f"{self.count} {self.kind.name} process(es) did not start within {timeout:.0f} s")
        self._owner = threading.Thread(target=self._run, name=f"postroom-{self.kind.name}-supervisor", daemon=True)
        self._owner.start()
        return self

    def _spawn(self, n: int) -> Child:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=self.kind.target, args=(theirs, *self.kind.args(n)),
                                 name=f"postroom-{self.kind.name}-{n + 1}", daemon=True)
        proc.start()
        theirs.close()
        return Child(n, proc, ours, time.monotonic())

    def wake(self) -> None:
        """Have the owner thread look now (after new work for the kind to hand out)."""
        with contextlib.suppress(BlockingIOError):  # a full pipe already wakes it
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        """The one thread that talks to the children: their messages, the kind's looks, restarts."""
        while not self._stopping.is_set():
            watched = [child for child in self._children if child.n not in self._restart_at]  # the dead: last words
            by_conn = {child.conn: child for child in watched}
            ready = wait([self._wake_r, *by_conn, *(child.proc.sentinel for child in watched)],
                         timeout=self._next_look())
            if self._wake_r in ready:
                os.read(self._wake_r, 65536)
            for conn in (obj for obj in ready if obj in by_conn):
                self._receive(by_conn[conn])
            self._notice_deaths()
            self._restart_due()
            self.kind.look(self.children)

    def _next_look(self) -> float:
        if not self._restart_at:
            return LOOK_EVERY
        return max(0.0, min(LOOK_EVERY, min(self._restart_at.values()) - time.monotonic()))

    def _receive(self, child: Child) -> None:
        try:
            while child.conn.poll():
                message = child.conn.recv()
                if message != READY:  # a restarted child's READY needs no answer
                    self.kind.receive(child, message)
        except (EOFError, OSError):
            pass  # it died: _notice_deaths sees its exit

    def _notice_deaths(self) -> None:
        for child in self._children:
            if child.n in self._restart_at or child.proc.is_alive() or self._stopping.is_set():
                continue
            now = time.monotonic()
            if now - child.started >= STABLE_AFTER:
                self._backoff[child.n] = RESTART_FIRST
            delay = self._backoff[child.n]
            self._backoff[child.n] = min(RESTART_MAX, delay * 2)
            self._restart_at[child.n] = now + delay
            outcome = self.kind.lost(child)
            log.error("%s process %s (pid %s) exited with %s; restarting it in %.1f s (%s)", self.kind.name,
                      child.proc.name, child.proc.pid, child.proc.exitcode, delay, outcome)
            child.conn.close()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for n, at in list(self._restart_at.items()):
            if at <= now and not self._stopping.is_set():
                self._children[n] = self._spawn(n)
                del self._restart_at[n]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every child, so it finishes what it runs, then wait for it (kill it after ``timeout``)."""
        self._stopping.set()
        self.wake()
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
        os.close(self._wake_r)
        os.close(self._wake_w)
