"""Assemble and run postroom's parts: storage, pipeline workers, SMTP gateway.

``postroom serve`` and the end-to-end tests both use ``Service``, so what is
tested is what runs.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

from postroom.app import App
from postroom.gateway.handler import GatewayHandler
from postroom.gateway.ratelimit import rate_limits
from postroom.gateway.server import Gateway
from postroom.logs import LogContext, inbound_tenant
from postroom.metrics import StageMetrics
from postroom.queue.actors import Pipeline
from postroom.queue.broker import make_broker
from postroom.rules.routing import DataScreen
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
    app: App = field(init=False)
    pipeline: Pipeline = field(init=False)
    committer: GroupCommitter | None = field(default=None, init=False)
    gateway: Gateway | None = field(default=None, init=False)
    http: HttpServer | None = field(default=None, init=False)

    def start(self) -> Service:
        self.app = App.open(self.settings)
        broker = make_broker(self.settings)
        broker.add_middleware(StageMetrics())
        broker.add_middleware(LogContext(inbound_tenant(self.app)))
        self.pipeline = Pipeline(self.app, broker)
        if self.run_workers:
            self.pipeline.start_worker(self.settings.worker_threads)
            recovered = self.pipeline.recover()
            if recovered:
                log.info("re-enqueued %s unfinished inbound messages", recovered)
            self.pipeline.start_sweeper()
        if self.run_smtp:
            self.committer = GroupCommitter(self.app.sessions, self.app.blobs)
            handler = GatewayHandler(self.app.directory, self.committer.submit, self.pipeline.dispatch,
                                     max_recipients=self.settings.max_recipients,
                                     limits=rate_limits(self.settings),
                                     screen=DataScreen(self.settings, self.app.directory).check)
            host, port = self.settings.smtp_address
            self.gateway = Gateway(
                handler, host, port, hostname=self.settings.mail_domain,
                data_size_limit=self.settings.max_message_size,
                max_connections_per_ip=self.settings.max_connections_per_ip,
                timeout=self.settings.smtp_timeout, tls_context=tls_context(self.settings),
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
        if self.http is not None:
            self.http.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.committer is not None:
            self.committer.close()
        self.pipeline.stop()
        self.app.close()
