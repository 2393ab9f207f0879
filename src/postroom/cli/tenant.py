"""``postroom tenant``: tenants, their aliases and custom domains."""

from __future__ import annotations

import click

from postroom.cli.common import echo_json, echo_table, open_app
from postroom.storage import tenants


def register(group: click.Group) -> None:
    group.add_command(tenant)


@click.group()
def tenant() -> None:
    """Manage tenants and the addresses they receive mail at."""


@tenant.command("add")
@click.argument("slug")
@click.option("--name", default="", help="Display name (defaults to the slug).")
@click.option("--exist-ok", is_flag=True, help="Succeed quietly if the tenant already exists (scripts).")
@click.pass_context
def add(ctx: click.Context, slug: str, name: str, exist_ok: bool) -> None:
    """Create tenant SLUG, receiving mail at <slug>.<mail-domain>."""
    app = open_app(ctx)
    with app.session() as session:
        existing = {t.slug: t for t in tenants.list_tenants(session)}
        found = exist_ok and slug.lower() in existing
        info = existing[slug.lower()] if found else tenants.add_tenant(session, slug, name,
                                                                       mail_domain=app.settings.mail_domain)
    click.echo(f"tenant {info.slug} {'exists' if found else 'created'}: "
               f"mail to inbox@{info.slug}.{app.settings.mail_domain}")


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List tenants with their domains and aliases."""
    app = open_app(ctx)
    with app.session() as session:
        infos = tenants.list_tenants(session)
    if as_json:
        for info in infos:
            echo_json({"slug": info.slug, "name": info.name,
                       "domains": [f"{info.slug}.{app.settings.mail_domain}", *info.domains],
                       "aliases": list(info.aliases)})
        return
    echo_table(["SLUG", "NAME", "DOMAINS", "ALIASES"],
               [(i.slug, i.name, " ".join([f"{i.slug}.{app.settings.mail_domain}", *i.domains]),
                 " ".join(i.aliases) or "-") for i in infos])


@tenant.group("alias")
def alias() -> None:
    """Extra local parts delivered like inbox@."""


@alias.command("add")
@click.argument("slug")
@click.argument("local_part")
@click.pass_context
def alias_add(ctx: click.Context, slug: str, local_part: str) -> None:
    """Accept LOCAL_PART@<tenant domain> for tenant SLUG."""
    app = open_app(ctx)
    with app.session() as session:
        tenants.add_alias(session, slug, local_part)
    click.echo(f"alias {local_part.lower()}@{slug}.{app.settings.mail_domain} added")


@tenant.group("domain")
def domain() -> None:
    """Custom domains a tenant also receives mail at."""


@domain.command("add")
@click.argument("slug")
@click.argument("domain_name")
@click.pass_context
def domain_add(ctx: click.Context, slug: str, domain_name: str) -> None:
    """Receive mail for DOMAIN_NAME as tenant SLUG (point its MX at postroom).

    Refused when it is, contains or lies under the mail domain or another tenant's domain.
    """
    app = open_app(ctx)
    name = tenants.normalize_domain(domain_name)
    with app.session() as session:
        tenants.add_domain(session, slug, name, mail_domain=app.settings.mail_domain)
    click.echo(f"domain {name} added to {slug.lower()}")
