"""Fetch tenants' IMAP mailboxes into the durable intake.

One fetcher thread per mailbox. Each holds a lease on its mailbox row (two
``serve`` processes never fetch one folder at once), reads the UIDs past the
cursor, stores a batch (blob + rows committed), then marks the messages seen
or moves them, then moves the cursor, then hands the ids to the pipeline. A
crash anywhere re-reads from the cursor and the per-tenant SHA-256 dedup keeps
every message single; nothing is marked before its row is committed, and
nothing the cursor passed is left unmarked. A new
UIDVALIDITY resets the cursor: everything is read again, dedup absorbs it.
IDLE is used where the server offers it, polling otherwise; errors back off
exponentially and are kept on the row for ``postroom mailbox list`` and
``/metrics``.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import random
import re
import select
import shlex
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from postroom.app import App
from postroom.errors import PostroomError
from postroom.ingress.intake import Dispatch, hand_on, inbox_of, item_for, store
from postroom.storage import ingress as mailboxes
from postroom.storage.ingress import MailboxRecord

log = logging.getLogger(__name__)

BATCH = 50  # messages per fetch and commit
CONNECT_TIMEOUT = 30.0
TICK = 0.5  # how often waits look at the stop flag and the lease
REFRESH_SECONDS = 10.0  # how often the supervisor looks for added or removed mailboxes
_UID = re.compile(rb"UID (\d+)")


class LeaseLost(Exception):
    """Another process holds this mailbox now: stop fetching it."""


class ImapFailure(PostroomError):
    """The server refused something (login, SELECT, FETCH...)."""


@dataclass(frozen=True)
class MailboxUrl:
    scheme: str  # imaps (TLS) or imap (plain, for tests and local relays)
    user: str
    host: str
    port: int
    folder: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_url(url: str) -> MailboxUrl:
    """imaps://user@host[:port]/Folder (INBOX when no folder); a password in the URL is refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps"):
        raise PostroomError(f"{url!r}: use imaps://user@host/FOLDER (or imap:// for a local, plain server)")
    if parts.password is not None:
        raise PostroomError("put the password in a file (--password-file), not in the URL")
    if not parts.hostname or not parts.username:
        raise PostroomError(f"{url!r}: the URL needs a user and a host (imaps://user@host/INBOX)")
    try:
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
    except ValueError as exc:
        raise PostroomError(f"{url!r}: {exc}") from None
    return MailboxUrl(parts.scheme, unquote(parts.username), parts.hostname, port,
                      unquote(parts.path.lstrip("/")) or "INBOX")


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(result: tuple[str, list], what: str) -> list:
    kind, data = result
    if kind != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise ImapFailure(f"{what} refused: {text}")
    return data


def _token(command: str) -> str:
    """Run the configured command and read an OAuth2 access token from its output (first line)."""
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise ImapFailure(f"token command failed: {exc}") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise ImapFailure(f"token command exited {done.returncode}: {done.stderr.strip()[:200]}")
    return done.stdout.strip().splitlines()[0]


