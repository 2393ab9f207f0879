"""deploy/compose.yaml's topology without containers, on this machine: check that it starts and moves mail.

    .venv/bin/python deploy/run_local.py [--keep]

Against the local PostgreSQL (127.0.0.1:5432, user postgres, a fresh database
created here and dropped at the end), Redis (127.0.0.1:6379, a key namespace
of its own) and moto's standalone S3 server (started here, as MinIO in the
compose file): one ``postroom init``, one ``postroom serve --no-workers
--no-migrate``, two ``postroom worker --no-migrate``. It sends a mail over
SMTP, waits until /metrics shows it processed and checks that its raw bytes
are objects in the bucket. Exit code 0 when all of it worked; each step is one
line on stdout. ``--keep`` leaves everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
BUCKET = "postroom-local"


class Failed(Exception):
    """A step did not work; the message says which."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe: Callable[[], object], timeout: float, procs: list[subprocess.Popen] = ()) -> None:
    """Poll ``probe`` until truthy; fail early if one of ``procs`` died."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if probe():
                return
        for proc in procs:
            if proc.poll() is not None:
                raise Failed(f"{what}: {' '.join(map(str, proc.args[1:3]))} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"postroom_local_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def processes(logs: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start long-running processes (own process group, output to a log file); stop them all at the end."""
    started: list[subprocess.Popen] = []

    def start(name: str, *argv: str, env: dict[str, str]) -> subprocess.Popen:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process below
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(started):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.log.close()  # type: ignore[attr-defined]


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "postroom"), *args], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise Failed(f"postroom {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def topology(workdir: Path, keep: bool) -> None:
    logs = workdir / "logs"
    logs.mkdir()
    s3_port, smtp_port, http_port = free_port(), free_port(), free_port()
    s3 = f"http://127.0.0.1:{s3_port}"
    with scratch_database() as database_url, processes(logs) as start:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTROOM_", "AWS_"))}
        env.update(
            POSTROOM_DATABASE_URL=database_url, POSTROOM_BROKER_URL=REDIS,
            POSTROOM_BROKER_NAMESPACE=f"postroom-local-{uuid.uuid4().hex[:8]}",
            POSTROOM_BLOB_URL=f"s3://{BUCKET}/blobs", POSTROOM_INLINE_BLOB_MAX="0",  # every raw message to S3
            AWS_ENDPOINT_URL_S3=s3, AWS_ACCESS_KEY_ID="postroom", AWS_SECRET_ACCESS_KEY="local",
            AWS_DEFAULT_REGION="us-east-1", POSTROOM_DATA_DIR=str(workdir / "data"), POSTROOM_MAIL_DOMAIN="mail.test",
            POSTROOM_SMTP_LISTEN=f"127.0.0.1:{smtp_port}", POSTROOM_HTTP_LISTEN=f"127.0.0.1:{http_port}",
            POSTROOM_WORKER_THREADS="2",
        )
        print(f"database {database_url.rsplit('/', 1)[1]} created; logs in {logs}", flush=True)
        moto = start("s3", str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port), env=env)
        wait_for("S3 server", lambda: http_ok(f"{s3}/moto-api/"), 30, [moto])
        import boto3

        s3_client = boto3.client("s3", endpoint_url=s3, aws_access_key_id="postroom", aws_secret_access_key="local",
                                 region_name="us-east-1")
        s3_client.create_bucket(Bucket=BUCKET)
        print(f"S3 (moto) on {s3}, bucket {BUCKET}", flush=True)
        print(run(env, "init"), flush=True)
        run(env, "tenant", "add", "acme")
        serve = start("serve", str(BIN / "postroom"), "serve", "--no-workers", "--no-migrate", env=env)
        workers = [start(f"worker-{n}", str(BIN / "postroom"), "worker", "--no-migrate", env=env) for n in (1, 2)]
        everyone = [moto, serve, *workers]
        wait_for("serve ready", lambda: http_ok(f"http://127.0.0.1:{http_port}/readyz"), 60, everyone)
        wait_for("workers running", lambda: all(b"postroom worker running" in (logs / f"worker-{n}.log").read_bytes()
                                                for n in (1, 2)), 60, everyone)
        print(f"serve on smtp 127.0.0.1:{smtp_port} and http 127.0.0.1:{http_port}, 2 workers", flush=True)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.sendmail("jean@example.com", ["inbox@acme.mail.test"],
                            b"From: Jean <jean@example.com>\r\nTo: inbox@acme.mail.test\r\nSubject: run_local\r\n"
                            b"Message-ID: <run-local@example.com>\r\n\r\nWhen is the key handover?\r\n")
        print("mail sent", flush=True)

        wait_for("mail processed", lambda: _done_rows(database_url) == 1, 30, everyone)
        objects = s3_client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
        if not objects:
            raise Failed("the raw message is not in the S3 bucket")
        print(f"mail processed by the workers; {objects} object(s) in s3://{BUCKET}", flush=True)
        if keep:
            print("running; Ctrl-C stops everything", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()


def _done_rows(database_url: str) -> int:
    """Inbound rows the workers finished (serve runs --no-workers, so only they can have)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM inbound_messages WHERE status = 'done'")).scalar_one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postroom-local-") as workdir:
        try:
            topology(Path(workdir), args.keep)
        except Failed as exc:
            print(f"run_local: {exc}", file=sys.stderr)
            for log in sorted((Path(workdir) / "logs").glob("*.log")):
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
            return 1
    print("run_local: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
