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

import fcntl
import logging
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from postroom.model import Envelope
from postroom.storage.blobs import BlobStore
from postroom.storage.db import session_scope
from postroom.storage.tables import InboundMessage
from postroom.storage.tiered_blobs import TieredBlobStore

log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclass(frozen=True)
class IntakeItem:
    raw: bytes
    envelope: Envelope
    tenant_rcpts: dict[int, tuple[str, ...]]
    source: str = "smtp"


def _insert(session: Session, rows: list[dict]) -> None:
    """Insert rows, skipping any (tenant, sha256) already stored: a retried delivery."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(InboundMessage).on_conflict_do_nothing(index_elements=["tenant_id", "sha256"])
    elif dialect == "sqlite":
        stmt = sqlite.insert(InboundMessage).on_conflict_do_nothing(index_elements=["tenant_id", "sha256"])
    else:
        raise NotImplementedError(f"database dialect {dialect} is not supported")
    session.execute(stmt, rows)


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
    """
    now = datetime.now(UTC)
    small = [item.raw for item, key in zip(items, blob_keys, strict=True) if key is None]
    if small and inline is None:
        raise ValueError("items without a stored blob need a TieredBlobStore")
    rows: list[dict] = []
    keys: list[list[tuple[int, str]]] = []
    with session_scope(sessions) as session:
        small_keys = iter(inline.add_inline(session, small) if inline is not None and small else ())
        for item, stored_key in zip(items, blob_keys, strict=True):
            key = stored_key if stored_key is not None else next(small_keys)
            item_keys = []
            for tenant_id, rcpts in item.tenant_rcpts.items():
                rows.append({
                    "tenant_id": tenant_id, "sha256": key, "size": len(item.raw), "source": item.source,
                    "mail_from": item.envelope.mail_from, "rcpt_tos": list(rcpts),
                    "client_ip": item.envelope.peer, "helo": item.envelope.helo[:255],
                    "received_at": item.envelope.received_at or now, "stage": "parsing", "status": "pending",
                    "attempts": 0, "updated_at": now,
                })
                item_keys.append((tenant_id, key))
            keys.append(item_keys)
        if rows:
            _insert(session, rows)
        wanted = {k for item_keys in keys for k in item_keys}
        found: dict[tuple[int, str], int] = {}
        if wanted:
            result = session.execute(
                select(InboundMessage.tenant_id, InboundMessage.sha256, InboundMessage.id)
                .where(tuple_(InboundMessage.tenant_id, InboundMessage.sha256).in_(list(wanted)))
            )
            found = {(t, s): i for t, s, i in result}
    return [[found[k] for k in item_keys] for item_keys in keys]


def store_batch(sessions: sessionmaker[Session], blobs: BlobStore, items: Sequence[IntakeItem]) -> list[list[int]]:
    """Store every item durably: large blobs synced first, then small blobs and all rows in one transaction."""
    inline = _inline_store(blobs)
    large = [n for n, item in enumerate(items) if inline is None or not inline.inlines(item.raw)]
    keys: list[str | None] = [None] * len(items)
    for n, key in zip(large, blobs.put_many([items[n].raw for n in large]), strict=True):
        keys[n] = key
    return insert_rows(sessions, items, keys, inline)


Pending = tuple[IntakeItem, "Future[list[int]]"]
Stored = tuple[IntakeItem, "Future[list[int]]", str | None]  # key None: a small blob, inserted with its rows


class GroupCommitter:
    """Two writer threads in a pipeline; ``submit`` returns a future of the item's row ids.

    The blob thread takes whatever has queued up; small messages (see
    tiered_blobs) pass straight on, large ones are made durable in the file/S3
    store first (FileBlobStore.put_many: a few syncs per batch). The row
    thread inserts the small blobs and the rows of every batch handed on in
    one transaction: one commit, one sync point for a small message, and a row
    is never committed before its blob. While one batch commits, the next
    large batch is already syncing; when the database is the slower stage, its
    transactions simply grow.
    """

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, max_batch: int = MAX_BATCH) -> None:
        self.sessions = sessions
        self.blobs = blobs
        self.inline = _inline_store(blobs)
        self.max_batch = max_batch
        self._queue: queue.Queue[Pending | None] = queue.Queue()
        self._stored: queue.Queue[list[Stored] | None] = queue.Queue()
        self._writers = WriterQueue(sessions)
        self._blob_thread = threading.Thread(target=self._run_blobs, name="postroom-intake-blobs", daemon=True)
        self._row_thread = threading.Thread(target=self._run_rows, name="postroom-intake-rows", daemon=True)
        self._blob_thread.start()
        self._row_thread.start()

    def submit(self, item: IntakeItem) -> Future[list[int]]:
        future: Future[list[int]] = Future()
        self._queue.put((item, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._blob_thread.join(timeout=30)
        self._row_thread.join(timeout=30)
        self._writers.close()

    @staticmethod
    def _drain(source: queue.Queue, first: object, limit: int) -> tuple[list, bool]:
        """``first`` plus whatever else is waiting (up to ``limit``); True if the stop marker came."""
        batch = [first]
        while len(batch) < limit:
            try:
                nxt = source.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run_blobs(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._drain(self._queue, first, self.max_batch)
            small: list[Stored] = []
            large: list[Pending] = []
            for item, future in batch:
                if self.inline is not None and self.inline.inlines(item.raw):
                    small.append((item, future, None))
                else:
                    large.append((item, future))
            if small:  # nothing to sync first: straight on to the row commit
                self._stored.put(small)
            if large:
                self._stored.put(self._write_blobs(large))
        self._stored.put(None)

    def _write_blobs(self, batch: list[Pending]) -> list[Stored]:
        try:
            keys = self.blobs.put_many([item.raw for item, _ in batch])
            return [(item, future, key) for (item, future), key in zip(batch, keys, strict=True)]
        except Exception as exc:
            if len(batch) == 1:
                log.error("intake failed, message not acknowledged: %s", exc)
                batch[0][1].set_exception(exc)
                return []
            # One bad item must not cost the others their acknowledgement: retry one by one.
            return [done for one in batch for done in self._write_blobs([one])]

    def _run_rows(self) -> None:
        stop = False
        while not stop:
            first = self._stored.get()
            if first is None:
                break
            ready, stop = self._drain(self._stored, first, 64)
            batch = [entry for stored in ready for entry in stored]
            if batch:
                self._insert_rows(batch)

    def _insert_rows(self, batch: list[Stored]) -> None:
        try:
            with self._writers.turn():
                results = insert_rows(self.sessions, [item for item, _, _ in batch], [key for _, _, key in batch],
                                      self.inline)
        except Exception as exc:
            if len(batch) == 1:
                log.error("intake failed, message not acknowledged: %s", exc)
                batch[0][1].set_exception(exc)
                return
            for one in batch:
                self._insert_rows([one])
            return
        for (_, future, _), ids in zip(batch, results, strict=True):
            future.set_result(ids)