class Connection:
    """One logged-in IMAP session on one folder: what the fetcher needs, on top of imaplib."""

    def __init__(self, record: MailboxRecord, timeout: float = CONNECT_TIMEOUT) -> None:
        self.url = parse_url(record.url)
        self.after = record.after
        if self.url.scheme == "imaps":
            self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.url.host, self.url.port, timeout=timeout,
                                                         ssl_context=ssl.create_default_context())
        else:
            self.imap = imaplib.IMAP4(self.url.host, self.url.port, timeout=timeout)
        try:
            if record.auth == "xoauth2":
                bearer = f"user={self.url.user}\x01auth=Bearer {_token(record.secret)}\x01\x01".encode()
                _check(self.imap.authenticate("XOAUTH2", lambda _: bearer), "XOAUTH2 login")
            else:
                _check(self.imap.login(self.url.user, record.secret), "login")
            caps = _check(self.imap.capability(), "CAPABILITY")
            self.capabilities = frozenset(caps[-1].decode().upper().split()) if caps and caps[-1] else frozenset()
            _check(self.imap.select(_quote(self.url.folder)), f"SELECT {self.url.folder}")
            self.uidvalidity = int(self.imap.response("UIDVALIDITY")[1][-1])
        except BaseException:
            self.close()
            raise

    def uids_after(self, last_uid: int) -> list[int]:
        data = _check(self.imap.uid("SEARCH", f"UID {last_uid + 1}:*"), "UID SEARCH")
        return sorted(uid for uid in map(int, (data[0] or b"").split()) if uid > last_uid)

    def fetch(self, uids: list[int]) -> list[tuple[int, bytes]]:
        """Raw bytes of the messages (BODY.PEEK: fetching never sets \\Seen); expunged ones are simply absent."""
        data = _check(self.imap.uid("FETCH", ",".join(map(str, uids)), "(UID BODY.PEEK[])"), "UID FETCH")
        found: list[tuple[int, bytes]] = []
        for index, part in enumerate(data):
            if not isinstance(part, tuple):
                continue
            match = _UID.search(part[0])
            if match is None and index + 1 < len(data) and isinstance(data[index + 1], bytes):
                match = _UID.search(data[index + 1])
            if match is not None:
                found.append((int(match.group(1)), part[1]))
        return found

    def settle(self, uids: list[int]) -> None:
        """What ``after`` says, for messages whose rows are committed: mark seen, move, or leave them."""
        if not uids or self.after == "none":
            return
        uid_set = ",".join(map(str, uids))
        if self.after == "seen":
            _check(self.imap.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Seen)"), "UID STORE")
            return
        folder = _quote(self.after.removeprefix("move:"))
        if "MOVE" in self.capabilities:
            _check(self.imap.uid("MOVE", uid_set, folder), "UID MOVE")
            return
        _check(self.imap.uid("COPY", uid_set, folder), "UID COPY")
        _check(self.imap.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Seen \Deleted)"), "UID STORE")
        if "UIDPLUS" in self.capabilities:  # without it EXPUNGE would also remove others' deleted mail: leave them
            _check(self.imap.uid("EXPUNGE", uid_set), "UID EXPUNGE")

    def idle(self, seconds: float, stop: threading.Event, tick: Callable[[], None]) -> None:
        """IDLE until the server reports something, ``seconds`` pass, or ``stop`` is set; ``tick`` runs meanwhile."""
        imap = self.imap
        tag = imap._new_tag()  # type: ignore[attr-defined]
        imap.send(tag + b" IDLE\r\n")
        line = imap.readline()
        if not line.startswith(b"+"):
            raise ImapFailure(f"IDLE refused: {line.decode(errors='replace').strip()}")
        sock = imap.socket()
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                break
            readable, _, _ = select.select([sock], [], [], TICK)
            if readable:
                break
            tick()
        imap.send(b"DONE\r\n")
        while True:
            line = imap.readline()
            if not line:
                raise imaplib.IMAP4.abort("connection closed during IDLE")
            if line.startswith(tag):
                if not line[len(tag):].strip().upper().startswith(b"OK"):
                    raise ImapFailure(f"IDLE ended with {line.decode(errors='replace').strip()}")
                return

    def close(self) -> None:
        try:
            self.imap.logout()
        except (imaplib.IMAP4.error, OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                self.imap.shutdown()


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def backoff(failures: int, cap: float) -> float:
    """1, 2, 4 ... seconds up to ``cap``, with jitter so that many failing mailboxes do not retry in step."""
    return min(cap, 2.0 ** max(0, failures - 1)) * random.uniform(0.8, 1.2)


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class MailboxFetcher:
    """Fetches one mailbox until stopped: lease, connect, catch up, IDLE or poll, repeat; back off on errors."""

    def __init__(self, app: App, mailbox_id: int, dispatch: Dispatch | None, owner: str,
                 stop: threading.Event | None = None) -> None:
        self.app = app
        self.mailbox_id = mailbox_id
        self.dispatch = dispatch
        self.owner = owner
        self.stop = stop or threading.Event()
        self.settings = app.settings
        self._renewed = 0.0
        self.thread: threading.Thread | None = None

    def start(self) -> MailboxFetcher:
        self.thread = threading.Thread(target=self.run, name=f"postroom-imap-{self.mailbox_id}", daemon=True)
        self.thread.start()
        return self

    def run(self) -> None:
        lease = self.settings.imap_lease_seconds
        try:
            while not self.stop.is_set():
                if not self._take_lease():
                    self.stop.wait(max(TICK, lease / 3))
                    continue
                try:
                    self.serve_once(forever=True)
                except LeaseLost:
                    log.info("mailbox %s: another process took it over", self.mailbox_id)
                except Exception as exc:
                    self._failed(exc)
        finally:
            with self.app.session() as session:
                mailboxes.release_lease(session, self.mailbox_id, self.owner)

    def fetch_now(self) -> int:
        """One catch-up under the lease (``postroom mailbox fetch``); how many messages were new."""
        if not self._take_lease():
            raise PostroomError(f"mailbox {self.mailbox_id} is being fetched by another process; try again later")
        try:
            return self.serve_once()
        finally:
            with self.app.session() as session:
                mailboxes.release_lease(session, self.mailbox_id, self.owner)

    def serve_once(self, forever: bool = False) -> int:
        """Connect and store what is new; with ``forever``, keep waiting (IDLE or poll) and storing until stopped."""
        record = self._record()
        connection = Connection(record)
        stored = 0
        try:
            while True:
                stored += self.catch_up(connection)
                if not forever or self.stop.is_set():
                    return stored
                if "IDLE" in connection.capabilities:
                    connection.idle(self.settings.imap_idle_seconds, self.stop, self._tick)
                else:
                    self._wait(self.settings.imap_poll_seconds)
        finally:
            connection.close()

    def catch_up(self, connection: Connection) -> int:
        """Store every message past the cursor, a batch at a time; return how many were new."""
        record = self._record()
        validity = connection.uidvalidity
        last_uid = record.last_uid
        if record.uidvalidity != validity:
            if record.uidvalidity is not None:
                log.warning("mailbox %s (%s): UIDVALIDITY changed %s -> %s, reading every message again",
                            record.id, record.url, record.uidvalidity, validity)
            last_uid = 0
            self._fenced(mailboxes.save_cursor, uidvalidity=validity, last_uid=0, backlog=0)
        uids = connection.uids_after(last_uid)
        inbox = inbox_of(self.app, record.tenant_id)
        peer = f"imap:{connection.url.host}"
        new = 0
        for done, chunk in enumerate(_chunks(uids, BATCH)):
            fetched = [(uid, raw) for uid, raw in connection.fetch(chunk) if raw.strip()]
            items = [item_for(raw, source="imap", tenant_rcpts={record.tenant_id: (inbox,)}, peer=peer)
                     for _, raw in fetched]
            ids = [i for row_ids in store(self.app, items) for i in row_ids]
            backlog = max(0, len(uids) - (done + 1) * BATCH)
            connection.settle([uid for uid, _ in fetched])  # before the cursor: a crash between them re-reads
            self._fenced(mailboxes.save_cursor, uidvalidity=validity, last_uid=chunk[-1], backlog=backlog)
            hand_on(self.dispatch, ids)
            new += len(ids)
            self._tick()
        self._fenced(mailboxes.record_success, backlog=0)
        return new

    def _record(self) -> MailboxRecord:
        with self.app.session() as session:
            return mailboxes.get_mailbox(session, self.mailbox_id)

    def _fenced(self, verb: Callable[..., bool], **values: object) -> None:
        with self.app.session() as session:
            if not verb(session, self.mailbox_id, self.owner, **values):
                raise LeaseLost(self.mailbox_id)

    def _take_lease(self) -> bool:
        with self.app.session() as session:
            taken = mailboxes.take_lease(session, self.mailbox_id, self.owner, self.settings.imap_lease_seconds)
        self._renewed = time.monotonic()
        return taken

    def _tick(self) -> None:
        """Extend the lease once a third of it has passed; LeaseLost if someone else has it."""
        if time.monotonic() - self._renewed >= self.settings.imap_lease_seconds / 3 and not self._take_lease():
            raise LeaseLost(self.mailbox_id)

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.stop.wait(TICK)
            self._tick()

    def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PostroomError) else str(exc)
        try:
            with self.app.session() as session:
                failures = mailboxes.record_failure(session, self.mailbox_id, error)
        except Exception as db_exc:  # the database is down too: keep backing off, say so once per attempt
            log.error("mailbox %s: %s; recording it failed: %s", self.mailbox_id, error, db_exc)
            failures = 1
        delay = backoff(failures, self.settings.imap_max_backoff_seconds)
        log.warning("mailbox %s: %s (failure %s, retrying in %.0f s)", self.mailbox_id, error, failures, delay)
        deadline = time.monotonic() + delay
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.stop.wait(TICK)
            try:
                self._tick()
            except LeaseLost:
                return


