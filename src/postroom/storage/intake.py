"""Durable intake: raw bytes to the blob store and inbound rows to the database.

Concurrent SMTP sessions hand their message to one writer thread that takes
whatever has queued up, writes every blob (fsynced) and then inserts every
row in a single transaction: many sessions share one commit (group commit),
which is what lets a durable gateway keep pace with a non-durable sink.
A message is acknowledged only when its future resolves; any failure in its
batch fails the future, so the SMTP layer answers 451 and the client retries.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from postroom.model import Envelope
from postroom.storage.blobs import BlobStore
from postroom.storage.db import session_scope
from postroom.storage.tables import InboundMessage

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


def store_batch(sessions: sessionmaker[Session], blobs: BlobStore, items: Sequence[IntakeItem]) -> list[list[int]]:
    """Store every item durably in one transaction; return the row ids of each item."""
    now = datetime.now(UTC)
    rows: list[dict] = []
    keys: list[list[tuple[int, str]]] = []
    blob_keys = blobs.put_many([item.raw for item in items])
    for item, key in zip(items, blob_keys, strict=True):
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
    with session_scope(sessions) as session:
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


class GroupCommitter:
    """One writer thread; ``submit`` returns a future of the item's row ids."""

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, max_batch: int = MAX_BATCH) -> None:
        self.sessions = sessions
        self.blobs = blobs
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[IntakeItem, Future[list[int]]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="postroom-intake", daemon=True)
        self._thread.start()

    def submit(self, item: IntakeItem) -> Future[list[int]]:
        future: Future[list[int]] = Future()
        self._queue.put((item, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _take_batch(self) -> tuple[list[tuple[IntakeItem, Future[list[int]]]], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take_batch()
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple[IntakeItem, Future[list[int]]]]) -> None:
        try:
            results = store_batch(self.sessions, self.blobs, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                log.error("intake failed, message not acknowledged: %s", exc)
                batch[0][1].set_exception(exc)
                return
            # One bad item must not cost the others their acknowledgement: retry one by one.
            for one in batch:
                self._commit([one])
            return
        for (_, future), ids in zip(batch, results, strict=True):
            future.set_result(ids)
