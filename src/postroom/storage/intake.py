"""Durable intake: raw bytes to the blob store and inbound rows to the database.

Concurrent SMTP sessions hand their message to a writer that takes whatever
has queued up, makes every large blob durable with a few syncs and then
inserts every small blob (see tiered_blobs) and every row in a single
transaction: many sessions share one commit (group commit), which is what
lets a durable gateway keep pace with a non-durable sink. Blob syncing and
row commits run as a two-stage pipeline.
A message is acknowledged only when its future resolves; any failure in its
batch fails the future, so the SMTP layer answers 451 and the client retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine, Insert, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from postroom.model import Envelope
from postroom.storage.blobs import BlobStore
from postroom.storage.tables import InboundMessage
from postroom.storage.tiered_blobs import TieredBlobStore

log = logging.getLogger(__name__)

MAX_BATCH = 256
ROW_BATCH = 1024
T = TypeVar("T")


@dataclass(frozen=True)
class IntakeItem:
    raw: bytes
    envelope: Envelope
    tenant_rcpts: dict[int, tuple[str, ...]]
    source: str = "smtp"


_INBOUND = InboundMessage.__table__
_DIALECT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _row_insert(dialect: str) -> Insert:
    """INSERT of inbound rows returning (tenant, sha256, id); a row already stored (a retried delivery) is skipped."""
    insert = _DIALECT_INSERTS[dialect]
    return (insert(_INBOUND).on_conflict_do_nothing(index_elements=["tenant_id", "sha256"])
            .returning(_INBOUND.c.tenant_id, _INBOUND.c.sha256, _INBOUND.c.id))


# Built once: constructing an ORM insert per batch cost more CPU than executing it (Core, cached compile).
_ROW_INSERTS = {dialect: _row_insert(dialect) for dialect in _DIALECT_INSERTS}
_EXISTING = select(_INBOUND.c.id).where(_INBOUND.c.tenant_id == bindparam("tenant_id"),
                                        _INBOUND.c.sha256 == bindparam("sha256"))


def _insert(conn: Connection, rows: list[dict]) -> dict[tuple[int, str], int]:
    """Insert rows, skipping any (tenant, sha256) already stored; return the id of every (tenant, sha256)."""
    dialect = conn.dialect.name
    if dialect not in _ROW_INSERTS:
        raise NotImplementedError(f"database dialect {dialect} is not supported")
    found = {(t, s): i for t, s, i in conn.execute(_ROW_INSERTS[dialect], rows)}
    for row in rows:
        key = (row["tenant_id"], row["sha256"])
        if key not in found:
            found[key] = conn.execute(_EXISTING, {"tenant_id": key[0], "sha256": key[1]}).scalar_one()
    return found


class WriterQueue:
    """Makes SQLite writers from several gateway processes queue for the write lock instead of polling for it.

    SQLite's busy handler sleeps 1, 2, 5, 10… ms between attempts, so a gateway
    process that finds the lock taken by another one loses far more time than
    the other's commit takes. A blocking ``flock`` on a file next to the
    database wakes the next process the moment the lock is free. No-op for
    other databases (PostgreSQL queues row locks itself).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._fd: int | None = None
        url = sessions.kw["bind"].url if "bind" in sessions.kw else None
        if url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._fd = os.open(f"{url.database}.intake-lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def turn(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _inline_store(blobs: BlobStore) -> TieredBlobStore | None:
    return blobs if isinstance(blobs, TieredBlobStore) and blobs.inline_max else None


def insert_rows(sessions: sessionmaker[Session], items: Sequence[IntakeItem], blob_keys: Sequence[str | None],
                inline: TieredBlobStore | None = None) -> list[list[int]]:
    """Insert the rows of items in one transaction; return each item's ids.

    An item with a key has its blob durable already (file/S3 store); an item
    whose key is None is small: its blob goes into ``blob_data`` in this same
    transaction, so the one commit makes blob and rows durable together.
    A Core transaction, not an ORM session: a lone sender pays one of these per message.
    """
    now = datetime.now(UTC)
    small = [item.raw for item, key in zip(items, blob_keys, strict=True) if key is None]
    if small and inline is None:
        raise ValueError("items without a stored blob need a TieredBlobStore")
    rows: list[dict] = []
    keys: list[list[tuple[int, str]]] = []
    engine: Engine = sessions.kw["bind"]
    with engine.begin() as conn:
        small_keys = iter(inline.add_inline(conn, small) if inline is not None and small else ())
        for item, stored_key in zip(items, blob_keys, strict=True):
            key = stored_key if stored_key is not None else next(small_keys)
            envelope = item.envelope
            item_keys = []
            for tenant_id, rcpts in item.tenant_rcpts.items():
                rows.append({
                    "tenant_id": tenant_id, "sha256": key, "size": len(item.raw), "source": item.source,
                    "mail_from": envelope.mail_from, "rcpt_tos": list(rcpts), "client_ip": envelope.peer,
                    "helo": envelope.helo[:255], "received_at": envelope.received_at or now, "stage": "parsing",
                    "status": "pending", "attempts": 0, "updated_at": now,
                })
                item_keys.append((tenant_id, key))
            keys.append(item_keys)
        found = _insert(conn, rows) if rows else {}
    return [[found[k] for k in item_keys] for item_keys in keys]


def store_batch(sessions: sessionmaker[Session], blobs: BlobStore, items: Sequence[IntakeItem]) -> list[list[int]]:
    """Store every item durably: large blobs synced first, then small blobs and all rows in one transaction."""
    inline = _inline_store(blobs)
    large = [n for n, item in enumerate(items) if inline is None or not inline.inlines(item.raw)]
    keys: list[str | None] = [None] * len(items)
    for n, key in zip(large, blobs.put_many([items[n].raw for n in large]), strict=True):
        keys[n] = key
    return insert_rows(sessions, items, keys, inline)


Ack = Future[list[int]] | asyncio.Future[list[int]]
Pending = tuple[IntakeItem, Ack]
Stored = tuple[IntakeItem, Ack, str | None]  # key None: a small blob, inserted with its rows
Outcome = tuple[Ack, list[int] | BaseException]


class _Inbox(Generic[T]):
    """Entries for one consumer thread; ``put`` is a deque append and wakes the consumer only if it sleeps.

    A ``queue.Queue`` takes a lock and notifies a condition on every put: per
    message, a lock round trip and often a thread wake-up that steals the GIL
    from the SMTP event loop. Here a busy consumer costs producers nothing.
    """

    def __init__(self) -> None:
        self._entries: deque[T | None] = deque()
        self._wake = threading.Event()

    def put(self, entry: T | None) -> None:
        self._entries.append(entry)
        if not self._wake.is_set():
            self._wake.set()

    def put_many(self, entries: Sequence[T]) -> None:
        self._entries.extend(entries)
        if not self._wake.is_set():
            self._wake.set()

    def take(self, limit: int) -> tuple[list[T], bool]:
        """Wait for entries; return up to ``limit`` of them, and True once the stop marker (None) came."""
        entries = self._entries
        while not entries:
            self._wake.clear()
            if not entries:  # re-checked after clearing: a put in between has set the flag again
                self._wake.wait()
        batch: list[T] = []
        while entries and len(batch) < limit:
            entry = entries.popleft()
            if entry is None:
                return batch, True
            batch.append(entry)
        return batch, False


def _settle(outcomes: Sequence[Outcome]) -> None:
    """Resolve the futures of a batch: asyncio ones with one callback per event loop, not one wake-up each."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for ack, outcome in outcomes:
        if isinstance(ack, asyncio.Future):
            by_loop.setdefault(ack.get_loop(), []).append((ack, outcome))
        elif isinstance(outcome, BaseException):
            ack.set_exception(outcome)
        else:
            ack.set_result(outcome)
    for loop, entries in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these any more
            loop.call_soon_threadsafe(_settle_on_loop, entries)


def _settle_on_loop(outcomes: list[Outcome]) -> None:
    for ack, outcome in outcomes:
        if ack.done():  # cancelled: the SMTP session is gone
            continue
        if isinstance(outcome, BaseException):
            ack.set_exception(outcome)
        else:
            ack.set_result(outcome)  # type: ignore[arg-type]


class GroupCommitter:
    """Two writer threads in a pipeline; ``submit`` returns a future of the item's row ids.

    Small messages (see tiered_blobs) go straight to the row thread; large
    ones to the blob thread, which makes whatever has queued up durable in the
    file/S3 store (FileBlobStore.put_many: a few syncs per batch) and hands
    them on. The row thread inserts the small blobs and the rows of whatever
    has queued up in one transaction: one commit, one sync point for a small
    message, and a row is never committed before its blob. While one batch
    commits, the next large batch is already syncing; when the database is
    the slower stage, its transactions simply grow.
    """

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, max_batch: int = MAX_BATCH) -> None:
        self.sessions = sessions
        self.blobs = blobs
        self.inline = _inline_store(blobs)
        self.max_batch = max_batch
        self._large: _Inbox[Pending] = _Inbox()
        self._stored: _Inbox[Stored] = _Inbox()
        self._writers = WriterQueue(sessions)
        self._blob_thread = threading.Thread(target=self._run_blobs, name="postroom-intake-blobs", daemon=True)
        self._row_thread = threading.Thread(target=self._run_rows, name="postroom-intake-rows", daemon=True)
        self._blob_thread.start()
        self._row_thread.start()

    def submit(self, item: IntakeItem) -> Ack:
        """Queue ``item``; called on an event loop, the future is an asyncio one of that loop, else a thread one."""
        try:
            ack: Ack = asyncio.get_running_loop().create_future()
        except RuntimeError:
            ack = Future()
        if self.inline is not None and self.inline.inlines(item.raw):
            self._stored.put((item, ack, None))
        else:
            self._large.put((item, ack))
        return ack

    def close(self) -> None:
        self._large.put(None)
        self._blob_thread.join(timeout=30)
        self._row_thread.join(timeout=30)
        self._writers.close()

    def _run_blobs(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._large.take(self.max_batch)
            if batch:
                self._stored.put_many(self._write_blobs(batch))
        self._stored.put(None)

    def _write_blobs(self, batch: list[Pending]) -> list[Stored]:
        try:
            keys = self.blobs.put_many([item.raw for item, _ in batch])
            return [(item, ack, key) for (item, ack), key in zip(batch, keys, strict=True)]
        except Exception as exc:
            if len(batch) == 1:
                log.error("intake failed, message not acknowledged: %s", exc)
                _settle([(batch[0][1], exc)])
                return []
            # One bad item must not cost the others their acknowledgement: retry one by one.
            return [done for one in batch for done in self._write_blobs([one])]

    def _run_rows(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._stored.take(ROW_BATCH)
            if batch:
                _settle(self._insert_rows(batch))

    def _insert_rows(self, batch: list[Stored]) -> list[Outcome]:
        try:
            with self._writers.turn():
                results = insert_rows(self.sessions, [item for item, _, _ in batch], [key for _, _, key in batch],
                                      self.inline)
        except Exception as exc:
            if len(batch) == 1:
                log.error("intake failed, message not acknowledged: %s", exc)
                return [(batch[0][1], exc)]
            return [outcome for one in batch for outcome in self._insert_rows([one])]
        return [(ack, ids) for (_, ack, _), ids in zip(batch, results, strict=True)]
