"""Small raw messages in the database, large ones in the file/S3 store, behind one BlobStore.

Making a message durable in the file store costs three sync points per batch
(blob data, directory entries, then the database commit of its rows). A
message of at most ``inline_max`` bytes is instead written to ``blob_data``
by the intake in the SAME transaction as its inbound rows (``add_inline``),
so one commit makes both durable and a row can never exist without its blob.
Readers do not care where a blob lives: ``get``/``exists`` look in the
database first, then in the file/S3 store.

``put`` (attachments extracted by the pipeline, outbound attachments) goes to
the file/S3 store: it is not on the SMTP path, and on SQLite every extra
database write would queue for the one write lock the gateway's group commit
needs, while file writes do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, create_engine, select
from sqlalchemy.dialects import postgresql, sqlite

from postroom.errors import NotFound
from postroom.storage.blobs import BlobStore, sha256_hex
from postroom.storage.tables import BlobData

#: Built once: constructing a select per read cost about as much as running it.
_DATA = select(BlobData.data).where(BlobData.sha256 == bindparam("key"))
_KEY = select(BlobData.sha256).where(BlobData.sha256 == bindparam("key"))
# Built once, Core: an ORM insert built per batch cost more CPU than executing it.
_INLINE_INSERTS = {name: dialect.insert(BlobData.__table__).on_conflict_do_nothing(index_elements=["sha256"])
                   for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


class TieredBlobStore:
    """``blob_data`` (blobs of at most ``inline_max`` bytes, written by the intake) over a file/S3 store."""

    def __init__(self, engine: Engine, files: BlobStore, inline_max: int) -> None:
        self.files = files
        self.inline_max = max(0, inline_max)
        self._reads, self._own_reads = _read_engine(engine)

    def inlines(self, data: bytes) -> bool:
        """True if the intake stores ``data`` in the database (0 turns inlining off)."""
        return len(data) <= self.inline_max

    def add_inline(self, conn: Connection, items: Sequence[bytes]) -> list[str]:
        """Insert blobs into ``blob_data`` within the caller's transaction; bytes already stored are skipped."""
        keys = [sha256_hex(data) for data in items]
        rows = list({key: {"sha256": key, "size": len(data), "data": data}
                     for key, data in zip(keys, items, strict=True)}.values())
        if rows:
            dialect = conn.dialect.name
            if dialect not in _INLINE_INSERTS:
                raise NotImplementedError(f"database dialect {dialect} is not supported")
            conn.execute(_INLINE_INSERTS[dialect], rows)
        return keys

    def put(self, data: bytes) -> str:
        return self.files.put(data)

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        return self.files.put_many(items)

    def get(self, key: str) -> bytes:
        with self._reads.connect() as conn:
            data = conn.execute(_DATA, {"key": key}).scalar()
        if data is not None:
            return bytes(data)
        try:
            return self.files.get(key)
        except NotFound as exc:
            raise NotFound(f"blob {key} is neither in the database nor in the blob store") from exc

    def exists(self, key: str) -> bool:
        with self._reads.connect() as conn:
            found = conn.execute(_KEY, {"key": key}).scalar()
        return found is not None or self.files.exists(key)

    def path_for(self, key: str) -> Path:
        """Where the file store keeps (or would keep) ``key``; inline blobs have no file."""
        return self.files.path_for(key)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._own_reads:
            self._reads.dispose()


def _read_engine(engine: Engine) -> tuple[Engine, bool]:
    """An engine for blob reads that never takes SQLite's write lock; True if it is ours to dispose.

    postroom's SQLite engine begins every transaction IMMEDIATE (it takes the
    write lock), which a lookup must not queue for behind the gateway's group
    commit. A plain connection reads the WAL snapshot without any lock.
    """
    if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine, False
    return create_engine(engine.url, connect_args={"check_same_thread": False, "timeout": 30}), True
