"""Crash test: every message that got a 250 is stored and processed exactly once, whatever kill -9 does.

Runs ``postroom serve`` (embedded: SQLite or --database-url, in-process
workers) in a temp data dir, sends N messages with unique Message-IDs over many
connections and SIGKILLs the server at random moments (at random acknowledged
counts, so exactly --kills kills land mid-send), restarting it at once. Clients
behave like an MTA: anything that did not get a 250 is retried with the same
bytes. After sending, one more kill is aimed at a moment when rows are being
processed (a worker killed mid-stage). Then the service runs until every row
is finished and the result is counted by Message-ID over blobs, inbound rows
and processed rows. The last line is exactly
``acknowledged A, stored S, duplicated D, lost L``; exit 0 only if D = L = 0 and S = A.

    .venv/bin/python bench/crash.py --messages 5000 --kills 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

from postroom.app import App
from postroom.settings import load_settings
from postroom.storage import tenants
from postroom.testing import free_port, make_eml

MAIL_DOMAIN = "mail.test"
RCPT = f"inbox@acme.{MAIL_DOMAIN}"
_MSGID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.IGNORECASE | re.MULTILINE)
TERMINAL = ("done", "parse_failed", "failed", "rejected", "discarded", "dropped")


@dataclass
class Figures:
    sent: int = 0
    acknowledged: int = 0
    attempts: int = 0
    refused: int = 0
    kills: int = 0
    stage_kills: int = 0
    rows_processing_at_kills: int = 0
    stored: int = 0
    duplicated: int = 0
    lost: int = 0
    reprocessed: int = 0
    orphan_temp_files: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.stored == self.acknowledged

    def last_line(self) -> str:
        return (f"acknowledged {self.acknowledged}, stored {self.stored}, "
                f"duplicated {self.duplicated}, lost {self.lost}")



class Server:
    """One ``postroom serve`` subprocess that can be SIGKILLed and restarted on the same port."""

    def __init__(self, env: dict[str, str], port: int, log: Path, options: tuple[str, ...] = ()) -> None:
        self.env, self.port, self.log, self.options = env, port, log, options
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", "from postroom.cli import main; main()", "serve",
                                          *self.options],
                                         env=self.env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postroom serve exited with {self.proc.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"postroom serve did not listen within {timeout} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class Run:
    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.port = free_port()
        self.env = {
            **os.environ,
            "POSTROOM_DATA_DIR": str(data_dir), "POSTROOM_MAIL_DOMAIN": MAIL_DOMAIN,
            "POSTROOM_SMTP_LISTEN": f"127.0.0.1:{self.port}", "POSTROOM_HTTP_LISTEN": "127.0.0.1:0",
            "POSTROOM_BROKER_URL": "",
            "POSTROOM_DATABASE_URL": args.database_url, "POSTROOM_RATE_IP_PER_MINUTE": "0",
            "POSTROOM_RATE_SENDER_PER_MINUTE": "0", "POSTROOM_MAX_CONNECTIONS_PER_IP": "1000",
            "POSTROOM_PROCESSING_LEASE_SECONDS": "1", "POSTROOM_DKIM_VERIFY": "0", "POSTROOM_WORKER_THREADS": "2",
        }
        self.settings = load_settings(environ=self.env)
        self.server = Server(self.env, self.port, data_dir / "serve.log")
        self.rng = random.Random(args.seed)
        self.messages = {
            f"crash-{i}@bench.test": make_eml(message_id=f"<crash-{i}@bench.test>", to=RCPT,
                                              subject=f"crash test {i}", body=f"message {i}\n")
            for i in range(args.messages)
        }
        self.todo = list(self.messages)
        self.acked: set[str] = set()
        self.lock = threading.Lock()
        self.server_ready = threading.Event()
        self.figures = Figures(sent=len(self.messages))
        self.engine = create_engine(self.settings.resolved_database_url)

    def setup(self) -> None:
        app = App.open(self.settings)
        with app.session() as session:
            tenants.add_tenant(session, "acme", "Acme")
        app.close()

    def processing_rows(self) -> int:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM inbound_messages WHERE status = 'processing'")).scalar()
        except Exception:
            return 0

    def kill_and_restart(self, *, stage: bool = False) -> None:
        self.server_ready.clear()
        self.figures.rows_processing_at_kills += self.processing_rows()
        self.server.kill()
        self.figures.kills += 1
        self.figures.stage_kills += int(stage)
        self.server.start()
        self.server_ready.set()

    def next_message(self) -> str | None:
        with self.lock:
            return self.todo.pop() if self.todo else None

    def gateways_up(self) -> list[tuple[threading.Event, int]]:
        """(set while it accepts, port) of each gateway a client may use; it moves to the next one on failure."""
        return [(self.server_ready, self.port)]

    def sender(self, deadline: float) -> None:
        gateways = self.gateways_up()
        which = random.randrange(len(gateways))
        client: smtplib.SMTP | None = None
        mid = self.next_message()
        while mid is not None and time.monotonic() < deadline:
            try:
                up, port = gateways[which]
                up.wait(60)
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
                with self.lock:
                    self.figures.attempts += 1
                client.sendmail("sender@example.com", [RCPT], self.messages[mid])
                with self.lock:
                    self.acked.add(mid)
                mid = self.next_message()
            except (smtplib.SMTPException, OSError):
                with self.lock:
                    self.figures.refused += 1
                if client is not None:
                    with contextlib.suppress(OSError):
                        client.close()
                client = None
                which = (which + 1) % len(gateways)  # another MX, when there is one
                time.sleep(self.rng.uniform(0.02, 0.2))
        if client is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()

    def send_with_kills(self) -> None:
        total = len(self.messages)
        thresholds = sorted(self.rng.randint(max(1, total // 10), max(1, total * 9 // 10))
                            for _ in range(self.args.kills))
        deadline = time.monotonic() + self.args.timeout
        threads = [threading.Thread(target=self.sender, args=(deadline,), daemon=True)
                   for _ in range(self.args.connections)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            if thresholds and len(self.acked) >= thresholds[0]:
                thresholds.pop(0)
                self.kill_and_restart()
            time.sleep(0.01)
        if time.monotonic() >= deadline:
            self.figures.notes.append(f"sending stopped at the {self.args.timeout} s deadline")

    def stage_kill(self) -> None:
        """Kill the service while at least one row is mid-stage (bounded wait), then restart it."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.processing_rows() > 0:
                self.kill_and_restart(stage=True)
                return
            time.sleep(0.005)
        self.figures.notes.append("no row was mid-stage within 10 s after sending; stage kill skipped")

    def wait_finished(self) -> None:
        deadline = time.monotonic() + self.args.settle
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                busy = conn.execute(text("SELECT count(*) FROM inbound_messages WHERE status NOT IN "
                                         f"({', '.join(repr(s) for s in TERMINAL)})")).scalar()
            if not busy:
                return
            time.sleep(0.5)
        self.figures.notes.append(f"rows still unfinished after {self.args.settle} s")

    def stored_blob_ids(self) -> Counter[str]:
        """The Message-ID of every blob in the file store, one count per stored copy."""
        blob_ids: Counter[str] = Counter()
        root = Path(self.settings.resolved_blob_url.removeprefix("file://"))
        for path in root.rglob("*"):
            if path.is_file() and ".tmp-" in path.name:
                self.figures.orphan_temp_files += 1  # a write cut by SIGKILL before its rename: garbage, not data
            elif path.is_file():
                found = _MSGID.search(path.read_bytes())
                if found:
                    blob_ids[found.group(1).decode()] += 1
        return blob_ids

    def count(self) -> None:
        """Count by Message-ID over blobs (files and blob_data rows), inbound rows (via their blob), processed rows."""
        app = App.open(self.settings, migrate=False)
        blob_ids = self.stored_blob_ids()
        with self.engine.connect() as conn:  # small messages are stored in the database (tiered_blobs)
            for (data,) in conn.execute(text("SELECT data FROM blob_data")):
                found = _MSGID.search(bytes(data))
                if found:
                    blob_ids[found.group(1).decode()] += 1
        row_ids: Counter[str] = Counter()
        done_ids: Counter[str] = Counter()
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT sha256, status, message_id, attempts FROM inbound_messages")).all()
        for sha, status, message_id, attempts in rows:
            found = _MSGID.search(app.blobs.get(sha)) if app.blobs.exists(sha) else None
            mid = found.group(1).decode() if found else f"<missing blob {sha}>"
            row_ids[mid] += 1
            if status == "done" and (message_id or "").strip("<>") == mid:
                done_ids[mid] += 1
            self.figures.reprocessed += int(attempts > 1)
        app.close()
        self.figures.acknowledged = len(self.acked)
        self.figures.stored = sum(1 for m in self.acked if blob_ids[m] >= 1 and row_ids[m] >= 1 and done_ids[m] >= 1)
        self.figures.lost = len(self.acked) - self.figures.stored
        every = set(blob_ids) | set(row_ids)
        duplicated = sorted(m for m in every if blob_ids[m] > 1 or row_ids[m] > 1 or done_ids[m] > 1)
        self.figures.duplicated = len(duplicated)
        for mid in duplicated[:5]:
            self.figures.notes.append(f"duplicate {mid}: {blob_ids[mid]} blobs, {row_ids[mid]} rows, "
                                      f"{done_ids[mid]} done rows")
        stray = every - set(self.messages)
        if stray:
            self.figures.notes.append(f"{len(stray)} stored items are not messages this run sent")

    def start_servers(self) -> None:
        """Every process the run needs, up and taking mail (a subclass may run several)."""
        self.server.start()

    def stop_servers(self) -> None:
        self.server.stop()

    def run(self) -> Figures:
        started = time.monotonic()
        self.setup()
        self.start_servers()
        self.server_ready.set()
        try:
            self.send_with_kills()
            if self.args.stage_kill:
                self.stage_kill()
            self.wait_finished()
        finally:
            self.stop_servers()
        self.count()
        self.engine.dispose()
        self.figures.seconds = round(time.monotonic() - started, 1)
        return self.figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs while sending (at random ack counts)")
    parser.add_argument("--no-stage-kill", dest="stage_kill", action="store_false",
                        help="skip the extra kill aimed at rows being processed")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900, help="give up sending after this many seconds")
    parser.add_argument("--settle", type=float, default=120, help="wait this long for processing to finish")
    parser.add_argument("--database-url", default="", help="default: SQLite in the temp data dir")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    tmp = tempfile.mkdtemp(prefix="postroom-crash-")
    try:
        figures = Run(args, Path(tmp) / "data").run()
        print(f"seed {args.seed}; sent {figures.sent} messages over {args.connections} connections in "
              f"{figures.seconds} s; {figures.attempts} SMTP attempts, {figures.refused} failed and retried")
        mid_send = figures.kills - figures.stage_kills
        print(f"kills {figures.kills} (mid-send {mid_send}, mid-stage {figures.stage_kills}); "
              f"rows in processing at the kills: {figures.rows_processing_at_kills}; "
              f"rows processed more than once after a kill (idempotent re-run): {figures.reprocessed}; "
              f"blob temp files left by killed writes: {figures.orphan_temp_files}")
        for note in figures.notes:
            print(f"note: {note}")
        if args.keep:
            print(f"data kept in {tmp}")
        if args.json:
            args.json.write_text(json.dumps({**asdict(figures), "seed": args.seed, "ok": figures.ok}, indent=2))
        print(figures.last_line())
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
