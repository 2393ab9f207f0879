"""Assemble and run postroom's parts: storage, pipeline workers, SMTP gateway.

``postroom serve`` and the end-to-end tests both use ``Service``, so what is
tested is what runs. ``SmtpProcesses`` adds gateway processes on the same
port (SO_REUSEPORT) so receiving is not capped by one interpreter's GIL.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from postroom.app import App
from postroom.gateway.handler import GatewayHandler
from postroom.gateway.ratelimit import rate_limits
from postroom.gateway.screen import DataScreen
from postroom.gateway.server import Gateway
from postroom.ingress.imap import MailboxFetchers
from postroom.ingress.ses import SesInbound
from postroom.metrics import StageMetrics
from postroom.queue.actors import OUTBOUND_QUEUE, Pipeline
from postroom.queue.processes import WorkerProcesses
from postroom.queue.runtime import build_pipeline
from postroom.queue.wakeup import WakeListener
from postroom.settings import Settings
from postroom.storage.intake import GroupCommitter
from postroom.web import create_app
from postroom.web.server import HttpServer

log = logging.getLogger(__name__)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key or None)
    return context


@dataclass
class Service:
    settings: Settings
    run_smtp: bool = True
    run_workers: bool = True
    run_http: bool = True
    run_ingress: bool = True  # IMAP fetchers and the SES consumer (not in the extra SMTP processes)
    reuse_port: bool = False
    migrate: bool = True
    dispatch: Callable[[Iterable[int]], None] | None = None  # where accepted ids go; default this pipeline
    app: App = field(init=False)
    pipeline: Pipeline = field(init=False)
    workers: WorkerProcesses | None = field(default=None, init=False)
    committer: GroupCommitter | None = field(default=None, init=False)
    gateway: Gateway | None = field(default=None, init=False)
    http: HttpServer | None = field(default=None, init=False)
    wake: WakeListener | None = field(default=None, init=False)
    mailboxes: MailboxFetchers | None = field(default=None, init=False)
    ses: SesInbound | None = field(default=None, init=False)

    def start(self) -> Service:
        self.app = App.open(self.settings, migrate=self.migrate)
        if self.run_workers and self.settings.worker_processes:
            self.workers = WorkerProcesses(self.settings, self.settings.worker_processes).start()
        sink = self.workers.dispatch if self.workers is not None and not self.settings.broker_url else None
        self.pipeline = build_pipeline(self.app, StageMetrics(), inbound_sink=sink)
        if self.run_workers:
            # with worker processes, this one only delivers outbound mail queued here (staff replies, API)
            self.pipeline.start_worker(self.settings.worker_threads,
                                       queues={OUTBOUND_QUEUE} if self.workers is not None else None)
            recovered = self.pipeline.recover()
            if recovered:
                log.info("re-enqueued %s unfinished inbound messages", recovered)
            self.pipeline.start_sweeper()
            if not self.settings.broker_url:  # commands reach this in-process broker through the wake-up socket
                self.wake = WakeListener(self.settings.data_dir, self.pipeline.dispatch,
                                         self.pipeline.dispatch_outbound).start()
        if self.run_ingress:
            self.mailboxes = MailboxFetchers(self.app, self.pipeline.dispatch).start()
            if self.settings.ses_inbound_queue_url:
                self.ses = SesInbound(self.app, self.pipeline.dispatch).start()
        if self.run_smtp:
            self.committer = GroupCommitter(self.app.sessions, self.app.blobs)
            handler = GatewayHandler(self.app.directory, self.committer.submit, self.dispatch or self.pipeline.dispatch,
                                     max_recipients=self.settings.max_recipients,
                                     limits=rate_limits(self.settings),
                                     screen=DataScreen(self.settings, self.app.directory).check)
            host, port = self.settings.smtp_address
            self.gateway = Gateway(
                handler, host, port, hostname=self.settings.mail_domain,
                data_size_limit=self.settings.max_message_size,
                max_connections_per_ip=self.settings.max_connections_per_ip,
                timeout=self.settings.smtp_timeout, data_timeout=self.settings.smtp_data_timeout,
                tls_context=tls_context(self.settings),
                reuse_port=self.reuse_port,
            )
            self.gateway.start()
        if self.run_http:
            host, port = self.settings.http_address
            api = create_app(self.app, self.pipeline.dispatch, self.pipeline.dispatch_outbound)
            self.http = HttpServer(api, host, port)
            self.http.start()
        return self

    @property
    def smtp_port(self) -> int:
        assert self.gateway is not None
        return self.gateway.port

    @property
    def http_url(self) -> str:
        assert self.http is not None
        return self.http.url

    def stop(self) -> None:
        if self.mailboxes is not None:
            self.mailboxes.stop()
        if self.ses is not None:
            self.ses.stop()
        if self.wake is not None:
            self.wake.stop()
        if self.http is not None:
            self.http.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.committer is not None:
            self.committer.close()
        self.pipeline.stop()
        if self.workers is not None:
            self.workers.stop()
        self.app.close()


def _smtp_process(settings: Settings, ids: multiprocessing.Queue | None, ready: multiprocessing.Queue) -> None:
    """Body of one extra gateway process: SMTP only, no workers, no HTTP, no migrations."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    relay = (lambda batch: ids.put(list(batch))) if ids is not None else None
    service = Service(settings, run_workers=False, run_http=False, run_ingress=False, reuse_port=True,
                      migrate=False, dispatch=relay).start()
    ready.put(os.getpid())
    stop.wait()
    service.stop()


class SmtpProcesses:
    """``count`` extra gateway processes listening on the same port as the main one (SO_REUSEPORT).

    Each has its own event loop and group committer; SQLite (WAL, BEGIN
    IMMEDIATE, busy timeout) or PostgreSQL serialises their commits. With the
    in-process broker the ids they accept are relayed to ``dispatch`` (the main
    process's pipeline), so the workers run once, in the main process; with
    Redis or RabbitMQ they enqueue directly.
    """

    def __init__(self, settings: Settings, count: int, dispatch: Callable[[Iterable[int]], None] | None) -> None:
        self.settings = settings
        self.count = count
        self.dispatch = dispatch
        self.pids: list[int] = []
        self._ctx = multiprocessing.get_context("spawn")  # the parent already runs threads: never fork it
        self._ids: multiprocessing.Queue | None = None
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._relay: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> SmtpProcesses:
        ready: multiprocessing.Queue = self._ctx.Queue()
        if self.dispatch is not None and not self.settings.broker_url:
            self._ids = self._ctx.Queue()
            self._relay = threading.Thread(target=self._relay_ids, name="postroom-smtp-relay", daemon=True)
            self._relay.start()
        for n in range(self.count):
            proc = self._ctx.Process(target=_smtp_process, args=(self.settings, self._ids, ready),
                                     name=f"postroom-smtp-{n + 1}", daemon=True)
            proc.start()
            self._procs.append(proc)
        try:
            self.pids = [ready.get(timeout=timeout) for _ in self._procs]
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.count} extra SMTP process(es) did not start within {timeout:.0f} s") from None
        return self

    def _relay_ids(self) -> None:
        assert self._ids is not None and self.dispatch is not None
        while (batch := self._ids.get()) is not None:
            self.dispatch(batch)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(20)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs.clear()
        if self._ids is not None:
            self._ids.put(None)
            if self._relay is not None:
                self._relay.join(10)
