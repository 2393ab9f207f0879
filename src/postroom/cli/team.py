"""``postroom team`` and ``postroom user deactivate``: who answers for a tenant, and who no longer does."""

from __future__ import annotations

import click

from postroom.cli.common import echo_json, echo_table, open_app
from postroom.cli.outbound import user as user_group
from postroom.errors import PostroomError
from postroom.storage import staff


def register(group: click.Group) -> None:
    group.add_command(team)
    user_group.add_command(user_deactivate)


@click.group()
def team() -> None:
    """Teams of staff users: rules and staff assign conversations to them."""


@team.command("add")
@click.argument("tenant")
@click.argument("name")
@click.option("--email", default=None, help="The team's shared address, if it has one.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def team_add(ctx: click.Context, tenant: str, name: str, email: str | None, as_json: bool) -> None:
    """Create team NAME in TENANT."""
    with open_app(ctx).session() as session:
        info = staff.add_team(session, tenant, name, email=email)
    if as_json:
        echo_json(info)
    else:
        click.echo(f"team {info.id} {info.name!r} added to {tenant}")


@team.command("list")
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def team_list(ctx: click.Context, tenant: str, as_json: bool) -> None:
    """TENANT's teams and their members."""
    with open_app(ctx).session() as session:
        teams = staff.list_teams(session, tenant)
    if as_json:
        for info in teams:
            echo_json(info)
        return
    if not teams:
        click.echo(f"no teams; create one with: postroom team add {tenant} NAME")
        return
    echo_table(["ID", "NAME", "EMAIL", "MEMBERS"],
               [(t.id, t.name, t.email or "-", ", ".join(t.member_emails) or "-") for t in teams])


@team.group("member")
def member() -> None:
    """Add staff users to a team or take them out."""


@member.command("add")
@click.argument("tenant")
@click.argument("team_name", metavar="TEAM")
@click.argument("email")
@click.pass_context
def member_add(ctx: click.Context, tenant: str, team_name: str, email: str) -> None:
    """Make staff user EMAIL a member of TEAM."""
    with open_app(ctx).session() as session:
        found, person = staff.named_team(session, tenant, team_name), staff.named_user(session, tenant, email)
        staff.add_team_member(session, found.id, person.id)
    click.echo(f"{person.email} is a member of team {found.name!r}")


@member.command("remove")
@click.argument("tenant")
@click.argument("team_name", metavar="TEAM")
@click.argument("email")
@click.pass_context
def member_remove(ctx: click.Context, tenant: str, team_name: str, email: str) -> None:
    """Take staff user EMAIL out of TEAM."""
    with open_app(ctx).session() as session:
        found, person = staff.named_team(session, tenant, team_name), staff.named_user(session, tenant, email)
        removed = staff.remove_team_member(session, found.id, person.id)
    if not removed:
        raise PostroomError(f"{person.email} is not a member of team {found.name!r}")
    click.echo(f"{person.email} removed from team {found.name!r}")


@click.command("deactivate")
@click.argument("tenant")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_deactivate(ctx: click.Context, tenant: str, email: str, as_json: bool) -> None:
    """Deactivate staff user EMAIL: never assigned again, cannot reply, their address no longer trusted."""
    with open_app(ctx).session() as session:
        done = staff.deactivate_user(session, tenant, email)
    if as_json:
        echo_json(done)
        return
    unassigned = f"; unassigned from conversation(s) {', '.join(map(str, done.unassigned))}" if done.unassigned else ""
    click.echo(f"staff user {done.user.id} {done.user.email} deactivated{unassigned}")
