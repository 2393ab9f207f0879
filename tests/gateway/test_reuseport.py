"""Several gateway processes on one port: each accepts connections and stores mail; the pipeline runs once.

Runs the real ``postroom serve --smtp-processes 3`` and finds, through
/proc, which process owns the server side of every client connection and
which processes listen; an extra gateway process killed with ``kill -9`` is
restarted, and none outlives a killed ``serve``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.app import App
from postroom.settings import Settings
from postroom.storage import inbound
from postroom.testing import free_port, make_eml, process_tree, wait_until

PROCESSES = 3
CONNECTIONS = 30

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")



def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(100).startswith(b"220")
    except OSError:
        return False


def _socket_owner(inode: str, pids: set[int]) -> int | None:
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that just exited
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


def _listeners(port: int, serve_pid: int) -> set[int]:
    """The processes of one ``serve`` that listen on 127.0.0.1:``port``."""
    inodes = [fields[9] for fields in map(str.split, Path("/proc/net/tcp").read_text().splitlines()[1:])
              if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port]
    return {pid for inode in inodes if (pid := _socket_owner(inode, process_tree(serve_pid))) is not None}


def _owner(server_port: int, client_port: int, pids: set[int]) -> int:
    """The pid holding the server end of the 127.0.0.1 connection from ``client_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if fields[3] == "01" and (local, remote) == (server_port, client_port):
            inode = fields[9]
    assert inode is not None, f"no server socket for client port {client_port}"
    owner = _socket_owner(inode, pids)
    assert owner is not None, f"no process owns socket inode {inode}"
    return owner


@pytest.fixture
def serve(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[tuple[int, int, list[str]]]:
    """The serve's pid, its SMTP port and the lines it writes to stderr."""
    port = free_port()
    env = dict(os.environ, POSTROOM_DATA_DIR=str(settings.data_dir), POSTROOM_DATABASE_URL=settings.database_url,
               POSTROOM_BROKER_URL=settings.broker_url, POSTROOM_MAIL_DOMAIN=settings.mail_domain,
               POSTROOM_SMTP_LISTEN=f"127.0.0.1:{port}", POSTROOM_HTTP_LISTEN="127.0.0.1:0",
               POSTROOM_RULES_DIR=settings.rules_dir, POSTROOM_WORKER_THREADS="2",
               POSTROOM_MAX_CONNECTIONS_PER_IP=str(CONNECTIONS))
    cli = Path(sys.executable).parent / "postroom"
    proc = subprocess.Popen([str(cli), "serve", "--smtp-processes", str(PROCESSES)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        banner = b""
        while b"postroom listening" not in banner:  # printed once every gateway process is ready
            line = proc.stderr.readline()
            assert line, f"postroom serve exited: {banner.decode(errors='replace')}"
            banner += line
        assert _greets(port)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(line.decode(errors="replace") for line in proc.stderr),
                         daemon=True).start()  # also keeps the pipe from filling up
        yield proc.pid, port, lines
    finally:
        proc.terminate()
        proc.wait(30)


def _all_done(app: App, count: int) -> list[inbound.InboundRecord] | None:
    with app.session() as session:
        rows = inbound.list_inbound(session, limit=1000)
    return rows if len(rows) == count and all(r.status == "done" for r in rows) else None


def test_every_process_accepts_and_stores_and_the_pipeline_runs_once(serve: tuple[int, int, list[str]],
                                                                     app: App) -> None:
    pid, port, _ = serve
    pids = process_tree(pid)
    clients = [smtplib.SMTP("127.0.0.1", port, timeout=20) for _ in range(CONNECTIONS)]
    owners = [_owner(port, client.sock.getsockname()[1], pids) for client in clients]
    assert len(set(owners)) == PROCESSES, f"connections per process: {[owners.count(p) for p in set(owners)]}"
    sent = {}
    for n, client in enumerate(clients):
        raw = make_eml(subject=f"reuseport {n}", to="inbox@acme.mail.test")
        client.sendmail("jean@example.com", ["inbox@acme.mail.test"], raw)
        sent[f"reuseport {n}"] = raw
        client.quit()

    def all_done() -> list[inbound.InboundRecord] | None:
        with app.session() as session:
            rows = inbound.list_inbound(session, limit=1000)
        return rows if len(rows) == CONNECTIONS and all(r.status == "done" for r in rows) else None

    rows = wait_until(all_done, timeout=90, interval=0.2)
    assert {r.subject: app.blobs.get(r.sha256) for r in rows} == sent
    assert all(r.attempts == 1 for r in rows)  # claimed and processed once, by the one set of workers
    time.sleep(0.5)
    with app.session() as session:
        assert len(inbound.list_inbound(session, limit=1000)) == CONNECTIONS


def test_a_killed_gateway_process_is_restarted_and_accepts_mail(serve: tuple[int, int, list[str]], app: App) -> None:
    pid, port, lines = serve

    def extra_listeners() -> set[int] | None:
        found = _listeners(port, pid) - {pid}
        return found if len(found) == PROCESSES - 1 else None

    extra = wait_until(extra_listeners)
    victim = min(extra)
    os.kill(victim, signal.SIGKILL)
    restarted = wait_until(lambda: (found - extra) if (found := extra_listeners()) and victim not in found else None,
                           timeout=30)
    assert wait_until(lambda: [line for line in lines if f"(pid {victim}) exited with -9; restarting it in" in line])

    clients = [smtplib.SMTP("127.0.0.1", port, timeout=20) for _ in range(CONNECTIONS)]
    owners = [_owner(port, client.sock.getsockname()[1], process_tree(pid)) for client in clients]
    assert restarted & set(owners), "no connection reached the restarted process"
    for n, client in enumerate(clients):
        client.sendmail("jean@example.com", ["inbox@acme.mail.test"],
                        make_eml(subject=f"after restart {n}", to="inbox@acme.mail.test"))
        client.quit()
    rows = wait_until(lambda: _all_done(app, CONNECTIONS), timeout=90, interval=0.2)
    assert sorted(r.subject for r in rows) == sorted(f"after restart {n}" for n in range(CONNECTIONS))


def test_no_gateway_process_outlives_a_killed_serve(serve: tuple[int, int, list[str]]) -> None:
    pid, port, _ = serve
    children = process_tree(pid) - {pid}
    assert len(_listeners(port, pid) & children) == PROCESSES - 1
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(Path(f"/proc/{child}").exists() for child in children) or None, timeout=15,
               interval=0.1)
