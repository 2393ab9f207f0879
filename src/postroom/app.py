"""The application's parts, built once from Settings and passed to every stage."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from postroom.addresses import TenantDirectory
from postroom.settings import Settings
from postroom.storage.blobs import BlobStore, open_blob_store
from postroom.storage.db import WalCheckpointer, make_engine, session_factory, session_scope
from postroom.storage.migrate import upgrade
from postroom.storage.tenants import load_directory
from postroom.storage.tiered_blobs import TieredBlobStore

DIRECTORY_TTL = 5.0


@dataclass
class App:
    """Settings, database, blob store (small blobs in the database, see tiered_blobs) and a cached tenant directory."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    _directory: TenantDirectory | None = field(default=None, repr=False)
    _directory_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _checkpointer: WalCheckpointer | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> App:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        if migrate:
            upgrade(engine)
        blobs = TieredBlobStore(engine, open_blob_store(settings.resolved_blob_url), settings.inline_blob_max)
        return cls(settings=settings, engine=engine, sessions=session_factory(engine), blobs=blobs,
                   _checkpointer=WalCheckpointer.for_engine(engine))

    def session(self):  # type: ignore[no-untyped-def]
        """``with app.session() as s:`` one committed transaction."""
        return session_scope(self.sessions)

    def directory(self, *, refresh: bool = False) -> TenantDirectory:
        """The tenant directory, re-read at most every few seconds (RCPT is a hot path)."""
        with self._lock:
            stale = time.monotonic() - self._directory_at > DIRECTORY_TTL
            if self._directory is None or stale or refresh:
                with self.session() as session:
                    self._directory = load_directory(session, self.settings.mail_domain)
                self._directory_at = time.monotonic()
            return self._directory

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        if isinstance(self.blobs, TieredBlobStore):
            self.blobs.close()
        self.engine.dispose()
