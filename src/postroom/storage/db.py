"""Engine and session scope: one transaction per unit of work.

SQLite runs in WAL mode with synchronous=FULL so that a commit is on disk
before postroom acknowledges anything; PostgreSQL is durable by default.
Only the inbound pipeline opts into synchronous=NORMAL (``pipeline_scope``;
on PostgreSQL synchronous_commit=off): its work is re-derived from the
durable inbound row after a crash.

SQLite has one writer at a time. Writers of one process queue on a lock
(and processes on a ``flock`` next to the database) before ``BEGIN
IMMEDIATE``, because SQLite's own busy handler sleeps 1, 2, 5 … 100 ms
between attempts and a waiter then loses far more time than a commit takes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, Dialect, Engine, Executable, create_engine, event
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

WRITE_WAIT = 30.0  # seconds, like busy_timeout: a writer that waits longer fails as "database is locked"
READ_ONLY = "postroom_read_only"
SYNCHRONOUS = "postroom_synchronous"
CHECKPOINT_EVERY = 0.5  # seconds between the background checkpointer's passes
AUTOCHECKPOINT_PAGES = 10_000  # a commit checkpoints inline only past this (~40 MB of WAL): a safety net
FRESH = "postroom_fresh"  # set on a PostgreSQL connection just opened: its first checkout needs no ping
_UNPINGED: ContextVar[bool] = ContextVar("postroom_unpinged", default=False)
T = TypeVar("T")
log = logging.getLogger(__name__)


class WriterTurn:
    """The write lock of one SQLite file in this process: a thread lock, then a flock shared with other processes."""

    _by_path: weakref.WeakValueDictionary[str, WriterTurn] = weakref.WeakValueDictionary()
    _guard = threading.Lock()

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._fd = os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)

    def __del__(self) -> None:
        os.close(self._fd)

    @classmethod
    def of(cls, path: str) -> WriterTurn:
        path = os.path.realpath(path)
        with cls._guard:
            turn = cls._by_path.get(path)
            if turn is None:
                turn = cls._by_path[path] = cls(path)
            return turn

    def acquire(self) -> None:
        deadline = time.monotonic() + WRITE_WAIT
        if not self._lock.acquire(timeout=WRITE_WAIT):
            raise sqlite3.OperationalError("database is locked (no writer turn in this process)")
        pause = 0.00005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock.release()
                    raise sqlite3.OperationalError("database is locked (no writer turn between processes)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.0004)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


class QueuedConnection(sqlite3.Connection):
    """A sqlite3 connection that gives its writer turn back as soon as its transaction ends, however it ends."""

    turn: WriterTurn | None = None
    holding: bool = False

    def take_turn(self) -> None:
        if self.turn is not None and not self.holding:
            self.turn.acquire()
            self.holding = True

    def end_turn(self) -> None:
        if self.holding and not self.in_transaction:
            self.holding = False
            assert self.turn is not None
            self.turn.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.holding:
                self.holding = False
                assert self.turn is not None
                self.turn.release()


class WalCheckpointer:
    """Copies the WAL back into the database from a thread of its own, off every commit's path.

    SQLite's automatic checkpoint runs inside whichever commit crosses the
    threshold, under the writer lock and, in Python, while that thread holds
    the GIL around the call's bookkeeping; a passive checkpoint here takes
    neither the writer lock nor the GIL while it copies, so it runs on another
    core. Commits are exactly as durable as before (the WAL is synced by them).
    """

    def __init__(self, path: str, every: float = CHECKPOINT_EVERY) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=1000")
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="postroom-wal-checkpoint", daemon=True)
        self._thread.start()

    @classmethod
    def for_engine(cls, engine: Engine) -> WalCheckpointer | None:
        """One for a SQLite file engine; None for PostgreSQL or an in-memory database."""
        path = engine.url.database
        if engine.dialect.name != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
            return None
        return cls(path)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                continue  # busy or locked: the next pass (or a commit past AUTOCHECKPOINT_PAGES) does it

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine with the pragmas and pooling postroom relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30,
                                                  "factory": QueuedConnection})
        path = engine.url.database
        turn = WriterTurn.of(path) if path and path != ":memory:" and not path.startswith("file:") else None
        event.listen(engine, "connect", lambda dbapi_conn, _record: _sqlite_connect(dbapi_conn, turn))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
    event.listen(engine, "connect", _postgresql_connect)
    event.listen(engine, "checkout", lambda dbapi_conn, _record, _proxy: _ping(engine.dialect, dbapi_conn))
    event.listen(engine, "begin", _postgresql_begin)
    return engine


def _postgresql_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    setattr(dbapi_conn, SYNCHRONOUS, "FULL")
    setattr(dbapi_conn, FRESH, True)


def _ping(dialect: Dialect, dbapi_conn) -> None:  # type: ignore[no-untyped-def]
    """``pool_pre_ping``'s liveness check at checkout, except for a connection just opened and inside
    ``once_more_if_disconnected`` (whose work handles a dead connection itself).

    A dead connection invalidates the pool, which then hands out a new one,
    so after a server restart no unit of work sees a stale connection.
    """
    if getattr(dbapi_conn, FRESH, False):
        setattr(dbapi_conn, FRESH, False)
        return
    if _UNPINGED.get():
        return
    try:
        dialect.do_ping(dbapi_conn)
    except dialect.loaded_dbapi.Error as exc:
        if dialect.is_disconnect(exc, dbapi_conn, None):
            raise InvalidatePoolError(f"liveness ping failed: {exc}") from exc
        raise


def once_more_if_disconnected(work: Callable[[], T]) -> T:
    """Run ``work`` on pooled connections without the liveness ping; if its connection was dead (the server
    restarted, its backend was terminated), run it once more with the ping, on a live connection.

    Only for work that is safe to repeat (the pipeline's claim and its final
    transaction, fenced by the lease token: a retry finds all of it or none).
    Saves the ping's round trip at each checkout; a dead connection fails at
    its first statement and invalidates the pool, as a failed ping would.
    """
    unpinged = _UNPINGED.set(True)
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection lost (%s); running the work again on a new connection", exc.orig)
    finally:
        _UNPINGED.reset(unpinged)
    return work()


def _postgresql_begin(conn) -> None:  # type: ignore[no-untyped-def]
    """NORMAL (the pipeline's transactions) commits with synchronous_commit=off; FULL keeps the server's setting.

    A session setting, sent only when a connection changes level (a worker's
    connections mostly run the pipeline), in autocommit like the pool's ping:
    the connection is idle here (psycopg sends BEGIN with the first statement).
    """
    synchronous = conn.get_execution_options().get(SYNCHRONOUS, "FULL")
    dbapi_conn = conn.connection.dbapi_connection
    if getattr(dbapi_conn, SYNCHRONOUS, None) == synchronous:
        return
    statement = "SET synchronous_commit TO off" if synchronous == "NORMAL" else "RESET synchronous_commit"
    try:
        _execute_in_autocommit(dbapi_conn, statement)
    except conn.dialect.loaded_dbapi.Error as exc:
        # handled as SQLAlchemy handles a statement's error: a dead connection is dropped and said to be
        lost = conn.dialect.is_disconnect(exc, dbapi_conn, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost) from exc
    setattr(dbapi_conn, SYNCHRONOUS, synchronous)


def _execute_in_autocommit(dbapi_conn, statement: str) -> None:  # type: ignore[no-untyped-def]
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    try:
        dbapi_conn.execute(statement)
    finally:
        if not dbapi_conn.closed:
            dbapi_conn.autocommit = autocommit


def _sqlite_connect(dbapi_conn: QueuedConnection, turn: WriterTurn | None) -> None:
    dbapi_conn.isolation_level = None
    dbapi_conn.turn = turn
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    """Take the write lock at BEGIN (queued) so writers never fail on upgrade; pure reads begin deferred.

    The synchronous level is per connection, so it is set for every
    transaction: FULL unless the session asked for NORMAL. These statements
    go to the sqlite3 connection directly (every transaction runs them, and
    ``exec_driver_sql`` costs more, see bench/RESULTS.md); its errors are raised as
    SQLAlchemy's, as ``exec_driver_sql`` would.
    """
    options = conn.get_execution_options()
    dbapi_conn = conn.connection.dbapi_connection
    synchronous = options.get(SYNCHRONOUS, "FULL")
    if getattr(dbapi_conn, "postroom_synchronous", "FULL") != synchronous:
        _sqlite_execute(dbapi_conn, f"PRAGMA synchronous={synchronous}")
        dbapi_conn.postroom_synchronous = synchronous
    if options.get(READ_ONLY):
        _sqlite_execute(dbapi_conn, "BEGIN")
        return
    if isinstance(dbapi_conn, QueuedConnection):
        dbapi_conn.take_turn()
    try:
        _sqlite_execute(dbapi_conn, "BEGIN IMMEDIATE")
    except BaseException:
        if isinstance(dbapi_conn, QueuedConnection):
            dbapi_conn.end_turn()
        raise


def _sqlite_execute(dbapi_conn: sqlite3.Connection, statement: str) -> None:
    try:
        dbapi_conn.execute(statement)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


def core(db: Session | Connection, stmt: Executable, params: Any = None) -> CursorResult:
    """Execute a Core statement on the session's connection: no ORM compile step, entity loading or unit of work.

    For the verbs on the inbound pipeline's path, which run ~15 statements per
    message. Pending ORM changes are flushed first, as ``session.execute``
    would autoflush them. A ``Connection`` (``pipeline_connection``) runs it as is.
    """
    if isinstance(db, Connection):
        return db.execute(stmt, params)
    db.flush()
    return db.connection().execute(stmt, params)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything postroom stores is UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def expire_loaded(session: Session, entity: type, row_id: int) -> None:
    """Refresh a copy of a row already loaded in the session after a Core statement changed the row."""
    loaded = session.identity_map.get(session.identity_key(entity, row_id))
    if loaded is not None:
        session.expire(loaded)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session], **bind_options: object) -> Iterator[Session]:
    """Commit on success, roll back on any error (one transaction per job).

    ``bind_options`` are engine execution options for this transaction only
    (``READ_ONLY``, ``SYNCHRONOUS``; see ``read_scope`` and ``pipeline_scope``).
    """
    session = factory(bind=_with_options(factory.kw["bind"], bind_options)) if bind_options else factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def read_scope(factory: sessionmaker[Session]) -> AbstractContextManager[Session]:
    """A transaction that only reads: on SQLite it begins deferred, so it neither takes nor waits for the write lock.

    Writing in it would fail with SQLITE_BUSY under contention: use ``session_scope`` for that.
    """
    return session_scope(factory, **{READ_ONLY: True})


def pipeline_scope(factory: sessionmaker[Session]) -> AbstractContextManager[Session]:
    """A write transaction of the inbound pipeline: its commit does not wait for fsync (synchronous=NORMAL on SQLite,
    synchronous_commit=off on PostgreSQL).

    Safe because (1) in WAL mode a NORMAL commit survives the process being
    killed (kill -9 never loses it; only an OS crash or power loss can), as
    PostgreSQL's survives any client dying (only a crash of the server or its
    OS within the WAL writer's delay can lose it), and what such a crash loses
    is only a suffix of the log: every FULL commit after it (intake, outbound
    delivery phases, staff actions) syncs the whole log, this one included.
    (2) What the pipeline writes is re-derived from the inbound row, which
    intake committed with FULL, so a lost pipeline commit is redone by the
    recovery sweep; outbound mail it queued is only sent after a delivery
    phase's FULL commit, which makes it durable first.
    """
    return session_scope(factory, **{SYNCHRONOUS: "NORMAL"})


def pipeline_connection(engine: Engine) -> AbstractContextManager[Connection]:
    """``pipeline_scope`` without an ORM session, for a transaction of Core statements only (the claim).

    Setting up and committing a Session costs more per transaction than the
    connection's own ``begin()`` (bench/RESULTS.md).
    """
    return _with_options(engine, {SYNCHRONOUS: "NORMAL"}).begin()


def claim_connection(engine: Engine) -> AbstractContextManager[Connection]:
    """A connection for the claim, one statement that must commit before the work it claims begins.

    On PostgreSQL the statement runs in autocommit, as its own transaction,
    exactly as durable as ``pipeline_connection``'s, without the two round
    trips of BEGIN and COMMIT. On SQLite it is ``pipeline_connection``: the
    writer turn and the synchronous level are taken at BEGIN.
    """
    if engine.dialect.name == "postgresql":
        return _with_options(engine, {"isolation_level": "AUTOCOMMIT", SYNCHRONOUS: "NORMAL"}).connect()
    return pipeline_connection(engine)


_option_engines: weakref.WeakKeyDictionary[Engine, dict[tuple, Engine]] = weakref.WeakKeyDictionary()


def _with_options(engine: Engine, options: dict[str, object]) -> Engine:
    """One option engine per (engine, options), sharing the engine's pool."""
    key = tuple(sorted(options.items()))
    cache = _option_engines.setdefault(engine, {})
    found = cache.get(key)
    if found is None:
        found = cache[key] = engine.execution_options(**options)
    return found