class MailboxFetchers:
    """Runs a fetcher per configured mailbox, following additions and removals (``postroom serve``)."""

    def __init__(self, app: App, dispatch: Dispatch | None) -> None:
        self.app = app
        self.dispatch = dispatch
        self.owner = owner_name()
        self._stop = threading.Event()
        self._fetchers: dict[int, tuple[MailboxFetcher, threading.Event]] = {}
        self._thread = threading.Thread(target=self._run, name="postroom-imap", daemon=True)

    def start(self) -> MailboxFetchers:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:
                log.warning("could not read the configured mailboxes: %s", exc)
            self._stop.wait(REFRESH_SECONDS)

    def refresh(self) -> None:
        with self.app.session() as session:
            wanted = {m.id for m in mailboxes.list_mailboxes(session)}
        for mailbox_id in set(self._fetchers) - wanted:
            fetcher, stop = self._fetchers.pop(mailbox_id)
            stop.set()
        for mailbox_id in wanted - set(self._fetchers):
            stop = threading.Event()
            self._fetchers[mailbox_id] = (MailboxFetcher(self.app, mailbox_id, self.dispatch, self.owner,
                                                         stop).start(), stop)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for _, stop in self._fetchers.values():
            stop.set()
        for fetcher, _ in self._fetchers.values():
            if fetcher.thread is not None:
                fetcher.thread.join(timeout=10)
        self._fetchers.clear()


class MailboxCollector(Collector):
    """Scrape-time gauges of every mailbox from the database: right whichever process fetches it."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        with self.app.session() as session:
            records = mailboxes.list_mailboxes(session)
        now = time.time()
        since = GaugeMetricFamily("postroom_mailbox_last_success_age_seconds", "Seconds since a mailbox was last "
                                  "fetched without error (the fetch lag)", labels=["mailbox", "tenant"])
        failures = GaugeMetricFamily("postroom_mailbox_failures", "Consecutive failed attempts on a mailbox",
                                     labels=["mailbox", "tenant"])
        backlog = GaugeMetricFamily("postroom_mailbox_backlog", "Messages past a mailbox's cursor at the last look",
                                    labels=["mailbox", "tenant"])
        for record in records:
            labels = [str(record.id), record.tenant]
            if record.last_success_at is not None:
                since.add_metric(labels, max(0.0, now - record.last_success_at.timestamp()))
            failures.add_metric(labels, record.failures)
            backlog.add_metric(labels, record.backlog)
        yield since
        yield failures
        yield backlog
