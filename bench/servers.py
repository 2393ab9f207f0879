"""Start the servers the benchmarks compare, each in its own process, and stop them again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from postroom.testing import free_port, process_tree

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
POSTROOM = str(VENV_BIN / "postroom")


def wait_for_smtp(port: int, timeout: float = 30.0) -> None:
    """Wait until something on ``port`` greets with 220."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no SMTP server came up on port {port}")


def listeners(port: int) -> set[int]:
    """The processes listening on ``port`` (from /proc/net/tcp and the fd tables)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def server_pids(port: int) -> set[int]:
    """Every process of the server listening on ``port``: the listeners and their children."""
    return set().union(*(process_tree(pid) for pid in listeners(port)))


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU time the processes have used so far (gone ones count 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_for_banner(proc: subprocess.Popen) -> None:
    """``postroom serve`` prints its banner once every gateway process listens; then drain its stderr."""
    seen = b""
    while b"postroom listening" not in seen:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"postroom serve exited: {seen.decode(errors='replace')}")
        seen += line
    threading.Thread(target=proc.stderr.read, daemon=True).start()


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def sink() -> Iterator[int]:
    """aiosmtpd with a handler that drops the mail."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.sink", str(port)], cwd=BENCH.parent,
                            stdout=subprocess.DEVNULL)
    try:
        wait_for_smtp(port)
        yield port
    finally:
        stop_process(proc)


def postroom_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ, POSTROOM_DATA_DIR=str(data_dir), POSTROOM_SMTP_LISTEN=f"127.0.0.1:{port}",
               POSTROOM_MAIL_DOMAIN="mail.test", POSTROOM_MAX_CONNECTIONS_PER_IP="200",
               POSTROOM_HTTP_LISTEN="127.0.0.1:0", POSTROOM_RATE_IP_PER_MINUTE="0", POSTROOM_RATE_SENDER_PER_MINUTE="0")
    env.update(extra)
    return env


@contextmanager
def postroom(*, processes: int = 1, workers: bool = False, env: dict[str, str] | None = None,
             data_dir: Path | None = None) -> Iterator[tuple[int, Path]]:
    """``postroom serve`` on the embedded default (SQLite + blob folder) in a fresh temp data dir."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="postroom-bench-", dir=data_dir) as tmp:
        data = Path(tmp) / "data"
        penv = postroom_env(data, port, **(env or {}))
        subprocess.run([POSTROOM, "tenant", "add", "acme"], env=penv, check=True, stdout=subprocess.DEVNULL)
        cmd = [POSTROOM, "serve"]
        if not workers:
            cmd.append("--no-workers")
        if processes > 1:
            cmd += ["--smtp-processes", str(processes)]
        proc = subprocess.Popen(cmd, env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_banner(proc)
            wait_for_smtp(port)
            yield port, data
        finally:
            stop_process(proc)
