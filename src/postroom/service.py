"""Assemble and run postroom's parts: storage, pipeline workers, SMTP gateway.

``postroom serve`` and the end-to-end tests both use ``Service``, so what is
tested is what runs. ``SmtpProcesses`` adds gateway processes on the same
port (SO_REUSEPORT) so receiving is not capped by one interpreter's GIL.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from postroom.app import App
from postroom.gateway.handler import GatewayHandler
from postroom.gateway.ratelimit import rate_limits
from postroom.gateway.screen import DataScreen
from postroom.gateway.server import Gateway
from postroom.ingress.imap import MailboxFetchers
from postroom.ingress.ses import SesInbound
from postroom.logs import configure
from postroom.metrics import StageMetrics
from postroom.queue.actors import OUTBOUND_QUEUE, Pipeline
from postroom.queue.processes import WorkerProcesses
from postroom.queue.runtime import build_pipeline
from postroom.queue.supervisor import READY, Channel, Child, Supervisor, stop_on_sigterm, wait_for_stop
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


def _smtp_process(conn: Connection, settings: Settings, relay: bool) -> None:
    """Body of one extra gateway process: SMTP only, no workers, no HTTP, no migrations.

    With ``relay`` the ids it accepts go to the parent over ``conn``; otherwise to the broker directly.
    """
    configure(settings.log_format)
    stop = stop_on_sigterm()
    channel = Channel(conn)
    service = Service(settings, run_workers=False, run_http=False, run_ingress=False, reuse_port=True,
                      migrate=False, dispatch=(lambda batch: channel.send(list(batch))) if relay else None).start()
    channel.send(READY)
    wait_for_stop(conn, stop)
    service.stop()


class SmtpProcesses:
    """Extra gateway processes on the main one's port (SO_REUSEPORT), a kind of ``queue.supervisor`` child.

    Each has its own event loop and group committer; SQLite (WAL, BEGIN
    IMMEDIATE, busy timeout) or PostgreSQL serialises their commits. With the
    in-process broker the ids they accept come back over their pipes to
    ``dispatch`` (the main process's pipeline), so the workers run once, in the
    main process; with Redis or RabbitMQ they enqueue directly.
    """

    name = "smtp"
    target = staticmethod(_smtp_process)

    def __init__(self, settings: Settings, count: int, dispatch: Callable[[Iterable[int]], None]) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self._supervisor = Supervisor(self, count)

    def start(self, timeout: float = 60.0) -> SmtpProcesses:
        self._supervisor.start(timeout)
        return self

    def args(self, n: int) -> tuple[Settings, bool]:
        return self.settings, not self.settings.broker_url

    def receive(self, child: Child, message: list[int]) -> None:
        self.dispatch(message)

    def lost(self, child: Child) -> str:
        return "the mail it accepted is stored; the recovery sweep enqueues any id it had not passed on"

    def look(self, children: list[Child]) -> None:
        """Nothing to look at between messages."""

    def stop(self) -> None:
        self._supervisor.stop()
