"""Operational mistakes through the real ``postroom`` command: one line on stderr, no traceback, the exit code.

Each case is what an operator gets wrong in the first hour (a file where the
data directory should be, a database that is down or missing, a port held by
another serve, TLS files, migrations, S3, the broker, a sentence where a file
is expected). ``--debug`` / POSTROOM_DEBUG=1 bring the traceback back.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from postroom.storage.db import make_engine
from postroom.storage.migrate import alembic_config, upgrade
from postroom.testing import free_port, make_eml

POSTROOM = str(Path(sys.executable).with_name("postroom"))
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """``postroom ARGS`` in a clean environment (no POSTROOM_* from the caller, e.g. CI's PostgreSQL URL)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("POSTROOM_", "AWS_"))}
    base.update(POSTROOM_DATA_DIR=str(tmp_path / "data"), POSTROOM_SMTP_LISTEN="127.0.0.1:0",
                POSTROOM_HTTP_LISTEN="127.0.0.1:0")

    def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([POSTROOM, *args], capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                              env={**base, **env})

    return run


def one_line(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single stderr line of a command that failed with ``code``."""
    lines = done.stderr.splitlines()
    assert done.returncode == code and len(lines) == 1 and "Traceback" not in done.stderr, \
        (done.returncode, done.stderr)
    return lines[0]


def pg_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


def test_data_directory_is_a_file(run: Run, tmp_path: Path) -> None:
    (tmp_path / "datafile").write_text("not a folder")
    line = one_line(run("tenant", "list", POSTROOM_DATA_DIR="datafile"))
    assert line == ("error: cannot use the data directory datafile: datafile is a file, not a directory; "
                    "set POSTROOM_DATA_DIR to a directory postroom may write")
    below = one_line(run("tenant", "list", POSTROOM_DATA_DIR="datafile/inside"))
    assert "a folder on the path datafile/inside is a file" in below


def test_debug_brings_the_traceback_back(run: Run, tmp_path: Path) -> None:
    (tmp_path / "datafile").write_text("not a folder")
    for done in (run("--debug", "tenant", "list", POSTROOM_DATA_DIR="datafile"),
                 run("tenant", "list", POSTROOM_DATA_DIR="datafile", POSTROOM_DEBUG="1")):
        assert done.returncode == 1
        assert "Traceback" in done.stderr and done.stderr.rstrip().endswith("File exists: 'datafile'")


def test_database_unreachable(run: Run) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    line = one_line(run("tenant", "list", POSTROOM_DATABASE_URL=url))
    assert line.startswith(f"error: cannot connect to the database {url}: ")
    assert "Connection refused" in line and line.endswith("is POSTROOM_DATABASE_URL right?")


@pytest.mark.skipif(not pg_reachable(), reason="PostgreSQL is not listening on 127.0.0.1:5432")
def test_init_on_a_missing_postgresql_database(run: Run) -> None:
    line = one_line(run("init", POSTROOM_DATABASE_URL=f"{PG_SERVER}/no_such_db_xyz"))
    assert line == (f"error: database no_such_db_xyz does not exist ({PG_SERVER}/no_such_db_xyz): create it "
                    "(createdb no_such_db_xyz) or point POSTROOM_DATABASE_URL at an existing one")


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "reuseport"])
def test_second_serve_while_the_smtp_port_is_taken(run: Run, reuse_port: bool) -> None:
    """The holder stands for a running serve (with --smtp-processes > 1 it listens with SO_REUSEPORT)."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = one_line(run("serve", POSTROOM_SMTP_LISTEN=f"127.0.0.1:{port}"))
    assert line == f"error: cannot listen on 127.0.0.1:{port}: address already in use (another postroom serve?)"


def test_unreadable_tls_files(run: Run, tmp_path: Path) -> None:
    missing = one_line(run("serve", POSTROOM_TLS_CERT=str(tmp_path / "nope.pem")))
    assert missing.startswith(f"error: cannot load TLS certificate {tmp_path / 'nope.pem'}")
    assert "No such file or directory" in missing and "POSTROOM_TLS_CERT" in missing
    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    garbage = one_line(run("serve", POSTROOM_TLS_CERT=str(tmp_path / "garbage.pem")))
    assert garbage.startswith(f"error: cannot load TLS certificate {tmp_path / 'garbage.pem'}: not a PEM certificate")


def _database_one_migration_behind(tmp_path: Path) -> str:
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        head = ScriptDirectory.from_config(alembic_config(engine)).get_revision("head")
        upgrade(engine, str(head.down_revision))
    finally:
        engine.dispose()
    return url


def test_serve_and_worker_without_migrating_refuse_an_old_schema(run: Run, tmp_path: Path) -> None:
    url = _database_one_migration_behind(tmp_path)
    for args, env in ((("serve", "--no-migrate"), {}),
                      (("worker", "--no-migrate"), {"POSTROOM_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"})):
        line = one_line(run(*args, POSTROOM_DATABASE_URL=url, **env))
        assert line.startswith("error: the database is at migration ") and "but this postroom needs" in line
        assert line.endswith("run `postroom init` (it applies the migrations) before serve and worker")


def test_database_migrated_by_a_newer_postroom(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    line = one_line(run("tenant", "list", POSTROOM_DATABASE_URL=url))
    assert line == ("error: the database is at migration 9999, which this postroom does not know "
                    "(migrated by a newer version?): upgrade postroom")


def test_blob_store_unreachable(run: Run) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    line = one_line(run("init", POSTROOM_BLOB_URL="s3://mail/raw", AWS_ENDPOINT_URL_S3=endpoint,
                        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
                        AWS_MAX_ATTEMPTS="1"))
    assert line.startswith(f"error: cannot reach the blob store s3://mail/raw: Could not connect to the endpoint URL: "
                           f'"{endpoint}/')
    assert line.endswith("is the S3 server running? (POSTROOM_BLOB_URL, AWS_ENDPOINT_URL_S3)")


def test_broker_unreachable_when_ingesting(run: Run, tmp_path: Path) -> None:
    """The rows are durable before the broker is asked, so ingest succeeds and says in one line what is left to do."""
    (tmp_path / "m.eml").write_bytes(make_eml(to="inbox@acme.mail.localhost"))
    assert run("tenant", "add", "acme").returncode == 0
    done = run("ingest", "--tenant", "acme", "m.eml", POSTROOM_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    lines = [line.strip() for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert lines[0] == "stored 1 messages for acme" and len(lines) == 2, lines  # the progress line, then:
    assert lines[1].startswith("could not enqueue inbound 1 (will be swept up later): ") and "refused" in lines[1]


def test_note_with_a_sentence_instead_of_a_file(run: Run) -> None:
    done = run("note", "1", "--as", "jan@acme.example", "--text", "Called the customer back")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "Usage: postroom note [OPTIONS] CONVERSATION_ID", "Try 'postroom note --help' for help.", "",
        "Error: Invalid value for '--text': File 'Called the customer back' does not exist."]
