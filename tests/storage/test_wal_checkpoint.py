"""The background WAL checkpointer: committed rows reach the database file without a commit checkpointing inline."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from postroom.app import App
from postroom.settings import Settings
from postroom.storage import db, tenants
from postroom.testing import wait_until


def _tenants_in_main_file(database: Path, scratch: Path) -> int:
    """Tenants visible in a copy of the database file alone, as if its WAL were lost."""
    shutil.copyfile(database, scratch)
    with sqlite3.connect(scratch) as conn:
        try:
            return conn.execute("SELECT count(*) FROM tenants").fetchone()[0]
        except sqlite3.OperationalError:  # not even the schema has been copied yet
            return 0


def test_commits_are_copied_into_the_database_file_in_the_background(settings: Settings, tmp_path: Path) -> None:
    if settings.database_url:
        pytest.skip("SQLite's write-ahead log only")
    app = App.open(settings)
    try:
        database = Path(app.engine.url.database)
        with app.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == db.AUTOCHECKPOINT_PAGES
        with app.session() as session:
            for n in range(50):
                tenants.add_tenant(session, f"tenant{n}")
        # far below the autocheckpoint threshold: only the background pass can have copied these
        wait_until(lambda: _tenants_in_main_file(database, tmp_path / "copy.db") == 50 or None,
                   timeout=10 * db.CHECKPOINT_EVERY, interval=0.05)
    finally:
        app.close()
