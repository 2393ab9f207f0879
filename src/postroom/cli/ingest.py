"""``postroom ingest``: store mail from files through the durable path, then process it."""

from __future__ import annotations

from pathlib import Path

import click

from postroom import flow
from postroom.cli.common import echo_json, open_app
from postroom.gateway.ingest import inbox_address_of, ingest
from postroom.queue import runtime
from postroom.storage import tenants


def register(group: click.Group) -> None:
    group.add_command(ingest_command)


@click.command("ingest")
@click.option("--tenant", "slug", required=True, help="Tenant slug the mail is for.")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--no-process", is_flag=True, help="Only store; a running service processes the rows.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_context
def ingest_command(ctx: click.Context, slug: str, path: Path, no_process: bool, as_json: bool) -> None:
    """Ingest a .eml file, a directory, an mbox or a Maildir for a tenant."""
    app = open_app(ctx)
    with app.session() as session:
        tenant = tenants.get_tenant(session, slug)
    show = not as_json

    def progress(count: int, label: str) -> None:
        if show and count % 100 == 0:
            click.echo(f"\rstored {count} messages…", nl=False, err=True)

    result = ingest(app.sessions, app.blobs, tenant_id=tenant.id,
                    inbox_address=inbox_address_of(tenant.slug, app.settings.mail_domain),
                    path=path, progress=progress)
    if show:
        click.echo(f"\rstored {result.stored} messages for {slug}" + " " * 10, err=True)
    statuses: dict[str, int] = {}
    if not no_process:
        if app.settings.broker_url:
            runtime.sender(app).dispatch(result.ids)
        else:
            with click.progressbar(result.ids, label="processing", file=None if show else open("/dev/null", "w"),
                                   show_pos=True) as ids:
                for inbound_id in ids:
                    status = flow.process_inbound(app, inbound_id) or "already processed"
                    statuses[status] = statuses.get(status, 0) + 1
    summary = {"stored": result.stored, "ids": list(result.ids), "skipped": list(result.skipped),
               "processed": statuses}
    if as_json:
        echo_json(summary)
    else:
        for line in result.skipped:
            click.echo(f"skipped {line}", err=True)
        if statuses:
            click.echo("processed: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    if result.skipped and not result.stored:
        ctx.exit(1)
