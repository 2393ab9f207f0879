"""``postroom tenant webhook``: provider webhook secrets; ``postroom ses-inbound``: the SES/S3/SQS consumer."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from postroom.cli.common import age, echo_json, echo_table, open_app
from postroom.cli.tenant import tenant as tenant_group
from postroom.errors import PostroomError
from postroom.ingress.ses import SesInbound
from postroom.queue.wakeup import wake
from postroom.storage import ingress
from postroom.storage.ingress import PROVIDERS


def register(group: click.Group) -> None:
    tenant_group.add_command(webhook)
    group.add_command(ses_inbound)


@click.group()
def webhook() -> None:
    """Secrets of the inbound webhooks (POST /ingest/PROVIDER/TENANT) of Mailgun, Postmark and SendGrid."""


@webhook.command("set")
@click.argument("tenant")
@click.argument("provider", type=click.Choice(PROVIDERS))
@click.option("--secret-file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Mailgun: the HTTP webhook signing key. Postmark/SendGrid: 'user:password' for basic auth "
                   "(SendGrid may also send it as ?key=PASSWORD).")
@click.pass_context
def set_(ctx: click.Context, tenant: str, provider: str, secret_file: str) -> None:
    """Set (or replace) TENANT's secret for PROVIDER, read from a file so it stays out of shell history."""
    secret = Path(secret_file).read_text().strip()
    if provider in ("postmark", "sendgrid") and ":" not in secret:
        raise PostroomError(f"{provider} authenticates with basic auth: put 'user:password' in {secret_file}")
    app = open_app(ctx)
    with app.session() as session:
        ingress.set_webhook_secret(session, tenant, provider, secret)
    click.echo(f"{tenant}: {provider} webhook secret set; the provider posts to /ingest/{provider}/{tenant}")


@webhook.command("list")
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, tenant: str, as_json: bool) -> None:
    """Providers with a secret for TENANT (the secrets are never shown)."""
    app = open_app(ctx)
    with app.session() as session:
        providers = ingress.webhook_providers(session, tenant)
    if as_json:
        echo_json([{"provider": p, "updated_at": u, "path": f"/ingest/{p}/{tenant}"} for p, u in providers])
        return
    echo_table(["PROVIDER", "PATH", "SET"], [(p, f"/ingest/{p}/{tenant}", age(u)) for p, u in providers])


@webhook.command("remove")
@click.argument("tenant")
@click.argument("provider", type=click.Choice(PROVIDERS))
@click.pass_context
def remove(ctx: click.Context, tenant: str, provider: str) -> None:
    """Refuse that provider's webhook for TENANT from now on."""
    app = open_app(ctx)
    with app.session() as session:
        if not ingress.remove_webhook_secret(session, tenant, provider):
            raise PostroomError(f"{tenant} has no {provider} webhook secret")
    click.echo(f"{tenant}: {provider} webhook removed")


@click.group("ses-inbound")
def ses_inbound() -> None:
    """Amazon SES inbound through S3 + SQS (POSTROOM_SES_INBOUND_QUEUE_URL; postroom serve consumes it too)."""


@ses_inbound.command("run")
@click.option("--once", is_flag=True, help="One receive (up to 10 notifications), then exit.")
@click.pass_context
def run(ctx: click.Context, once: bool) -> None:
    """Consume the notification queue: fetch each message from S3, store it, then delete the notification."""
    app = open_app(ctx)
    consumer = SesInbound(app, lambda ids: wake(app, inbound=list(ids)))
    if once:
        click.echo(f"{consumer.poll_once()} message(s) stored")
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"consuming {consumer.queue_url}; Ctrl-C to stop", err=True)
    consumer.run_forever(stop)


@ses_inbound.command("test")
@click.pass_context
def test(ctx: click.Context) -> None:
    """Check the queue answers and say how many notifications wait in it."""
    app = open_app(ctx)
    consumer = SesInbound(app, None)
    try:
        attributes = consumer.sqs.get_queue_attributes(
            QueueUrl=consumer.queue_url, AttributeNames=["ApproximateNumberOfMessages",
                                                         "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    except Exception as exc:
        raise PostroomError(f"SES inbound queue {consumer.queue_url}: {exc}") from None
    click.echo(f"{consumer.queue_url}: {attributes.get('ApproximateNumberOfMessages', '?')} waiting, "
               f"{attributes.get('ApproximateNumberOfMessagesNotVisible', '?')} in flight")
