"""``postroom apikey create|list|revoke``: per-tenant keys for the HTTP API."""

from __future__ import annotations

import click

from postroom.cli.common import age, echo_json, echo_table, open_app
from postroom.storage import apikeys


def register(group: click.Group) -> None:
    group.add_command(apikey)


@click.group()
def apikey() -> None:
    """Manage API keys (sent as ``Authorization: Bearer KEY``)."""


@apikey.command("create")
@click.argument("tenant")
@click.option("--name", default="", help="A label, e.g. 'portal production'.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def create(ctx: click.Context, tenant: str, name: str, as_json: bool) -> None:
    """Create a key for TENANT and print it once: only its hash is kept."""
    app = open_app(ctx)
    with app.session() as session:
        info, key = apikeys.create_key(session, tenant, name)
    if as_json:
        echo_json({"id": info.id, "tenant": info.tenant, "name": info.name, "key": key})
        return
    click.echo(key)
    click.echo(f"API key {info.id} for {info.tenant} created; store it now, it cannot be shown again.", err=True)


@apikey.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """List keys (prefix only) with when they were last used."""
    app = open_app(ctx)
    with app.session() as session:
        keys = apikeys.list_keys(session, tenant)
    if as_json:
        for info in keys:
            echo_json(info)
        return
    echo_table(["ID", "TENANT", "NAME", "PREFIX", "CREATED", "LAST USED", "STATE"],
               [(k.id, k.tenant, k.name, k.prefix + "…", age(k.created_at), age(k.last_used_at),
                 "revoked" if k.revoked_at else "active") for k in keys])


@apikey.command("revoke")
@click.argument("key_id", type=int)
@click.pass_context
def revoke(ctx: click.Context, key_id: int) -> None:
    """Revoke a key at once; requests with it get 401 from then on."""
    app = open_app(ctx)
    with app.session() as session:
        info = apikeys.revoke_key(session, key_id)
    click.echo(f"API key {info.id} of {info.tenant} revoked")
