"""``postroom contact``: a tenant's customers, their addresses, merges and how postroom writes to them."""

from __future__ import annotations

import click

from postroom.cli.common import echo_json, echo_table, open_app
from postroom.storage import contacts


def register(group: click.Group) -> None:
    group.add_command(contact)


def _echo(info: contacts.ContactInfo, as_json: bool) -> None:
    if as_json:
        echo_json(info)
        return
    click.echo(f"contact {info.id}: {info.name or '(no name)'}")
    click.echo(f"addresses: {', '.join(info.addresses) or '-'}")
    click.echo(f"channel: {info.channel}   language: {info.locale or '(tenant default)'}   "
               f"conversations: {info.conversations}   unit: {info.unit_ref or '-'}")
    if info.merged_into_id is not None:
        click.echo(f"merged into contact {info.merged_into_id}")


@click.group()
def contact() -> None:
    """Contacts: list, show, link an address, merge two, set the channel and language."""


@contact.command("list")
@click.argument("tenant")
@click.option("--merged", is_flag=True, help="Also list contacts merged into others.")
@click.option("--limit", default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def contact_list(ctx: click.Context, tenant: str, merged: bool, limit: int, as_json: bool) -> None:
    """TENANT's contacts, newest first."""
    with open_app(ctx).session() as session:
        found = contacts.list_contacts(session, tenant, merged=merged, limit=limit)
    if as_json:
        for info in found:
            echo_json(info)
        return
    if not found:
        click.echo("no contacts")
        return
    echo_table(["ID", "NAME", "ADDRESSES", "CHANNEL", "CONVS", "MERGED INTO"],
               [(c.id, c.name or "-", ", ".join(c.addresses) or "-", c.channel, c.conversations,
                 c.merged_into_id or "-") for c in found])


@contact.command("show")
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def contact_show(ctx: click.Context, contact_id: int, as_json: bool) -> None:
    """One contact: addresses, channel, language, conversations."""
    with open_app(ctx).session() as session:
        info = contacts.get_contact(session, contact_id)
    _echo(info, as_json)


@contact.command("link")
@click.argument("contact_id", type=int)
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def contact_link(ctx: click.Context, contact_id: int, email: str, as_json: bool) -> None:
    """Add address EMAIL to contact CONTACT_ID (refused if another contact has it: merge them instead)."""
    with open_app(ctx).session() as session:
        info = contacts.add_contact_address(session, contact_id, email)
    _echo(info, as_json)


@contact.command("merge")
@click.argument("keep", type=int)
@click.argument("other", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def contact_merge(ctx: click.Context, keep: int, other: int, as_json: bool) -> None:
    """Merge contact OTHER into KEEP: addresses, conversations, messages and future mail follow."""
    with open_app(ctx).session() as session:
        info = contacts.merge_contacts(session, keep_id=keep, drop_id=other)
    _echo(info, as_json)


@contact.command("set")
@click.argument("contact_id", type=int)
@click.option("--channel", type=click.Choice(contacts.CHANNELS), default=None,
              help="How replies, acknowledgements, move notices and auto-replies reach the contact.")
@click.option("--locale", default=None, help="Their language (fr, nl-BE…); '' for the tenant's.")
@click.option("--name", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def contact_set(ctx: click.Context, contact_id: int, channel: str | None, locale: str | None, name: str | None,
                as_json: bool) -> None:
    """Change a contact's channel, language or name."""
    if channel is None and locale is None and name is None:
        raise click.UsageError("give --channel, --locale or --name")
    with open_app(ctx).session() as session:
        info = contacts.set_contact(session, contact_id, channel=channel, locale=locale, name=name)
    _echo(info, as_json)
