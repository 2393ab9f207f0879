"""``postroom init | serve | worker``: set up storage and run the service."""

from __future__ import annotations

import signal
import socket
import ssl
import threading

import click

from postroom.app import App
from postroom.cli.common import settings_of
from postroom.cli.failures import listen_failure
from postroom.errors import PostroomError
from postroom.logs import announce, configure
from postroom.queue.connection import BrokerWatch
from postroom.queue.processes import pipeline_threads
from postroom.queue.runtime import build_pipeline
from postroom.service import Service, SmtpProcesses, tls_context
from postroom.settings import Settings, redact_url
from postroom.storage.blobs import sha256_hex
from postroom.storage.db import make_engine
from postroom.storage.migrate import revisions


def register(group: click.Group) -> None:
    group.add_command(init)
    group.add_command(serve)
    group.add_command(worker)


def _stop_on_signal(*also: threading.Event) -> threading.Event:
    """An event set (with ``also``) by SIGINT or SIGTERM."""
    stop = threading.Event()

    def handle(*_: object) -> None:
        for event in (stop, *also):
            event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    return stop


def _wait_for_signal() -> None:
    _stop_on_signal().wait()


def _logging(ctx: click.Context, verbose: bool) -> None:
    """Text lines, or one JSON object per line with POSTROOM_LOG_FORMAT=json."""
    try:
        configure(settings_of(ctx).log_format, verbose=verbose)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _check_listen(setting: str, host: str, port: int) -> None:
    """Fail before starting anything if ``host:port`` is taken (port 0 picks a free one: nothing to check).

    Without this a second ``serve`` started its worker processes before the
    gateway found the port taken. The probe sets SO_REUSEADDR like the real
    listeners, but not SO_REUSEPORT, so it also fails against a serve that shares its port.
    """
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PostroomError(listen_failure(f"{host}:{port}", exc, setting)) from exc


def _check_tls(settings: Settings) -> None:
    """Read the certificate and key now, so a bad path is one line before any listener starts."""
    try:
        tls_context(settings)
    except ssl.SSLError as exc:
        raise PostroomError(f"cannot load TLS certificate {settings.tls_cert}: not a PEM certificate with its key "
                            f"({exc.reason or exc}); check POSTROOM_TLS_CERT and POSTROOM_TLS_KEY") from exc
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        files = f"{settings.tls_cert} / key {settings.tls_key or '(in the certificate file)'}"
        raise PostroomError(f"cannot load TLS certificate {files}: {reason}; check POSTROOM_TLS_CERT and "
                            "POSTROOM_TLS_KEY (PEM files readable by this user)") from exc


def _check_schema(settings: Settings) -> None:
    """With --no-migrate, refuse to run on a schema this postroom does not expect (``postroom init`` migrates)."""
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        current, head = revisions(engine)
    finally:
        engine.dispose()
    if current != head:
        raise PostroomError(f"the database is at migration {current or '(none)'} but this postroom needs {head}: "
                            "run `postroom init` (it applies the migrations) before serve and worker")


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data folder, apply database migrations and check that the blob store answers."""
    settings = settings_of(ctx)
    app = App.open(settings)
    try:
        app.blobs.exists(sha256_hex(b""))
    finally:
        app.close()
    click.echo(f"initialised: database {redact_url(settings.resolved_database_url)}, "
               f"blobs {redact_url(settings.resolved_blob_url)}")


@click.command()
@click.option("--no-workers", is_flag=True, help="Only receive; leave processing to `postroom worker`.")
@click.option("--smtp-processes", type=click.IntRange(min=1), default=None,
              help="Gateway processes sharing the SMTP port (default POSTROOM_SMTP_PROCESSES, 1).")
@click.option("--worker-processes", type=click.IntRange(min=0), default=None,
              help="Pipeline worker processes (default POSTROOM_WORKER_PROCESSES; 0: threads in this process).")
@click.option("--no-migrate", is_flag=True,
              help="Only check that the database is migrated (deployments run `postroom init` once).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def serve(ctx: click.Context, no_workers: bool, smtp_processes: int | None, worker_processes: int | None,
          no_migrate: bool, verbose: bool) -> None:
    """Run the SMTP gateway, the HTTP API and console (and, with the in-process broker, the workers)."""
    settings = settings_of(ctx)
    if worker_processes is not None:
        settings = settings.replace(worker_processes=worker_processes)
    processes = smtp_processes or settings.smtp_processes
    _check_tls(settings)
    _check_listen("POSTROOM_SMTP_LISTEN", *settings.smtp_address)
    _check_listen("POSTROOM_HTTP_LISTEN", *settings.http_address)
    if no_migrate:
        _check_schema(settings)
    _logging(ctx, verbose)  # after the checks: a failed one is its error line alone, without library log lines
    service = Service(settings, run_workers=not no_workers, reuse_port=processes > 1, migrate=not no_migrate).start()
    host, port = settings.smtp_address
    extra: SmtpProcesses | None = None
    if processes > 1:
        try:
            extra = SmtpProcesses(settings.replace(smtp_listen=f"{host}:{service.smtp_port}"), processes - 1,
                                  service.pipeline.dispatch).start()
        except BaseException:
            service.stop()
            raise
    announce(f"postroom listening: smtp://{host}:{service.smtp_port} for *.{settings.mail_domain}"
             f" ({processes} process{'es' if processes > 1 else ''})")
    announce(f"HTTP API {service.http_url}/docs  console {service.http_url}/console  "
             f"metrics {service.http_url}/metrics")
    announce(f"database {redact_url(settings.resolved_database_url)}  "
             f"blobs {redact_url(settings.resolved_blob_url)}  "
             f"broker {redact_url(settings.broker_url) or 'in-process'}")
    if service.workers is not None:
        announce(f"{service.workers.count} worker processes, each with {pipeline_threads(settings)} pipeline and "
                 f"{settings.worker_threads} delivery threads")
    try:
        _wait_for_signal()
    finally:
        if extra is not None:
            extra.stop()
        service.stop()


@click.command()
@click.option("--threads", type=int, default=None, help="Worker threads (default POSTROOM_WORKER_THREADS).")
@click.option("--no-migrate", is_flag=True,
              help="Only check that the database is migrated (deployments run `postroom init` once).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def worker(ctx: click.Context, threads: int | None, no_migrate: bool, verbose: bool) -> None:
    """Process queued mail from a Redis or RabbitMQ broker (separate from `serve`)."""
    settings = settings_of(ctx)
    if not settings.broker_url:
        raise click.UsageError("postroom worker needs POSTROOM_BROKER_URL (redis://… or amqp://…); "
                               "with the in-process broker, `postroom serve` runs the workers")
    if no_migrate:
        _check_schema(settings)
    _logging(ctx, verbose)
    app = App.open(settings, migrate=not no_migrate)
    pipeline = build_pipeline(app)
    watch = BrokerWatch(settings.broker_url, on_down=pipeline.pause, on_up=pipeline.resume)
    watch.quiet_consumers()
    stop = _stop_on_signal(watch.stopping)
    try:
        if watch.wait_until_up():
            pipeline.start_worker(threads or settings.worker_threads)
            recovered = pipeline.recover()
            pipeline.start_sweeper()
            watch.start()
            announce(f"postroom worker running on {redact_url(settings.broker_url)} ({recovered} recovered)")
        stop.wait()
    finally:
        watch.stop()
        pipeline.stop()
        app.close()
