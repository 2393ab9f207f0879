"""``postroom init | serve | worker``: set up storage and run the service."""

from __future__ import annotations

import signal
import threading

import click

from postroom.app import App
from postroom.cli.common import settings_of
from postroom.logs import LogContext, configure, inbound_tenant
from postroom.queue.actors import Pipeline
from postroom.queue.broker import make_broker
from postroom.queue.processes import pipeline_threads
from postroom.service import Service, SmtpProcesses
from postroom.settings import redact_url


def register(group: click.Group) -> None:
    group.add_command(init)
    group.add_command(serve)
    group.add_command(worker)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _logging(ctx: click.Context, verbose: bool) -> None:
    """Text lines, or one JSON object per line with POSTROOM_LOG_FORMAT=json."""
    try:
        configure(settings_of(ctx).log_format, verbose=verbose)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data folder and apply database migrations."""
    settings = settings_of(ctx)
    App.open(settings).close()
    click.echo(f"initialised: database {redact_url(settings.resolved_database_url)}, "
               f"blobs {redact_url(settings.resolved_blob_url)}")


@click.command()
@click.option("--no-workers", is_flag=True, help="Only receive; leave processing to `postroom worker`.")
@click.option("--smtp-processes", type=click.IntRange(min=1), default=None,
              help="Gateway processes sharing the SMTP port (default POSTROOM_SMTP_PROCESSES, 1).")
@click.option("--worker-processes", type=click.IntRange(min=0), default=None,
              help="Pipeline worker processes (default POSTROOM_WORKER_PROCESSES; 0: threads in this process).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def serve(ctx: click.Context, no_workers: bool, smtp_processes: int | None, worker_processes: int | None,
          verbose: bool) -> None:
    """Run the SMTP gateway, the HTTP API and console (and, with the in-process broker, the workers)."""
    _logging(ctx, verbose)
    settings = settings_of(ctx)
    if worker_processes is not None:
        settings = settings.replace(worker_processes=worker_processes)
    processes = smtp_processes or settings.smtp_processes
    service = Service(settings, run_workers=not no_workers, reuse_port=processes > 1).start()
    host, port = settings.smtp_address
    extra: SmtpProcesses | None = None
    if processes > 1:
        try:
            extra = SmtpProcesses(settings.replace(smtp_listen=f"{host}:{service.smtp_port}"), processes - 1,
                                  service.pipeline.dispatch).start()
        except BaseException:
            service.stop()
            raise
    click.echo(f"postroom listening: smtp://{host}:{service.smtp_port} for *.{settings.mail_domain}"
               f" ({processes} process{'es' if processes > 1 else ''})", err=True)
    click.echo(f"HTTP API {service.http_url}/docs  console {service.http_url}/console  "
               f"metrics {service.http_url}/metrics", err=True)
    click.echo(f"database {redact_url(settings.resolved_database_url)}  "
               f"blobs {redact_url(settings.resolved_blob_url)}  "
               f"broker {redact_url(settings.broker_url) or 'in-process'}", err=True)
    if service.workers is not None:
        click.echo(f"{service.workers.count} worker processes, each with {pipeline_threads(settings)} pipeline and "
                   f"{settings.worker_threads} delivery threads", err=True)
    try:
        _wait_for_signal()
    finally:
        if extra is not None:
            extra.stop()
        service.stop()


@click.command()
@click.option("--threads", type=int, default=None, help="Worker threads (default POSTROOM_WORKER_THREADS).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def worker(ctx: click.Context, threads: int | None, verbose: bool) -> None:
    """Process queued mail from a Redis or RabbitMQ broker (separate from `serve`)."""
    _logging(ctx, verbose)
    settings = settings_of(ctx)
    if not settings.broker_url:
        raise click.UsageError("postroom worker needs POSTROOM_BROKER_URL (redis://… or amqp://…); "
                               "with the in-process broker, `postroom serve` runs the workers")
    app = App.open(settings)
    broker = make_broker(settings)
    broker.add_middleware(LogContext(inbound_tenant(app)))
    pipeline = Pipeline(app, broker)
    pipeline.start_worker(threads or settings.worker_threads)
    recovered = pipeline.recover()
    pipeline.start_sweeper()
    click.echo(f"postroom worker running on {redact_url(settings.broker_url)} ({recovered} recovered)", err=True)
    try:
        _wait_for_signal()
    finally:
        pipeline.stop()
        app.close()
