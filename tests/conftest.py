"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when
POSTROOM_DATABASE_URL is set), blobs in a temp folder, the broker from
POSTROOM_BROKER_URL (in-process when empty), a running Service, tenants."""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from postroom.app import App
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import tenants
from postroom.storage.db import make_engine
from postroom.storage.migrate import upgrade
from postroom.storage.tables import Base

MAIL_DOMAIN = "mail.test"
PG_URL = os.environ.get("POSTROOM_DATABASE_URL", "")
BROKER_URL = os.environ.get("POSTROOM_BROKER_URL", "")
# s3://bucket/prefix in .ci/run's S3 configuration (endpoint from AWS_ENDPOINT_URL_S3); empty = a temp folder
BLOB_URL = os.environ.get("POSTROOM_BLOB_URL", "")
INLINE_BLOB_MAX = int(os.environ.get("POSTROOM_INLINE_BLOB_MAX", Settings.inline_blob_max))
# Redis keys of this run only, so concurrent runs on one Redis never take each other's jobs.
BROKER_NAMESPACE = f"postroom-test-{uuid.uuid4().hex[:8]}"
#: The slow lane: tests using these fixtures, and every test of a module that starts a server or a subprocess itself.
SLOW_FIXTURES = frozenset({"service", "smtp"})
_STARTS_PROCESSES = re.compile(r"\bService\(|\bsubprocess\.|\bPopen\(|\bController\(|\bmultiprocessing\.")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow lane, so that ``pytest -m "not slow"`` runs the pure stages and the database tests only."""
    starts: dict[Path, bool] = {}
    for item in items:
        if item.path not in starts:
            starts[item.path] = bool(_STARTS_PROCESSES.search(item.path.read_text(encoding="utf-8")))
        if starts[item.path] or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """One scratch PostgreSQL database for the run, migrated once; None on SQLite."""
    if not PG_URL:
        yield None
        return
    base = make_url(PG_URL)
    name = f"postroom_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, pg_database: str | None) -> Settings:
    if pg_database:
        _truncate(pg_database)
    return Settings(
        data_dir=tmp_path / "data", database_url=pg_database or "", broker_url=BROKER_URL,
        blob_url=BLOB_URL, inline_blob_max=INLINE_BLOB_MAX,
        broker_namespace=BROKER_NAMESPACE,
        mail_domain=MAIL_DOMAIN, smtp_listen="127.0.0.1:0", http_listen="127.0.0.1:0",
        rules_dir=str(tmp_path / "rules"), worker_threads=2,
        worker_processes=0,  # workers as threads of the test's Service; tests/queue/test_worker_processes.py
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App.open(settings)
    yield application
    application.close()


@pytest.fixture
def tenant_ids(app: App) -> dict[str, int]:
    """Tenants acme and globex, with an alias support@ for acme."""
    with app.session() as session:
        acme = tenants.add_tenant(session, "acme", "Acme Builders")
        globex = tenants.add_tenant(session, "globex", "Globex Dealers")
        tenants.add_alias(session, "acme", "support")
    return {"acme": acme.id, "globex": globex.id}


def _flush_broker(service: Service) -> None:
    if BROKER_URL:
        service.pipeline.broker.flush_all()


@pytest.fixture
def service(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[Service]:
    """The real service: SMTP on an ephemeral 127.0.0.1 port plus pipeline workers."""
    svc = Service(settings)
    svc.start()
    _flush_broker(svc)
    yield svc
    svc.stop()


@pytest.fixture
def smtp(service: Service) -> Callable[[], smtplib.SMTP]:
    """Open real SMTP client connections to the running gateway."""
    opened: list[smtplib.SMTP] = []

    def connect() -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()


@pytest.fixture
def fixture_bytes() -> Callable[[str], bytes]:
    def load(relative: str) -> bytes:
        return (FIXTURES / relative).read_bytes()

    return load
